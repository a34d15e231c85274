//! `cargo xtask image --apps FILE` end to end, offline: the apps file names by digest an ARM image
//! served on 127.0.0.1 (`local_registry/`), the build runs on the stand-in Buildroot
//! (`stand_in/`) through the board's real post-build.sh, post-image.sh and genimage, and the card
//! it makes must carry the archive in its system slot, as the manifest and the SBOM say.

mod common;
mod local_registry;
mod stand_in;

use std::fs;
use std::path::Path;
use std::process::Command;

use xtask::apps::{units, ARCHIVE_DIR, LIST_FILE};
use xtask::diff::disk;
use xtask::erofs::ErofsImage;
use xtask::rootfs::RootFs;

use local_registry::{apps_file, setup};
use stand_in::build::Build;
use stand_in::inputs;

/// System slot A of a card image (genimage.cfg's second partition: system.img, the EROFS root
/// with its verity tree after it), copied out beside it.
fn system_slot(card: &Path, dir: &Path) -> ErofsImage {
    let partitions = disk::parse_mbr(&disk::read_head(card).unwrap());
    let root = partitions
        .iter()
        .find(|p| p.number == 2)
        .unwrap_or_else(|| panic!("{} has no partition 2: {partitions:?}", card.display()));
    let slot = dir.join("system-slot-a.img");
    disk::extract(card, root, &slot).unwrap();
    ErofsImage::open(&slot).unwrap()
}

#[test]
fn a_build_with_apps_carries_the_archive_in_its_system_slot() {
    let test = "a_build_with_apps_carries_the_archive_in_its_system_slot";
    let Some(inputs) = inputs(test) else { return };
    let Some((registry, pushed, _served)) = setup(test) else {
        return;
    };
    let mut build = Build::prepare(&inputs);
    let file = apps_file(
        build.dir.path(),
        &format!("{}/berth/hello@{}", registry.addr, pushed.index),
    );
    // Its own AppArmor profile, named relative to apps.toml.
    let profile =
        "profile berth-hello flags=(attach_disconnected,mediate_deleted) {\n  /srv/** r,\n}\n";
    fs::write(build.dir.path().join("hello.apparmor"), profile).unwrap();
    let declared = fs::read_to_string(&file).unwrap();
    fs::write(&file, format!("{declared}apparmor = \"hello.apparmor\"\n")).unwrap();
    build.apps = Some(file);
    let Some(build) = build.succeed(test) else {
        return;
    };
    let images = build.output.join("images");

    // (1) Sealed: the sums hold, and the manifest and its artifacts agree.
    common::run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&images),
    );
    xtask::verify::verify_folder(&images, None).unwrap();

    // (3) The manifest's record: the arm/v7 manifest of the declared index, its image ID.
    let manifest = xtask::release::read_manifest(&images).unwrap();
    let [record] = manifest.apps.as_slice() else {
        panic!("one app in the manifest: {:?}", manifest.apps);
    };
    assert_eq!(record.name, "hello");
    assert_eq!(
        record.image,
        format!("{}/berth/hello@{}", registry.addr, pushed.index)
    );
    assert_eq!(record.manifest_digest, pushed.manifest);
    assert_eq!(record.image_id, pushed.config);
    assert_eq!(record.archive, format!("/{ARCHIVE_DIR}/hello.tar"));

    // (2) The card's system slot holds that archive, its list and the unit, enabled.
    let slot = system_slot(&images.join("sdcard.img"), build.dir.path());
    let archive = slot
        .read(&record.archive)
        .unwrap()
        .unwrap_or_else(|| panic!("no {} in the system slot", record.archive));
    assert_eq!(archive.len() as u64, record.archive_size);
    assert_eq!(xtask::util::sha256_hex(&archive), record.archive_sha256);
    let list = slot
        .read(&format!("/{ARCHIVE_DIR}/{LIST_FILE}"))
        .unwrap()
        .expect("the apps list in the system slot");
    assert_eq!(
        String::from_utf8(list).unwrap(),
        format!(
            "hello {} {} hello.tar\n",
            record.archive_sha256, pushed.config
        )
    );
    let unit = units::unit_name("hello");
    let body = slot
        .read(&format!("/etc/systemd/system/{unit}"))
        .unwrap()
        .unwrap_or_else(|| panic!("no {unit} in the system slot"));
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("--memory 16777216") && body.contains(&pushed.config),
        "{body}"
    );
    assert!(
        body.contains(" --security-opt apparmor=berth-hello "),
        "{body}"
    );
    // The profile is in the slot where apparmor.service loads it at boot.
    let shipped = slot
        .read("/etc/apparmor.d/berth-app-hello")
        .unwrap()
        .expect("the app's AppArmor profile in the system slot");
    assert_eq!(String::from_utf8(shipped).unwrap(), profile);
    let wanted = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
    let (real, stat) = slot
        .resolve(&wanted, false)
        .unwrap()
        .unwrap_or_else(|| panic!("{unit} is not enabled: no {wanted}"));
    assert!(stat.is_symlink, "{wanted} is no link");
    assert_eq!(slot.raw_readlink(&real).unwrap(), format!("../{unit}"));
    // The slot starts with the rootfs.erofs the build made, byte for byte.
    let erofs = images.join("rootfs.erofs");
    let erofs_len = fs::metadata(&erofs).unwrap().len();
    assert_eq!(
        disk::digest_range(&build.dir.path().join("system-slot-a.img"), 0, erofs_len).unwrap(),
        disk::digest_range(&erofs, 0, erofs_len).unwrap(),
        "system slot A does not start with rootfs.erofs"
    );
    let rootfs = ErofsImage::open(&erofs).unwrap();
    assert_eq!(rootfs.read(&record.archive).unwrap(), Some(archive));

    // (4) The SBOM lists the app by its manifest digest and archive hash.
    let sbom: serde_json::Value =
        serde_json::from_slice(&fs::read(images.join("sbom.cdx.json")).unwrap()).unwrap();
    let component = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "container" && c["name"] == "hello")
        .unwrap_or_else(|| panic!("no container hello in the SBOM: {sbom}"));
    assert_eq!(component["version"], pushed.manifest.as_str());
    assert_eq!(
        component["hashes"][0]["content"],
        record.archive_sha256.as_str()
    );
}
