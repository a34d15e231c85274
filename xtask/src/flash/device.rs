//! Which disk is the target, and may we overwrite it? Read from a sysfs tree and the text of
//! `/proc/self/mountinfo` and `/proc/swaps`, all injectable so the rules are tested on fixture trees
//! (xtask/tests/fixtures/sysfs/) as well as on the running machine.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the kernel's views live; `/sys` and `/proc` on a real run, a fixture tree in tests.
#[derive(Debug, Clone)]
pub struct SystemRoot {
    pub sys: PathBuf,
    pub proc: PathBuf,
}

impl SystemRoot {
    pub fn live() -> Self {
        SystemRoot {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }

    fn block(&self) -> PathBuf {
        self.sys.join("block")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub dev: String,
    pub size_bytes: u64,
    pub holders: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub dev: String,
    pub size_bytes: u64,
    pub removable: bool,
    pub read_only: bool,
    /// "SD" or "MMC" for cards and eMMC on an SD/MMC host (the kernel marks neither removable).
    pub mmc_type: Option<String>,
    pub model: String,
    pub holders: Vec<String>,
    pub partitions: Vec<Partition>,
}

impl Disk {
    /// Removable media: the kernel's flag, or an SD card in a native slot.
    pub fn is_removable(&self) -> bool {
        self.removable || self.mmc_type.as_deref() == Some("SD")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: String,
    pub mount_point: String,
    pub source: String,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn list_dir(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sectors_to_bytes(text: Option<String>) -> u64 {
    text.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512
}

/// Reads one whole disk (`<sys>/block/<name>`) and its partitions.
pub fn read_disk(root: &SystemRoot, name: &str) -> Result<Disk> {
    let dir = root.block().join(name);
    let dev = read_trimmed(&dir.join("dev")).with_context(|| {
        format!(
            "{} does not exist, so {name} is not a whole disk",
            dir.display()
        )
    })?;
    let partitions = list_dir(&dir)
        .into_iter()
        .filter(|entry| dir.join(entry).join("partition").is_file())
        .map(|entry| {
            let pdir = dir.join(&entry);
            Partition {
                dev: read_trimmed(&pdir.join("dev")).unwrap_or_default(),
                size_bytes: sectors_to_bytes(read_trimmed(&pdir.join("size"))),
                holders: list_dir(&pdir.join("holders")),
                name: entry,
            }
        })
        .collect();
    let model = ["vendor", "model", "name"]
        .iter()
        .filter_map(|f| read_trimmed(&dir.join("device").join(f)))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Disk {
        name: name.to_string(),
        dev,
        size_bytes: sectors_to_bytes(read_trimmed(&dir.join("size"))),
        removable: read_trimmed(&dir.join("removable")).as_deref() == Some("1"),
        read_only: read_trimmed(&dir.join("ro")).as_deref() == Some("1"),
        mmc_type: read_trimmed(&dir.join("device").join("type"))
            .filter(|_| name.starts_with("mmcblk")),
        model: if model.is_empty() {
            "unknown model".into()
        } else {
            model
        },
        holders: list_dir(&dir.join("holders")),
        partitions,
    })
}

/// A block device by `major:minor`: `(disk, Some(partition))` for a partition, `(disk, None)` for
/// a whole disk (including dm and loop devices).
pub fn find_by_dev(root: &SystemRoot, dev: &str) -> Option<(String, Option<String>)> {
    let block = root.block();
    for disk in list_dir(&block) {
        let dir = block.join(&disk);
        if read_trimmed(&dir.join("dev")).as_deref() == Some(dev) {
            return Some((disk, None));
        }
        for part in list_dir(&dir) {
            let pdir = dir.join(&part);
            if pdir.join("partition").is_file()
                && read_trimmed(&pdir.join("dev")).as_deref() == Some(dev)
            {
                return Some((disk, Some(part)));
            }
        }
    }
    None
}

/// A block device by kernel name (`sdb1`, `dm-0`, `mmcblk0`), like [`find_by_dev`].
pub fn find_by_name(root: &SystemRoot, name: &str) -> Option<(String, Option<String>)> {
    let block = root.block();
    if block.join(name).join("dev").is_file() {
        return Some((name.to_string(), None));
    }
    list_dir(&block)
        .into_iter()
        .find(|disk| block.join(disk).join(name).join("partition").is_file())
        .map(|disk| (disk, Some(name.to_string())))
}

/// The physical disks under a whole-disk block device: itself, or for device-mapper and md
/// devices the disks their `slaves/` lead to.
pub fn disks_under(root: &SystemRoot, disk: &str) -> Vec<String> {
    let slaves = list_dir(&root.block().join(disk).join("slaves"));
    if slaves.is_empty() {
        return vec![disk.to_string()];
    }
    let mut disks: Vec<String> = slaves
        .iter()
        .filter_map(|s| find_by_name(root, s))
        .flat_map(|(d, _)| disks_under(root, &d))
        .collect();
    disks.sort();
    disks.dedup();
    disks
}

/// Parses `/proc/self/mountinfo` (fields: id parent major:minor root mount-point … - fstype source …).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                dev: fields.get(2)?.to_string(),
                mount_point: unescape_octal(fields.get(4)?),
                source: unescape_octal(fields.get(dash + 2)?),
            })
        })
        .collect()
}

/// mountinfo and swaps escape space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Device paths in use as swap, from `/proc/swaps`.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape_octal)
        .collect()
}

/// The kernel name a `/dev/...` path stands for: the canonical path's file name when it exists
/// (so `/dev/mapper/x` becomes `dm-0`), else the path's own file name.
pub fn kernel_name(path: &str) -> Option<String> {
    if !path.starts_with("/dev/") {
        return None; // proc, tmpfs, overlay…: not a block device
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The physical disks holding the running system's root filesystem (empty when it is not on a
/// block device, e.g. an overlay in a container).
pub fn root_disks(root: &SystemRoot, mounts: &[Mount]) -> Vec<String> {
    let Some(rootfs) = mounts.iter().rev().find(|m| m.mount_point == "/") else {
        return Vec::new();
    };
    let found = find_by_dev(root, &rootfs.dev)
        .or_else(|| kernel_name(&rootfs.source).and_then(|n| find_by_name(root, &n)));
    match found {
        Some((disk, _)) => disks_under(root, &disk),
        None => Vec::new(),
    }
}

/// A file below the machine's `/proc`, read to see `what`.
fn read_proc(root: &SystemRoot, name: &str, what: &str) -> Result<String> {
    let path = root.proc.join(name);
    std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {} to see {what}", path.display()))
}

/// Everything about the machine the refusal rules look at.
#[derive(Debug, Clone)]
pub struct SystemState {
    pub mounts: Vec<Mount>,
    pub swaps: Vec<String>,
    pub root_disks: Vec<String>,
}

impl SystemState {
    pub fn read(root: &SystemRoot) -> Result<Self> {
        let mountinfo = read_proc(root, "self/mountinfo", "what is mounted")?;
        let swaps = read_proc(root, "swaps", "what is used as swap")?;
        let mounts = parse_mountinfo(&mountinfo);
        let root_disks = root_disks(root, &mounts);
        Ok(SystemState {
            mounts,
            swaps: parse_swaps(&swaps),
            root_disks,
        })
    }
}

/// A fixture tree under xtask/tests/fixtures/sysfs/, for the tests of the rules.
#[cfg(test)]
pub(crate) fn fixture(tree: &str) -> SystemRoot {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(tree);
    SystemRoot {
        sys: base.join("sys"),
        proc: base.join("proc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_found_by_number_and_name() {
        let root = fixture("desktop");
        assert_eq!(
            find_by_dev(&root, "8:17"),
            Some(("sdb".into(), Some("sdb1".into())))
        );
        assert_eq!(find_by_dev(&root, "179:0"), Some(("mmcblk0".into(), None)));
        assert_eq!(
            find_by_name(&root, "sdc1"),
            Some(("sdc".into(), Some("sdc1".into())))
        );
        assert_eq!(find_by_dev(&root, "9:9"), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let mounts = parse_mountinfo("36 35 8:17 / /media/my\\040card rw - vfat /dev/sdb1 rw\n");
        assert_eq!(mounts[0].mount_point, "/media/my card");
        assert_eq!(mounts[0].dev, "8:17");
    }
}
