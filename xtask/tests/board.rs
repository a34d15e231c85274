//! The board scripts and the genimage layout of board/odroid-xu4, run on stand-in inputs (random
//! bytes in place of the Hardkernel blobs, U-Boot, kernel and root filesystem).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::project::BOOT_CHAIN;

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

/// Everything post-image.sh and genimage.cfg read from the images folder.
fn stand_in_images(dir: &Path, uboot_len: usize) {
    let [bl1, bl2, uboot, tzsw] = BOOT_CHAIN.map(|blob| dir.join(blob.file));
    stand_in(&bl1, 15360, 1);
    stand_in(&bl2, 14336, 2);
    stand_in(&uboot, uboot_len, 3);
    stand_in(&tzsw, 262_144, 4);
    stand_in(&dir.join("zImage"), 1 << 20, 5);
    for board in ["odroidxu3-lite", "odroidxu4", "odroidxu3", "odroidhc1"] {
        stand_in(&dir.join(format!("exynos5422-{board}.dtb")), 4096, 6);
    }
    std::fs::write(dir.join("extlinux.conf"), "default berth\n").unwrap();
    stand_in(&dir.join("rootfs.ext4"), 8 << 20, 7);
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

/// What post-build.sh looks for in the signing certificate it installs as RAUC's keyring.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn post_build_installs_only_a_certificate_as_the_rauc_keyring_and_the_staged_hawkbit_files() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let keys = tmp.path().join("keys.pub");
    std::fs::write(
        &keys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthTestKeyOnly t\n",
    )
    .unwrap();
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
fn post_build_writes_the_boot_menu_and_root_keys() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let keys = tmp.path().join("keys.pub");
    std::fs::write(
        &keys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthTestKeyOnly test@berth\n",
    )
    .unwrap();
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

    let menu = std::fs::read_to_string(tmp.path().join("extlinux.conf")).unwrap();
    assert!(
        menu.contains(&format!("\tappend {}\n", cmdline())),
        "{menu}"
    );
    assert!(
        menu.contains("\tkernel /zImage\n") && menu.contains("\tfdtdir /\n"),
        "{menu}"
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
        .env("BR2_CONFIG", work.join("no-config"))
        .output()
        .unwrap()
}

/// The tools post-image.sh needs, or a printed skip.
fn have_genimage_tools(test: &str) -> Option<PathBuf> {
    let buildroot = common::buildroot_tree(test)?;
    (common::have_tool(test, "genimage", "genimage")
        && common::have_tool(test, "mkdosfs", "dosfstools")
        && common::have_tool(test, "mcopy", "mtools"))
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

struct MbrEntry {
    bootable: bool,
    kind: u8,
    start: u64,
    sectors: u64,
}

fn mbr(image: &[u8]) -> (u32, Vec<MbrEntry>) {
    assert_eq!(&image[510..512], &[0x55, 0xaa], "no MBR boot signature");
    let u32_at = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
    let entries = (0..4)
        .map(|i| 446 + 16 * i)
        .filter(|&e| image[e + 4] != 0)
        .map(|e| MbrEntry {
            bootable: image[e] == 0x80,
            kind: image[e + 4],
            start: u32_at(e + 8).into(),
            sectors: u32_at(e + 12).into(),
        })
        .collect();
    (u32_at(440), entries)
}

fn assert_blob_at(image: &[u8], blob: &Path, sector: usize) {
    let bytes = std::fs::read(blob).unwrap();
    let at = sector * SECTOR;
    assert!(
        image[at..at + bytes.len()] == bytes[..],
        "{} is not at sector {sector}",
        blob.display()
    );
}

#[test]
fn post_image_lays_out_the_sd_card_and_emmc_boot0_images() {
    let test = "post_image_lays_out_the_sd_card_and_emmc_boot0_images";
    let Some(buildroot) = have_genimage_tools(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    stand_in_images(&images, 577_000);
    let output = run_post_image(&buildroot, tmp.path(), &images);
    assert!(output.status.success(), "{}", common::stderr_text(&output));

    let sd = std::fs::read(images.join("sdcard.img")).unwrap();
    for blob in BOOT_CHAIN {
        assert_blob_at(&sd, &images.join(blob.file), blob.sd_sector as usize);
    }
    let (signature, parts) = mbr(&sd);
    assert_eq!(parts.len(), 3);
    let (boot, rootfs, data) = (&parts[0], &parts[1], &parts[2]);
    assert!(
        boot.bootable && boot.kind == 0x0c,
        "p1 must be the bootable FAT partition"
    );
    assert!(
        boot.start * SECTOR as u64 >= 4 << 20,
        "p1 starts before 4 MiB, over U-Boot's environment offset"
    );
    assert!(rootfs.kind == 0x83 && rootfs.start == boot.start + boot.sectors);
    assert!(
        data.kind == 0x83
            && data.start == rootfs.start + rootfs.sectors
            && data.sectors >= (16 << 20) / 512
    );
    assert_eq!(
        sd.len() as u64,
        (data.start + data.sectors) * SECTOR as u64,
        "image shorter than its partitions"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(images.join("sdcard.img")).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len() / 2,
            "the padding must be a hole, not written zeros ({} of {} bytes allocated)",
            meta.blocks() * 512,
            meta.len()
        );
    }
    let rootfs_image = std::fs::read(images.join("rootfs.ext4")).unwrap();
    let at = rootfs.start as usize * SECTOR;
    assert!(
        sd[at..at + rootfs_image.len()] == rootfs_image[..],
        "rootfs.ext4 is not p2"
    );
    assert!(
        cmdline().contains(&format!("root=PARTUUID={signature:08x}-02 ")),
        "cmdline.txt does not boot p2 of disk signature {signature:08x}: {}",
        cmdline()
    );

    let boot0 = std::fs::read(images.join("emmc-boot0.img")).unwrap();
    for blob in BOOT_CHAIN {
        let sector = blob.emmc_boot0_offset() as usize / SECTOR;
        assert_blob_at(&boot0, &images.join(blob.file), sector);
    }
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
