//! The board scripts and the genimage layout of board/odroid-xu4, run on stand-in inputs (random
//! bytes in place of the Hardkernel blobs, U-Boot, kernel and root filesystem).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::project::{BOOT_CHAIN, DISK_SIGNATURE, PARTITIONS, SYSTEM_SLOT_BYTES};
use xtask::release::{SYSTEM_ENV, SYSTEM_IMAGE};

const SECTOR: usize = xtask::project::SECTOR as usize;

fn board_dir() -> PathBuf {
    common::repo_root().join("board/odroid-xu4")
}

/// Bytes that differ from file to file, so a blob found at an offset is that blob.
fn stand_in(path: &Path, len: usize, seed: u8) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// Everything post-image.sh and genimage.cfg read from the images folder: stand-in blobs and
/// boot script, and a real EROFS root (LZ4HC, as Buildroot makes it) holding a stand-in kernel.
fn stand_in_images(dir: &Path, uboot_len: usize) {
    let [bl1, bl2, uboot, tzsw] = BOOT_CHAIN.map(|blob| dir.join(blob.file));
    stand_in(&bl1, 15360, 1);
    stand_in(&bl2, 14336, 2);
    stand_in(&uboot, uboot_len, 3);
    stand_in(&tzsw, 262_144, 4);
    stand_in(&dir.join("boot.scr"), 2048, 8);
    let root = dir.join("target");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    stand_in(&root.join("boot/zImage"), 1 << 20, 5);
    stand_in(&root.join("boot/exynos5422-odroidxu4.dtb"), 4096, 6);
    fs::write(root.join("etc/hostname"), "berth\n").unwrap();
    common::run_ok(
        Command::new("mkfs.erofs")
            .args([
                "-zlz4hc,9",
                "-T",
                "0",
                "-U",
                "00000000-0000-0000-0000-000000000000",
            ])
            .arg(dir.join("rootfs.erofs"))
            .arg(&root),
    );
}

/// Buildroot's host folder as post-image.sh uses it: Debian's veritysetup and mkenvimage where
/// host-cryptsetup and host-uboot-tools install their own.
fn host_dir(work: &Path) -> PathBuf {
    let host = work.join("host");
    for (tool, folder) in [("veritysetup", "sbin"), ("mkenvimage", "bin")] {
        fs::create_dir_all(host.join(folder)).unwrap();
        let link = host.join(folder).join(tool);
        if !link.exists() {
            std::os::unix::fs::symlink(which::which(tool).unwrap(), link).unwrap();
        }
    }
    host
}

/// Buildroot's target folder as post-image.sh reads it: the board's fw_env.config.
fn target_dir(work: &Path) -> PathBuf {
    let target = work.join("target");
    fs::create_dir_all(target.join("etc")).unwrap();
    fs::copy(
        board_dir().join("rootfs-overlay/etc/fw_env.config"),
        target.join("etc/fw_env.config"),
    )
    .unwrap();
    target
}

fn cmdline() -> String {
    std::fs::read_to_string(board_dir().join("cmdline.txt"))
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn post_build_fails_clearly_without_ssh_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let output = Command::new(board_dir().join("post-build.sh"))
        .arg(&target)
        .env("BINARIES_DIR", tmp.path())
        .env_remove("BERTH_SSH_AUTHORIZED_KEYS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        common::stderr_text(&output).contains("BERTH_SSH_AUTHORIZED_KEYS is not set"),
        "{}",
        common::stderr_text(&output)
    );
    assert!(!target.join("root/.ssh").exists());
}

/// A scratch folder for post-build.sh runs: an empty `target/` and a file of root's SSH keys.
fn post_build_scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let keys = tmp.path().join("keys.pub");
    std::fs::write(
        &keys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthTestKeyOnly test@berth\n",
    )
    .unwrap();
    (tmp, target, keys)
}

/// What post-build.sh looks for in the signing certificate it installs as RAUC's keyring.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn post_build_installs_only_a_certificate_as_the_rauc_keyring_and_the_staged_hawkbit_files() {
    let (tmp, target, keys) = post_build_scratch();
    let run = |keyring: Option<&Path>, hawkbit: Option<&Path>| {
        let mut cmd = Command::new(board_dir().join("post-build.sh"));
        cmd.arg(&target)
            .env("BINARIES_DIR", tmp.path())
            .env("BERTH_SSH_AUTHORIZED_KEYS", &keys)
            .env_remove("BERTH_RAUC_KEYRING")
            .env_remove("BERTH_HAWKBIT_ROOTFS");
        if let Some(k) = keyring {
            cmd.env("BERTH_RAUC_KEYRING", k);
        }
        if let Some(h) = hawkbit {
            cmd.env("BERTH_HAWKBIT_ROOTFS", h);
        }
        cmd.output().unwrap()
    };
    let out = run(None, None);
    assert!(!out.status.success());
    assert!(common::stderr_text(&out).contains("BERTH_RAUC_KEYRING is not set"));

    let with_key = tmp.path().join("both.pem");
    std::fs::write(
        &with_key,
        format!("{CERTIFICATE}-----BEGIN PRIVATE KEY-----\nx\n"),
    )
    .unwrap();
    let out = run(Some(&with_key), None);
    assert!(common::stderr_text(&out).contains("holds a private key") && !out.status.success());
    assert!(!target.join("etc/rauc/keyring.pem").exists());

    let cert = tmp.path().join("cert.pem");
    std::fs::write(&cert, CERTIFICATE).unwrap();
    let staged = tmp.path().join("hawkbit");
    let conf = "etc/rauc-hawkbit-updater/config.conf";
    common::write_file(&staged.join(conf), "[client]\n", 0o600);
    let out = run(Some(&cert), Some(&staged));
    assert!(out.status.success(), "{}", common::stderr_text(&out));
    assert_eq!(
        std::fs::read_to_string(target.join("etc/rauc/keyring.pem")).unwrap(),
        CERTIFICATE
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(target.join(conf))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A later build without [hawkbit] leaves none of the client's files behind.
    let out = run(Some(&cert), None);
    assert!(out.status.success(), "{}", common::stderr_text(&out));
    assert!(!target.join(conf).exists());
}

#[test]
fn post_build_makes_the_mount_points_and_root_keys() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, target, keys) = post_build_scratch();
    let keyring = tmp.path().join("keyring.pem");
    std::fs::write(&keyring, CERTIFICATE).unwrap();
    let run = |keys: &Path| {
        Command::new(board_dir().join("post-build.sh"))
            .arg(&target)
            .env("BINARIES_DIR", tmp.path())
            .env("BERTH_SSH_AUTHORIZED_KEYS", keys)
            .env("BERTH_RAUC_KEYRING", &keyring)
            .output()
            .unwrap()
    };
    let output = run(&keys);
    assert!(output.status.success(), "{}", common::stderr_text(&output));

    // The root is read-only: the boot partition's and the data volume's mount points are in it.
    for mount_point in ["boot/firmware", "data"] {
        assert!(target.join(mount_point).is_dir(), "no /{mount_point}");
    }
    assert!(
        !tmp.path().join("extlinux.conf").exists(),
        "U-Boot boots the boot script, not a menu"
    );
    let installed = target.join("root/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&keys).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(target.join("root/.ssh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    let private = tmp.path().join("id_ed25519");
    std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n").unwrap();
    let output = run(&private);
    assert!(!output.status.success());
    assert!(
        common::stderr_text(&output).contains("holds a private key"),
        "{}",
        common::stderr_text(&output)
    );
}

/// post-image.sh run as Buildroot runs it: from the top of the tree, with these set.
fn run_post_image(buildroot: &Path, work: &Path, images: &Path) -> Output {
    Command::new(board_dir().join("post-image.sh"))
        .arg(images)
        .current_dir(buildroot)
        .env("BINARIES_DIR", images)
        .env("BUILD_DIR", work)
        .env("HOST_DIR", host_dir(work))
        .env("TARGET_DIR", target_dir(work))
        .env("BR2_CONFIG", work.join("no-config"))
        .output()
        .unwrap()
}

/// The tools post-image.sh needs, or a printed skip.
fn have_genimage_tools(test: &str) -> Option<PathBuf> {
    let buildroot = common::buildroot_tree(test)?;
    (common::have_tool(test, "genimage", "genimage")
        && common::have_tool(test, "mkdosfs", "dosfstools")
        && common::have_tool(test, "mcopy", "mtools")
        && common::have_tool(test, "mkfs.erofs", "erofs-utils")
        && common::have_tool(test, "veritysetup", "cryptsetup-bin")
        && common::have_tool(test, "mkenvimage", "u-boot-tools")
        && common::have_tool(test, "sfdisk", "fdisk"))
    .then_some(buildroot)
}

#[test]
fn the_genimage_layout_agrees_with_the_boot_chain_in_project_rs() {
    xtask::image::layout::check_board(&board_dir()).unwrap();
}

#[test]
fn post_image_rejects_a_uboot_too_big_for_the_720k_slot() {
    let test = "post_image_rejects_a_uboot_too_big_for_the_720k_slot";
    let Some(buildroot) = have_genimage_tools(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let slot = BOOT_CHAIN[2].slot_bytes as usize;
    stand_in_images(&images, slot + 1);
    let output = run_post_image(&buildroot, tmp.path(), &images);
    assert!(!output.status.success());
    assert!(
        common::stderr_text(&output)
            .contains(&format!("size ({slot}) too small for u-boot-dtb.bin")),
        "{}",
        common::stderr_text(&output)
    );
    assert!(!images.join("sdcard.img").exists());
    // A U-Boot that fills its slot exactly still fits.
    stand_in_images(&images, slot);
    let output = run_post_image(&buildroot, tmp.path(), &images);
    assert!(output.status.success(), "{}", common::stderr_text(&output));
}

/// One partition as `sfdisk --json` lists it.
struct TableEntry {
    bootable: bool,
    kind: u8,
    start: u64,
    sectors: u64,
}

/// The disk signature and partitions of a card image, as `sfdisk --json` reads them.
fn partition_table(image: &Path) -> (u32, Vec<TableEntry>) {
    let out = common::run_ok(Command::new("sfdisk").arg("--json").arg(image));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "dos", "{json}");
    let id = table["id"].as_str().unwrap().trim_start_matches("0x");
    let entries = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| TableEntry {
            bootable: p["bootable"].as_bool().unwrap_or(false),
            kind: u8::from_str_radix(p["type"].as_str().unwrap(), 16).unwrap(),
            start: p["start"].as_u64().unwrap(),
            sectors: p["size"].as_u64().unwrap(),
        })
        .collect();
    (u32::from_str_radix(id, 16).unwrap(), entries)
}

/// `len` bytes of `file` from byte `at`.
fn read_at(file: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut bytes = vec![0; len];
    f.read_exact(&mut bytes).unwrap();
    bytes
}

fn assert_blob_at(image: &Path, blob: &Path, sector: usize) {
    let bytes = fs::read(blob).unwrap();
    assert!(
        read_at(image, (sector * SECTOR) as u64, bytes.len()) == bytes,
        "{} is not at sector {sector}",
        blob.display()
    );
}

/// `system.env`'s `berth_<name>=<value>` lines.
fn system_env(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// `veritysetup verify` of a slot's bytes with the parameters system.env gives the kernel:
/// whether it accepts them, and what it said.
fn verity_verify(slot: &Path, env: &std::collections::BTreeMap<String, String>) -> (bool, String) {
    let blocks: u64 = env["berth_verity_data_blocks"].parse().unwrap();
    let hash_start: u64 = env["berth_verity_hash_start"].parse().unwrap();
    let out = Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash=sha256"])
        .args(["--data-block-size=4096", "--hash-block-size=4096"])
        .arg(format!("--data-blocks={blocks}"))
        .arg(format!("--hash-offset={}", hash_start * 4096))
        .arg(format!("--salt={}", env["berth_verity_salt"]))
        .arg(slot)
        .arg(slot)
        .arg(&env["berth_verity_root_hash"])
        .output()
        .unwrap();
    (out.status.success(), common::output_text(&out))
}

#[test]
fn post_image_lays_out_two_system_slots_and_the_emmc_boot0_image() {
    let test = "post_image_lays_out_two_system_slots_and_the_emmc_boot0_image";
    let Some(buildroot) = have_genimage_tools(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    fs::create_dir(&images).unwrap();
    stand_in_images(&images, 577_000);
    let output = run_post_image(&buildroot, tmp.path(), &images);
    assert!(output.status.success(), "{}", common::stderr_text(&output));

    let sd = images.join("sdcard.img");
    for blob in BOOT_CHAIN {
        assert_blob_at(&sd, &images.join(blob.file), blob.sd_sector as usize);
    }
    let (signature, parts) = partition_table(&sd);
    assert_eq!(signature, DISK_SIGNATURE);
    assert_eq!(parts.len(), PARTITIONS.len());
    let (boot, a, b, data) = (&parts[0], &parts[1], &parts[2], &parts[3]);
    assert!(
        boot.bootable && boot.kind == 0x0c,
        "p1 must be the bootable FAT partition"
    );
    assert_eq!(boot.start * SECTOR as u64, 4 << 20, "p1 starts at 4 MiB");
    for (slot, after) in [(a, boot), (b, a)] {
        assert!(slot.kind == 0x83 && !slot.bootable && slot.start == after.start + after.sectors);
        assert_eq!(slot.sectors * SECTOR as u64, SYSTEM_SLOT_BYTES);
    }
    assert!(
        data.kind == 0x83 && data.start == b.start + b.sectors && data.sectors >= (16 << 20) / 512
    );
    let card_bytes = fs::metadata(&sd).unwrap().len();
    assert_eq!(
        card_bytes,
        (data.start + data.sectors) * SECTOR as u64,
        "image shorter than its partitions"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(&sd).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len() / 2,
            "slot B and the padding must be holes, not written zeros ({} of {} bytes allocated)",
            meta.blocks() * 512,
            meta.len()
        );
    }
    let (a_at, b_at) = (a.start * SECTOR as u64, b.start * SECTOR as u64);
    let system = fs::read(images.join(SYSTEM_IMAGE)).unwrap();
    assert!(
        read_at(&sd, a_at, system.len()) == system,
        "system.img is not p2"
    );
    // The root is chosen per boot: boot.cmd adds root=/dev/dm-0 over the slot's partition, whose
    // PARTUUID (`part uuid`) is <signature>-02 for A; cmdline.txt must not name one.
    assert!(
        !cmdline().split(' ').any(|p| p.starts_with("root=")),
        "cmdline.txt names a root; boot.cmd adds it for the slot it boots (disk signature {signature:08x}): {}",
        cmdline()
    );
    let erofs = fs::read(images.join("rootfs.erofs")).unwrap();
    assert!(system.starts_with(&erofs) && system.len() > erofs.len());
    let slot_b = read_at(&sd, b_at, SYSTEM_SLOT_BYTES as usize);
    assert!(slot_b.iter().all(|&byte| byte == 0), "p3 is not empty");
    drop(slot_b);

    // p1: the boot script and slot A's parameters, which are system.env.
    let text = fs::read_to_string(images.join(SYSTEM_ENV)).unwrap();
    let env = system_env(&text);
    let boot_fat = format!("{}@@{}", sd.display(), boot.start * SECTOR as u64);
    let listing = common::output_text(&common::run_ok(
        Command::new("mdir").args(["-b", "-i", &boot_fat, "::"]),
    ));
    let mut files: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("::/"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["boot.scr", "slot-A.env", "uboot-redund.env", "uboot.env"],
        "{listing}"
    );
    // Both copies of the boot state: valid and empty redundant environments (CRC32 of the data,
    // then the flag byte, then the data), so that no write on the board ever allocates.
    for copy in ["uboot.env", "uboot-redund.env"] {
        let out =
            common::run_ok(Command::new("mtype").args(["-i", &boot_fat, &format!("::{copy}")]));
        let bytes = out.stdout;
        assert_eq!(bytes.len(), 0x4000, "{copy}");
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[5..]);
        assert_eq!(
            u32::from_le_bytes(bytes[..4].try_into().unwrap()),
            crc.sum(),
            "{copy}'s CRC"
        );
        assert_eq!(bytes[4], 1, "{copy}'s flag");
        assert!(bytes[5..].iter().all(|&b| b == 0), "{copy} is not empty");
    }
    let slot_a_env = common::run_ok(Command::new("mtype").args(["-i", &boot_fat, "::slot-A.env"]));
    assert_eq!(String::from_utf8(slot_a_env.stdout).unwrap(), text);
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "berth_cmdline",
            "berth_verity_data_blocks",
            "berth_verity_hash_start",
            "berth_verity_root_hash",
            "berth_verity_salt",
            "berth_verity_sectors"
        ],
        "{text}"
    );
    assert_eq!(env["berth_cmdline"], cmdline());
    let blocks = erofs.len() as u64 / 4096;
    assert_eq!(env["berth_verity_data_blocks"], blocks.to_string());
    assert_eq!(env["berth_verity_hash_start"], blocks.to_string());
    assert_eq!(env["berth_verity_sectors"], (blocks * 8).to_string());

    // Slot A as the board sees it: veritysetup accepts it, and refuses it after one changed
    // byte of the root filesystem (one in the middle of the stand-in kernel).
    let slot = tmp.path().join("p2");
    fs::write(&slot, read_at(&sd, a_at, system.len())).unwrap();
    fs::File::options()
        .write(true)
        .open(&slot)
        .unwrap()
        .set_len(SYSTEM_SLOT_BYTES)
        .unwrap();
    let (accepted, said) = verity_verify(&slot, &env);
    assert!(accepted, "{said}");
    let kernel = fs::read(images.join("target/boot/zImage")).unwrap();
    let probe = &kernel[500_000..500_064];
    let at = erofs
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the kernel's bytes are stored in the EROFS image");
    let mut changed = fs::read(&slot).unwrap();
    changed[at] ^= 0x01;
    fs::write(&slot, &changed).unwrap();
    let (accepted, said) = verity_verify(&slot, &env);
    assert!(!accepted, "veritysetup accepted a changed root: {said}");
    assert!(said.contains("Verification failed"), "{said}");

    let boot0 = images.join("emmc-boot0.img");
    for blob in BOOT_CHAIN {
        let sector = blob.emmc_boot0_offset() as usize / SECTOR;
        assert_blob_at(&boot0, &images.join(blob.file), sector);
    }
}

#[test]
fn post_image_refuses_a_root_that_is_not_whole_verity_blocks() {
    let test = "post_image_refuses_a_root_that_is_not_whole_verity_blocks";
    let Some(buildroot) = have_genimage_tools(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    fs::create_dir(&images).unwrap();
    stand_in_images(&images, 577_000);
    let mut erofs = fs::read(images.join("rootfs.erofs")).unwrap();
    erofs.push(0);
    fs::write(images.join("rootfs.erofs"), erofs).unwrap();
    let output = run_post_image(&buildroot, tmp.path(), &images);
    assert!(!output.status.success());
    assert!(
        common::stderr_text(&output).contains("not a whole number of 4096-byte verity blocks"),
        "{}",
        common::stderr_text(&output)
    );
    assert!(!images.join(SYSTEM_IMAGE).exists() && !images.join("sdcard.img").exists());
}

#[test]
fn remove_empty_rpath_drops_only_the_empty_search_paths() {
    let test = "remove_empty_rpath_drops_only_the_empty_search_paths";
    if !common::have_tool(test, "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
        || !common::have_tool(test, "patchelf", "patchelf")
        || !common::have_tool(test, "readelf", "binutils")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let host_bin = tmp.path().join("host/bin");
    fs::create_dir_all(target.join("usr/bin")).unwrap();
    fs::create_dir_all(&host_bin).unwrap();
    let patchelf =
        String::from_utf8(common::run_ok(Command::new("which").arg("patchelf")).stdout).unwrap();
    std::os::unix::fs::symlink(patchelf.trim(), host_bin.join("patchelf")).unwrap();
    let src = tmp.path().join("p.c");
    fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let build = |name: &str, flags: &[&str]| {
        let out = target.join("usr/bin").join(name);
        common::run_ok(
            Command::new("arm-linux-gnueabihf-gcc")
                .args(flags)
                .arg("-o")
                .arg(&out)
                .arg(&src),
        );
        out
    };
    let emptied = build(
        "emptied",
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,/build/.libs"],
    );
    // What Buildroot's fix-rpath leaves of a libtool build-tree RUNPATH.
    common::run_ok(
        Command::new("patchelf")
            .args(["--set-rpath", ""])
            .arg(&emptied),
    );
    let systemd = build(
        "systemd",
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,/usr/lib/systemd"],
    );
    let plain = build("plain", &[]);
    let static_exe = build("static", &["-static"]);
    fs::write(target.join("usr/bin/script"), "#!/bin/sh\n").unwrap();
    let before: Vec<Vec<u8>> = [&systemd, &plain, &static_exe]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    common::run_ok(
        Command::new(board_dir().join("remove-empty-rpath.sh"))
            .arg(&target)
            .env("HOST_DIR", tmp.path().join("host")),
    );
    let dynamic = |p: &Path| {
        String::from_utf8(common::run_ok(Command::new("readelf").arg("-d").arg(p)).stdout).unwrap()
    };
    assert!(
        !dynamic(&emptied).contains("RUNPATH"),
        "{}",
        dynamic(&emptied)
    );
    assert!(dynamic(&systemd).contains("[/usr/lib/systemd]"));
    let after: Vec<Vec<u8>> = [&systemd, &plain, &static_exe]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert!(
        before == after,
        "files without an empty search path were rewritten"
    );
}
