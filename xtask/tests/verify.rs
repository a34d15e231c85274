//! `cargo xtask verify` on a good artifact folder and on each kind of corruption: a changed
//! byte, a missing file, a manifest that disagrees, a broken SHA256SUMS, a wrong block map,
//! and a downloaded `.xz` release.

mod common;

use std::path::Path;

use sha2::Digest;

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A small disk-like image: data at the start and in the middle, holes elsewhere.
fn image_bytes(seed: u8) -> Vec<u8> {
    let mut img = vec![0u8; 4 << 20];
    for (i, b) in img[..200_000].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    for b in &mut img[2 << 20..(2 << 20) + 70_000] {
        *b = seed ^ 0x5a;
    }
    img
}

/// Write the image sparsely, as a build leaves it (bmaptool maps only the data).
fn write_sparse(path: &Path, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in bytes.chunks(4096) {
        if chunk.iter().all(|&b| b == 0) {
            f.seek(SeekFrom::Current(chunk.len() as i64)).unwrap();
        } else {
            f.write_all(chunk).unwrap();
        }
    }
    f.set_len(bytes.len() as u64).unwrap();
}

/// SHA256SUMS over `names`, in `sha256sum` format.
fn write_sums(dir: &Path, names: &[&str]) {
    let text: String = names
        .iter()
        .map(|n| format!("{}  {n}\n", sha256(&std::fs::read(dir.join(n)).unwrap())))
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), text).unwrap();
}

/// The tables every Berth manifest has before its artifacts.
const BUILD_RECORD: &str = "# Berth build manifest\n\
    [berth]\ncommit = \"0123456789abcdef\"\ndirty = false\nboard = \"odroid-xu4\"\nsource_date_epoch = 1\n\n\
    [buildroot]\nversion = \"2025.02.x LTS\"\ncommit = \"1ef39b9196e0a5979581187f15fd665ca390c2a0\"\n\n\
    [defconfig]\npath = \"configs/berth_odroid_xu4_defconfig\"\nsha256 = \"00\"\n\n\
    [toolchain]\nkind = \"external\"\nhardening = []\n\n\
    [system_image]\nsize = 314572800\nbudget = 536870912\nslot = 805306368\n";

fn write_manifest(dir: &Path, names: &[&str]) {
    let mut text = String::from(BUILD_RECORD);
    for n in names {
        let bytes = std::fs::read(dir.join(n)).unwrap();
        text += &format!(
            "\n[[artifact]]\nname = \"{n}\"\nsize = {}\nsha256 = \"{}\"\n",
            bytes.len(),
            sha256(&bytes)
        );
    }
    std::fs::write(dir.join("manifest.toml"), text).unwrap();
}

/// A build's images folder without block maps: sdcard.img, emmc-boot0.img, manifest, sums.
fn artifacts(dir: &Path) {
    write_sparse(&dir.join("sdcard.img"), &image_bytes(1));
    std::fs::write(dir.join("emmc-boot0.img"), vec![7u8; 1_031_168]).unwrap();
    write_manifest(dir, &["sdcard.img", "emmc-boot0.img"]);
    write_sums(dir, &["sdcard.img", "emmc-boot0.img", "manifest.toml"]);
}

fn verify(path: &Path) -> (bool, String) {
    let out = common::xtask()
        .arg("verify")
        .arg(path)
        .output()
        .expect("xtask runs");
    (out.status.success(), common::output_text(&out))
}

fn assert_fails_naming(path: &Path, expected: &str) {
    let (ok, text) = verify(path);
    assert!(!ok, "verify accepted a corrupt folder:\n{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    assert!(
        error.contains(expected),
        "the error does not name {expected:?}:\n{text}"
    );
}

#[test]
fn good_artifacts_pass() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    let (ok, text) = verify(dir.path());
    assert!(ok, "verify refused good artifacts:\n{text}");
    assert!(
        text.contains("ok  sdcard.img") && text.contains("checks passed"),
        "{text}"
    );
}

#[test]
fn a_changed_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    let mut img = image_bytes(1);
    img[100_000] ^= 1;
    write_sparse(&dir.path().join("sdcard.img"), &img);
    assert_fails_naming(dir.path(), "sdcard.img: sha256 is");
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    std::fs::remove_file(dir.path().join("emmc-boot0.img")).unwrap();
    assert_fails_naming(
        dir.path(),
        "emmc-boot0.img: listed in SHA256SUMS but missing",
    );
    std::fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    assert_fails_naming(dir.path(), "SHA256SUMS is missing");
}

#[test]
fn a_manifest_that_disagrees_is_named() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    // Both files rewritten consistently, but the manifest describes another image.
    let manifest = std::fs::read_to_string(dir.path().join("manifest.toml")).unwrap();
    let good = sha256(&image_bytes(1));
    std::fs::write(
        dir.path().join("manifest.toml"),
        manifest.replace(&good, &sha256(&image_bytes(2))),
    )
    .unwrap();
    write_sums(
        dir.path(),
        &["sdcard.img", "emmc-boot0.img", "manifest.toml"],
    );
    assert_fails_naming(dir.path(), "sdcard.img: manifest.toml says sha256");

    // The right digest but the wrong size.
    let size = format!("size = {}", 4 << 20);
    std::fs::write(
        dir.path().join("manifest.toml"),
        manifest.replace(&size, "size = 12"),
    )
    .unwrap();
    write_sums(
        dir.path(),
        &["sdcard.img", "emmc-boot0.img", "manifest.toml"],
    );
    assert_fails_naming(
        dir.path(),
        "sdcard.img: 4194304 bytes, but manifest.toml says 12",
    );

    // An artifact the sums do not cover.
    write_manifest(dir.path(), &["sdcard.img", "emmc-boot0.img"]);
    write_sums(dir.path(), &["sdcard.img", "manifest.toml"]);
    assert_fails_naming(
        dir.path(),
        "emmc-boot0.img: listed in manifest.toml but not in SHA256SUMS",
    );

    assert_manifest_refused(dir.path(), "[[artifact]]\nname = 3\n");
}

/// `manifest` written in place of the folder's manifest, the sums sealed over it: verify must
/// refuse it as no Berth build manifest.
fn assert_manifest_refused(dir: &Path, manifest: &str) {
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
    write_sums(dir, &["sdcard.img", "emmc-boot0.img", "manifest.toml"]);
    assert_fails_naming(dir, "manifest.toml is not a valid Berth build manifest");
}

/// verify reads the manifest back with the build's own `Manifest::load`: a file holding only
/// `[[artifact]]` tables (which its own reader used to accept) is not a Berth manifest.
#[test]
fn a_manifest_without_its_build_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.toml")).unwrap();
    assert_manifest_refused(
        dir.path(),
        &manifest[manifest.find("[[artifact]]").unwrap()..],
    );
    // An unknown key is refused too, not silently dropped.
    assert_manifest_refused(
        dir.path(),
        &manifest.replace("dirty = false", "dirty = false\nsigned = true"),
    );
}

#[test]
fn a_malformed_sums_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    artifacts(dir.path());
    let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        format!("{sums}deadbeef  sdcard.img\n"),
    )
    .unwrap();
    assert_fails_naming(dir.path(), "line 4 of SHA256SUMS");
    let escaping = sums.replace("  emmc-boot0.img", "  ../emmc-boot0.img");
    std::fs::write(dir.path().join("SHA256SUMS"), escaping).unwrap();
    assert_fails_naming(dir.path(), "not a plain file name");
}

#[test]
fn a_downloaded_xz_release_is_checked_decompressed() {
    let test = "a_downloaded_xz_release_is_checked_decompressed";
    if !common::have_tool(test, "xz", "xz-utils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    artifacts(d);
    let status = std::process::Command::new("xz")
        .args(["-T1", "-q"])
        .arg(d.join("sdcard.img"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!d.join("sdcard.img").exists());
    // The release adds the download's own digest to the build's sums.
    write_sums(d, &["sdcard.img.xz", "emmc-boot0.img", "manifest.toml"]);
    let build_sums = format!("{}  sdcard.img\n", sha256(&image_bytes(1)));
    let sums = std::fs::read_to_string(d.join("SHA256SUMS")).unwrap();
    std::fs::write(d.join("SHA256SUMS"), build_sums + &sums).unwrap();

    let (ok, text) = verify(&d.join("sdcard.img.xz"));
    assert!(ok, "verify refused a good .xz release:\n{text}");
    assert!(
        text.contains("ok  sdcard.img\n") && text.contains("ok  sdcard.img.xz"),
        "{text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        4,
        "verify left scratch files behind: {leftovers:?}"
    );

    // A download whose compressed bytes decompress to another image.
    let other = d.join("other.img");
    write_sparse(&other, &image_bytes(2));
    let status = std::process::Command::new("xz")
        .args(["-T1", "-q", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::rename(d.join("other.img.xz"), d.join("sdcard.img.xz")).unwrap();
    let sums = std::fs::read_to_string(d.join("SHA256SUMS")).unwrap();
    let fixed: String = sums
        .lines()
        .map(|l| {
            if l.ends_with("  sdcard.img.xz") {
                format!(
                    "{}  sdcard.img.xz\n",
                    sha256(&std::fs::read(d.join("sdcard.img.xz")).unwrap())
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(d.join("SHA256SUMS"), fixed).unwrap();
    assert_fails_naming(&d.join("sdcard.img.xz"), "sdcard.img (decompressed from");

    // A truncated download.
    let xz = std::fs::read(d.join("sdcard.img.xz")).unwrap();
    std::fs::write(d.join("sdcard.img.xz"), &xz[..xz.len() / 2]).unwrap();
    assert_fails_naming(&d.join("sdcard.img.xz"), "sdcard.img.xz");
}

/// Each block map beside an image is checked against it (`bmap::check_image_against_bmap`).
#[test]
fn block_maps_are_checked_against_their_images() {
    let test = "block_maps_are_checked_against_their_images";
    if !common::have_tool(test, "bmaptool", "bmap-tools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    artifacts(d);
    let bmap = |image: &Path, out: &Path| {
        let status = std::process::Command::new("bmaptool")
            .arg("-q")
            .arg("create")
            .arg(image)
            .arg("-o")
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "bmaptool create failed");
    };
    bmap(&d.join("sdcard.img"), &d.join("sdcard.img.bmap"));
    let listed = [
        "sdcard.img",
        "sdcard.img.bmap",
        "emmc-boot0.img",
        "manifest.toml",
    ];
    write_manifest(d, &["sdcard.img", "sdcard.img.bmap", "emmc-boot0.img"]);
    write_sums(d, &listed);
    let (ok, text) = verify(d);
    assert!(
        ok,
        "verify refused good artifacts with a block map:\n{text}"
    );
    assert!(
        text.contains("ok  sdcard.img against sdcard.img.bmap"),
        "{text}"
    );

    // A map made for another image, with sums and manifest made over what is there.
    let other = tempfile::tempdir().unwrap();
    write_sparse(&other.path().join("sdcard.img"), &image_bytes(2));
    bmap(&other.path().join("sdcard.img"), &d.join("sdcard.img.bmap"));
    write_manifest(d, &["sdcard.img", "sdcard.img.bmap", "emmc-boot0.img"]);
    write_sums(d, &listed);
    assert_fails_naming(d, "sdcard.img does not match its block map sdcard.img.bmap");

    // A stray map nobody listed is still checked.
    bmap(
        &other.path().join("sdcard.img"),
        &d.join("emmc-boot0.img.bmap"),
    );
    bmap(&d.join("sdcard.img"), &d.join("sdcard.img.bmap"));
    write_manifest(d, &["sdcard.img", "sdcard.img.bmap", "emmc-boot0.img"]);
    write_sums(d, &listed);
    assert_fails_naming(
        d,
        "emmc-boot0.img does not match its block map emmc-boot0.img.bmap",
    );
}
