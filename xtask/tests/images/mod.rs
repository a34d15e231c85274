//! Test images shared by the flash and bmap tests: sparse, deterministic, sdcard.img-shaped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: u64 = 1 << 20;

/// Deterministic bytes (xorshift), so tests need no random crate and failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(data, offset).unwrap();
}

/// A sparse image like sdcard.img: an MBR and bootloader-like data in the first MiB, data
/// extents further on with holes between, and a short block at the very end.
pub fn sparse_image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    let mut mbr = vec![0u8; 512];
    mbr[446..462].copy_from_slice(&[0, 0, 0, 0, 0x83, 0, 0, 0, 0, 0x20, 0, 0, 0, 0x20, 0, 0]);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    write_at(&path, 0, &mbr);
    write_at(&path, 512, &pattern(300 * 1024, 1)); // "BL1..U-Boot"
    write_at(&path, 4 * MIB, &pattern(2 * MIB as usize, 2));
    write_at(&path, 9 * MIB + 4096 * 3, &pattern(5000, 3));
    write_at(&path, size - 1234, &pattern(1234, 4));
    path
}

pub fn sha(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

pub fn read_prefix(path: &Path, len: u64) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

pub fn xtask(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = crate::common::xtask();
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn make_map(image: &Path) -> PathBuf {
    let out = xtask(&[&"bmap", &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut map = image.as_os_str().to_owned();
    map.push(".bmap");
    PathBuf::from(map)
}
