//! Block maps: Berth's against Debian's bmaptool, both ways, and `cargo xtask bmap --check`.

mod common;
mod images;

use std::path::{Path, PathBuf};
use std::process::Command;

use images::{make_map, read_prefix, sha, sparse_image, stderr, write_at, xtask, MIB};

const IMAGE_SIZE: u64 = 16 * MIB + 4096 * 5 + 7;

/// The `<Range …>` lines of a map, whitespace normalised: the part both tools must agree on.
fn range_lines(map: &Path) -> Vec<String> {
    std::fs::read_to_string(map)
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains("<Range") || l.contains("<ImageSize>") || l.contains("<BlocksCount>")
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn bmaptool_create(image: &Path) -> PathBuf {
    let map = image.with_extension("bmaptool.bmap");
    let out = Command::new("bmaptool")
        .arg("create")
        .arg(image)
        .arg("-o")
        .arg(&map)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bmaptool create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    map
}

#[test]
fn berth_and_bmaptool_map_the_same_blocks_with_the_same_checksums() {
    if !common::have_tool(
        "berth_and_bmaptool_map_the_same_blocks",
        "bmaptool",
        "bmap-tools",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", IMAGE_SIZE);
    let ours = make_map(&image);
    let theirs = bmaptool_create(&image);
    let lines = range_lines(&ours);
    assert!(
        lines.iter().filter(|l| l.contains("<Range")).count() >= 3,
        "{lines:?}"
    );
    assert_eq!(lines, range_lines(&theirs));
}

#[test]
fn bmaptool_map_is_accepted_by_berth_check_and_flash() {
    if !common::have_tool(
        "bmaptool_map_is_accepted_by_berth_check_and_flash",
        "bmaptool",
        "bmap-tools",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", IMAGE_SIZE);
    let theirs = bmaptool_create(&image);
    let out = xtask(&[&"bmap", &image, &"--check", &theirs]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = dir.path().join("out.img");
    let out = xtask(&[&"flash", &image, &target, &"--to-file", &"--bmap", &theirs]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
    assert_eq!(sha(&target), sha(&image));
}

#[test]
fn berth_map_is_accepted_by_bmaptool_copy() {
    let test = "berth_map_is_accepted_by_bmaptool_copy";
    if !common::have_tool(test, "bmaptool", "bmap-tools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", IMAGE_SIZE);
    let ours = make_map(&image);
    let target = dir.path().join("copy.img");
    let out = Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&ours)
        .arg(&image)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bmaptool copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha(&target), sha(&image));

    // bmaptool checks our range checksums too: a changed byte must make it fail.
    write_at(&image, 4 * MIB + 99, b"?");
    let out = Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&ours)
        .arg(&image)
        .arg(dir.path().join("bad.img"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "bmaptool accepted a corrupt image with Berth's map"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn berth_map_drives_bmaptool_copy_to_a_loop_device() {
    let test = "berth_map_drives_bmaptool_copy_to_a_loop_device";
    if !common::have_tool(test, "bmaptool", "bmap-tools") || !common::is_root(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", IMAGE_SIZE);
    let ours = make_map(&image);
    let backing = dir.path().join("backing.img");
    std::fs::write(&backing, vec![0u8; 20 * MIB as usize]).unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
        .unwrap();
    if !out.status.success() {
        common::skip(test, "no loop device available");
        return;
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let copy = Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(&ours)
        .arg(&image)
        .arg(&dev)
        .output()
        .unwrap();
    let copied = read_prefix(Path::new(&dev), IMAGE_SIZE);
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(
        copy.status.success(),
        "bmaptool copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert_eq!(copied, std::fs::read(&image).unwrap());
}

#[test]
fn check_names_the_first_bad_range_and_a_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", IMAGE_SIZE);
    let map = make_map(&image);
    let out = xtask(&[&"bmap", &image, &"--check", &map]);
    assert!(out.status.success(), "{}", stderr(&out));

    write_at(&image, 9 * MIB + 4096 * 3 + 10, b"?");
    let out = xtask(&[&"bmap", &image, &"--check", &map]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("blocks 2307-2308 of"),
        "{}",
        stderr(&out)
    );

    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(IMAGE_SIZE + 1)
        .unwrap();
    let out = xtask(&[&"bmap", &image, &"--check", &map]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "its block map {} says {IMAGE_SIZE} bytes",
            map.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bmap_of_a_missing_image_is_a_clear_error() {
    let out = xtask(&[&"bmap", &"/nonexistent/sdcard.img"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("could not open image /nonexistent/sdcard.img"),
        "{}",
        stderr(&out)
    );
}
