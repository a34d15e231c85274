//! `cargo xtask flash` end to end: regular-file targets everywhere, loop devices when root.
//! Every refusal is shown to leave the target exactly as it was.

mod common;
mod images;

use images::{make_map, pattern, read_prefix, sha, sparse_image, stderr, write_at, xtask, MIB};

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::flash::{self, Boot0Location, Destination, Request};

/// A target file full of an earlier image's bytes, with a partition table signature.
fn stale_target(dir: &Path, len: u64) -> PathBuf {
    let path = dir.join("target.img");
    let mut stale = vec![0xa5u8; len as usize];
    stale[510] = 0x55;
    stale[511] = 0xaa;
    std::fs::write(&path, stale).unwrap();
    path
}

fn assert_first_mib_zeroed(target: &Path) {
    assert!(
        read_prefix(target, MIB).iter().all(|&b| b == 0),
        "the first MiB of {} was not cleared",
        target.display()
    );
}

#[test]
fn sparse_image_to_file_matches_and_holes_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB + 4096 * 5 + 7);
    make_map(&image);
    let target = stale_target(dir.path(), 24 * MIB);
    let out = xtask(&[&"flash", &image, &target, &"--to-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("discarded"), "{}", stderr(&out));
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
    let size = std::fs::metadata(&image).unwrap().len();
    // Holes read back as zeros: the stale bytes there were discarded (hole punched).
    assert_eq!(read_prefix(&target, size), std::fs::read(&image).unwrap());
    // Beyond the image the target is left alone.
    assert_eq!(read_prefix(&target, 24 * MIB)[(20 * MIB) as usize], 0xa5);
}

#[test]
fn image_without_map_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "plain.img", 12 * MIB);
    let target = stale_target(dir.path(), 12 * MIB);
    let out = xtask(&[&"flash", &image, &target, &"--to-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no block map"), "{}", stderr(&out));
    assert_eq!(sha(&target), sha(&image));
}

fn compress(test: &str, tool: &str, package: &str, image: &Path) -> Option<PathBuf> {
    if !common::have_tool(test, tool, package) {
        return None;
    }
    let ok = Command::new(tool)
        .args(["-k", "-f"])
        .arg(image)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{tool} failed");
    let ext = if tool == "xz" { ".xz" } else { ".gz" };
    let mut name = image.as_os_str().to_owned();
    name.push(ext);
    Some(PathBuf::from(name))
}

#[test]
fn compressed_images_stream_with_and_without_map() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    make_map(&image);
    for (tool, package) in [("xz", "xz-utils"), ("gzip", "gzip")] {
        let Some(packed) = compress(
            "compressed_images_stream_with_and_without_map",
            tool,
            package,
            &image,
        ) else {
            continue;
        };
        // With the map found beside the uncompressed name (sdcard.img.bmap for sdcard.img.xz).
        let target = dir.path().join(format!("{tool}-mapped.out"));
        let out = xtask(&[&"flash", &packed, &target, &"--to-file"]);
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        assert!(stderr(&out).contains("sdcard.img.bmap"), "{}", stderr(&out));
        assert_eq!(sha(&target), sha(&image), "{tool} with map");
        // Without a map: every byte.
        let target = dir.path().join(format!("{tool}-whole.out"));
        let out = xtask(&[&"flash", &packed, &target, &"--to-file", &"--no-bmap"]);
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        assert_eq!(sha(&target), sha(&image), "{tool} without map");
    }
}

#[test]
fn truncated_xz_fails_and_leaves_no_partition_table() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    make_map(&image);
    let Some(packed) = compress(
        "truncated_xz_fails_and_leaves_no_partition_table",
        "xz",
        "xz-utils",
        &image,
    ) else {
        return;
    };
    let len = std::fs::metadata(&packed).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&packed)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();
    for extra in [&[][..], &["--no-bmap"][..]] {
        let target = stale_target(dir.path(), 16 * MIB);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"flash", &packed, &target, &"--to-file"];
        for e in extra {
            args.push(e);
        }
        let out = xtask(&args);
        assert!(!out.status.success(), "a truncated xz was flashed");
        let err = stderr(&out);
        assert!(err.contains("truncated or corrupt"), "{err}");
        if extra.is_empty() {
            assert!(err.contains("INCOMPLETE"), "{err}");
            assert_first_mib_zeroed(&target);
        } else {
            // Without a map the size pass reads the whole stream first: nothing is written.
            assert_eq!(read_prefix(&target, 512)[510..], [0x55, 0xaa], "{err}");
        }
    }
}

#[test]
fn corrupt_range_is_named_and_leaves_no_partition_table() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    make_map(&image);
    // One byte changed inside the data at 4 MiB (blocks 1024-1535) after the map was made.
    write_at(&image, 5 * MIB + 17, b"!");
    let target = stale_target(dir.path(), 16 * MIB);
    let out = xtask(&[&"flash", &image, &target, &"--to-file"]);
    assert!(!out.status.success(), "a corrupt image was flashed");
    let err = stderr(&out);
    assert!(err.contains("blocks 1024-1535 of the image"), "{err}");
    assert!(err.contains("INCOMPLETE"), "{err}");
    assert_first_mib_zeroed(&target);
}

#[test]
fn image_size_disagreeing_with_map_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    make_map(&image);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(16 * MIB + 4096)
        .unwrap();
    let target = stale_target(dir.path(), 20 * MIB);
    let before = sha(&target);
    let out = xtask(&[&"flash", &image, &target, &"--to-file"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("but its block map"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha(&target), before);
}

#[test]
fn edited_map_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    let map = make_map(&image);
    let text = std::fs::read_to_string(&map).unwrap();
    std::fs::write(
        &map,
        text.replacen("</Range>", "</Range>\n        <Range> 3000 </Range>", 1),
    )
    .unwrap();
    let target = stale_target(dir.path(), 16 * MIB);
    let before = sha(&target);
    let out = xtask(&[&"flash", &image, &target, &"--to-file"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BmapFileChecksum"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha(&target), before);
}

#[test]
fn regular_file_is_refused_without_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 8 * MIB);
    let target = stale_target(dir.path(), 8 * MIB);
    let before = sha(&target);
    let out = xtask(&[&"flash", &image, &target, &"--yes"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a block device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha(&target), before);
}

#[test]
fn to_file_refuses_a_block_device_and_the_image_itself() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 8 * MIB);
    let before = sha(&image);
    let out = xtask(&[&"flash", &image, &image, &"--to-file"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("onto itself"), "{}", stderr(&out));
    assert_eq!(sha(&image), before);
    // /dev/null is a character device; a block device needs one to exist: use a loop device.
    let backing = backing_file(dir.path(), 8 * MIB);
    let Some(lo) = loop_device("to_file_refuses_a_block_device", &backing, false) else {
        return;
    };
    let out = xtask(&[&"flash", &image, &lo.dev, &"--to-file"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("it is a block device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        read_prefix(&backing, 8 * MIB),
        vec![0xa5u8; 8 * MIB as usize]
    );
}

#[test]
fn emmc_boot0_from_artifact_or_derived_with_force_ro_restored() {
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 8 * MIB);
    let force_ro = dir.path().join("force_ro");
    let image_bytes = std::fs::read(&image).unwrap();
    for with_artifact in [false, true] {
        let boot0 = dir.path().join(format!("boot0-{with_artifact}"));
        std::fs::write(&boot0, vec![0xeeu8; 4 * MIB as usize]).unwrap();
        std::fs::write(&force_ro, "1\n").unwrap();
        let artifact = pattern(720 * 1024, 9);
        if with_artifact {
            std::fs::write(dir.path().join("emmc-boot0.img"), &artifact).unwrap();
        }
        // A regular file and its force_ro stand in for the eMMC's boot0 partition.
        let destination = Destination::File {
            path: dir.path().join("user-area.img"),
            boot0: Some(Boot0Location {
                device: boot0.clone(),
                force_ro: force_ro.clone(),
            }),
        };
        flash::flash(&Request::new(&image, destination)).unwrap();
        let written = std::fs::read(&boot0).unwrap();
        let expected: &[u8] = if with_artifact {
            &artifact
        } else {
            &image_bytes[512..2015 * 512]
        };
        assert_eq!(
            &written[..expected.len()],
            expected,
            "artifact={with_artifact}"
        );
        assert_eq!(
            written[expected.len()],
            0xee,
            "boot0 beyond the bootloader is left alone"
        );
        assert_eq!(
            std::fs::read_to_string(&force_ro).unwrap(),
            "1",
            "force_ro not restored"
        );
    }
}

// ---- loop devices (root) ----

struct Loop {
    dev: String,
    mounted: Option<PathBuf>,
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(at) = &self.mounted {
            let _ = Command::new("umount").arg(at).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn loop_device(test: &str, backing: &Path, partscan: bool) -> Option<Loop> {
    if !common::is_root(test) || !common::have_tool(test, "losetup", "mount") {
        return None;
    }
    let mut cmd = Command::new("losetup");
    cmd.args(["-f", "--show"]);
    if partscan {
        cmd.arg("-P");
    }
    let out = cmd.arg(backing).output().unwrap();
    if !out.status.success() {
        common::skip(
            test,
            &format!(
                "no loop device available: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
        return None;
    }
    Some(Loop {
        dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        mounted: None,
    })
}

fn backing_file(dir: &Path, len: u64) -> PathBuf {
    let path = dir.join("backing.img");
    std::fs::write(&path, vec![0xa5u8; len as usize]).unwrap();
    path
}

#[test]
fn loop_device_round_trip_with_discard() {
    let test = "loop_device_round_trip_with_discard";
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB + 4096 * 5 + 7);
    make_map(&image);
    let backing = backing_file(dir.path(), 32 * MIB);
    let Some(lo) = loop_device(test, &backing, false) else {
        return;
    };
    let out = xtask(&[
        &"flash",
        &image,
        &lo.dev,
        &"--yes",
        &"--allow-non-removable",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("This will overwrite") && err.contains(&lo.dev),
        "{err}"
    );
    assert!(err.contains("discarded"), "{err}");
    let size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(
        read_prefix(Path::new(&lo.dev), size),
        std::fs::read(&image).unwrap()
    );
}

#[test]
fn loop_device_refusals_leave_it_untouched() {
    let test = "loop_device_refusals_leave_it_untouched";
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    make_map(&image);
    let backing = backing_file(dir.path(), 8 * MIB);
    let Some(lo) = loop_device(test, &backing, false) else {
        return;
    };
    let before = sha(&backing);
    // Not removable (a loop device never is) without the explicit flag.
    let out = xtask(&[&"flash", &image, &lo.dev, &"--yes"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not removable"), "{}", stderr(&out));
    // Smaller than the image.
    let out = xtask(&[
        &"flash",
        &image,
        &lo.dev,
        &"--yes",
        &"--allow-non-removable",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("smaller than the image"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    // Without --yes and without a terminal to ask on.
    let small = dir.path().join("small.img");
    std::fs::write(&small, pattern(4 * MIB as usize, 5)).unwrap();
    let out = xtask(&[&"flash", &small, &lo.dev, &"--allow-non-removable"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("without confirmation"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha(&backing), before);
}

fn wait_for(path: &str) -> bool {
    for _ in 0..50 {
        if Path::new(path).exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn loop_device_with_mounted_partition_is_refused() {
    let test = "loop_device_with_mounted_partition_is_refused";
    if !common::have_tool(test, "sfdisk", "fdisk")
        || !common::have_tool(test, "mkfs.ext4", "e2fsprogs")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = sparse_image(dir.path(), "sdcard.img", 16 * MIB);
    let backing = backing_file(dir.path(), 32 * MIB);
    common::run_ok_with_input(
        Command::new("sfdisk")
            .args(["-q", "--no-reread"])
            .arg(&backing),
        b"label: dos\nstart=8192, type=83\n",
    );
    let Some(mut lo) = loop_device(test, &backing, true) else {
        return;
    };
    let part = format!("{}p1", lo.dev);
    if !wait_for(&part) {
        // Kernels without the MBR parser add nothing on `losetup -P`; partx adds it from userspace.
        let _ = Command::new("partx").args(["-a", &lo.dev]).status();
    }
    assert!(wait_for(&part), "{part} did not appear");
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F", &part])
        .status()
        .unwrap()
        .success());
    let mount_point = dir.path().join("mnt");
    std::fs::create_dir(&mount_point).unwrap();
    if !Command::new("mount")
        .arg(&part)
        .arg(&mount_point)
        .status()
        .unwrap()
        .success()
    {
        common::skip(test, "mount of a loop partition failed here");
        return;
    }
    lo.mounted = Some(mount_point.clone());
    // The mounted ext4 may write its own blocks; the first MiB (MBR) is outside it, and Berth's
    // first act on a target is to clear exactly that.
    let before = read_prefix(&backing, MIB);
    let out = xtask(&[
        &"flash",
        &image,
        &lo.dev,
        &"--yes",
        &"--allow-non-removable",
    ]);
    assert!(
        !out.status.success(),
        "a disk with a mounted partition was overwritten"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}p1 is mounted at {}",
            &lo.dev[5..],
            mount_point.display()
        )),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    // A partition is not a whole disk.
    let out = xtask(&[&"flash", &image, &part, &"--yes", &"--allow-non-removable"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("give the whole disk"),
        "{}",
        stderr(&out)
    );
    assert!(
        read_prefix(&backing, MIB) == before,
        "the first MiB of the mounted disk changed"
    );
}

#[test]
fn bench_flash_times_all_three_tools() {
    if !common::have_tool(
        "bench_flash_times_all_three_tools",
        "bmaptool",
        "bmap-tools",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = xtask(&[
        &"bench",
        &"flash",
        &"--dir",
        &dir.path(),
        &"--image-mib",
        &"64",
        &"--data-mib",
        &"8",
        &"--no-loop",
        &"--runs",
        &"2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    // Each tool's median with both runs' times, and Berth's two modes against the other two tools.
    for tool in [
        "dd bs=4M conv=fsync",
        "bmaptool copy",
        "berth flash",
        "berth flash --no-verify",
    ] {
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("| {tool} | file | ")))
            .unwrap_or_else(|| panic!("no row for {tool}: {table}"));
        assert_eq!(
            row.rsplit('|').nth(1).unwrap().split_whitespace().count(),
            2,
            "{row}"
        );
    }
    for comparison in [
        "| file | berth flash | bmaptool copy | ",
        "| file | berth flash | dd bs=4M conv=fsync | ",
        "| file | berth flash --no-verify | bmaptool copy | ",
        "| file | berth flash --no-verify | dd bs=4M conv=fsync | ",
    ] {
        assert!(table.contains(comparison), "{table}");
    }
    assert!(table.contains("2 run(s) per tool"), "{table}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the bench left files behind"
    );
}
