//! Which disk is the target, and may we overwrite it? Read from a sysfs tree and the text of
//! `/proc/self/mountinfo` and `/proc/swaps`, all injectable so the rules are tested on fixture trees
//! (xtask/tests/fixtures/sysfs/) as well as on the running machine.

use std::fmt;
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
fn kernel_name(path: &str) -> Option<String> {
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

/// Everything about the machine the refusal rules look at.
#[derive(Debug, Clone)]
pub struct SystemState {
    pub mounts: Vec<Mount>,
    pub swaps: Vec<String>,
    pub root_disks: Vec<String>,
}

impl SystemState {
    pub fn read(root: &SystemRoot) -> Result<Self> {
        let mountinfo_path = root.proc.join("self/mountinfo");
        let mountinfo = std::fs::read_to_string(&mountinfo_path).with_context(|| {
            format!(
                "could not read {} to see what is mounted",
                mountinfo_path.display()
            )
        })?;
        let swaps_path = root.proc.join("swaps");
        let swaps = std::fs::read_to_string(&swaps_path).with_context(|| {
            format!(
                "could not read {} to see what is used as swap",
                swaps_path.display()
            )
        })?;
        let mounts = parse_mountinfo(&mountinfo);
        let root_disks = root_disks(root, &mounts);
        Ok(SystemState {
            mounts,
            swaps: parse_swaps(&swaps),
            root_disks,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Mounted { name: String, at: String },
    Swap { name: String },
    Held { name: String, holders: Vec<String> },
    RootDisk,
    NotRemovable,
    ReadOnly,
    TooSmall { device: u64, image: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Mounted { name, at } => write!(f, "{name} is mounted at {at} (unmount it first)"),
            Refusal::Swap { name } => write!(f, "{name} is in use as swap (swapoff it first)"),
            Refusal::Held { name, holders } => write!(
                f,
                "{name} is held by {} (a device-mapper, LUKS, LVM or RAID mapping; close it first)",
                holders.join(", ")
            ),
            Refusal::RootDisk => write!(f, "it holds the running system's root filesystem"),
            Refusal::NotRemovable => write!(
                f,
                "it is not removable media (an internal disk?); pass --allow-non-removable if you are sure"
            ),
            Refusal::ReadOnly => write!(f, "it is read-only (is the SD card's lock switch on?)"),
            Refusal::TooSmall { device, image } => write!(
                f,
                "it holds {device} bytes ({}), smaller than the image's {image} bytes ({})",
                crate::bmap::human_size(*device),
                crate::bmap::human_size(*image)
            ),
        }
    }
}

fn mounted_at(state: &SystemState, name: &str, dev: &str) -> Option<String> {
    state
        .mounts
        .iter()
        .find(|m| m.dev == dev || kernel_name(&m.source).as_deref() == Some(name))
        .map(|m| m.mount_point.clone())
}

/// Every reason not to overwrite `disk` with an image of `image_size` bytes (empty: go ahead).
pub fn refusals(
    disk: &Disk,
    state: &SystemState,
    image_size: u64,
    allow_non_removable: bool,
) -> Vec<Refusal> {
    let mut found = Vec::new();
    let whole = std::iter::once((disk.name.as_str(), disk.dev.as_str(), &disk.holders));
    let parts = disk
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.dev.as_str(), &p.holders));
    for (name, dev, holders) in whole.chain(parts) {
        if let Some(at) = mounted_at(state, name, dev) {
            found.push(Refusal::Mounted {
                name: name.to_string(),
                at,
            });
        }
        if state
            .swaps
            .iter()
            .any(|s| kernel_name(s).as_deref() == Some(name))
        {
            found.push(Refusal::Swap {
                name: name.to_string(),
            });
        }
        if !holders.is_empty() {
            found.push(Refusal::Held {
                name: name.to_string(),
                holders: holders.clone(),
            });
        }
    }
    if state.root_disks.contains(&disk.name) {
        found.push(Refusal::RootDisk);
    }
    if !disk.is_removable() && !allow_non_removable {
        found.push(Refusal::NotRemovable);
    }
    if disk.read_only {
        found.push(Refusal::ReadOnly);
    }
    if disk.size_bytes < image_size {
        found.push(Refusal::TooSmall {
            device: disk.size_bytes,
            image: image_size,
        });
    }
    found
}

/// What the user is about to overwrite, for the confirmation prompt.
pub fn describe(disk: &Disk, path: &Path, state: &SystemState) -> String {
    let mut text = format!(
        "  device     {}\n  model      {}\n  size       {} ({} bytes)\n  removable  {}\n",
        path.display(),
        disk.model,
        crate::bmap::human_size(disk.size_bytes),
        disk.size_bytes,
        if disk.is_removable() { "yes" } else { "NO" }
    );
    if disk.partitions.is_empty() {
        text.push_str("  partitions none\n");
    }
    for (i, part) in disk.partitions.iter().enumerate() {
        let mounted = mounted_at(state, &part.name, &part.dev)
            .map(|at| format!(", mounted at {at}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "  {}{} ({}{mounted})\n",
            if i == 0 { "partitions " } else { "           " },
            part.name,
            crate::bmap::human_size(part.size_bytes)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(tree: &str) -> SystemRoot {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(tree);
        SystemRoot {
            sys: base.join("sys"),
            proc: base.join("proc"),
        }
    }

    fn refusals_for(tree: &str, disk: &str, image_size: u64) -> Vec<Refusal> {
        let root = fixture(tree);
        let state = SystemState::read(&root).unwrap();
        refusals(&read_disk(&root, disk).unwrap(), &state, image_size, false)
    }

    const IMAGE: u64 = 1 << 30;

    #[test]
    fn clean_sd_card_in_a_native_slot_is_accepted() {
        let root = fixture("desktop");
        let disk = read_disk(&root, "mmcblk0").unwrap();
        assert_eq!(disk.mmc_type.as_deref(), Some("SD"));
        assert!(disk.is_removable() && !disk.removable);
        assert_eq!(disk.partitions.len(), 2);
        assert_eq!(refusals_for("desktop", "mmcblk0", IMAGE), vec![]);
    }

    #[test]
    fn usb_reader_with_a_mounted_partition_is_refused() {
        assert_eq!(
            refusals_for("desktop", "sdb", IMAGE),
            vec![Refusal::Mounted {
                name: "sdb1".into(),
                at: "/media/user/BOOT".into()
            }]
        );
    }

    #[test]
    fn mount_matched_by_source_name_when_device_number_is_anonymous() {
        // btrfs reports an anonymous 0:NN device number; the source still names the partition.
        let state = SystemState {
            mounts: parse_mountinfo("40 1 0:52 / /mnt rw - btrfs /dev/mmcblk0p2 rw\n"),
            swaps: vec![],
            root_disks: vec![],
        };
        let disk = read_disk(&fixture("desktop"), "mmcblk0").unwrap();
        assert_eq!(
            refusals(&disk, &state, IMAGE, false),
            vec![Refusal::Mounted {
                name: "mmcblk0p2".into(),
                at: "/mnt".into()
            }]
        );
    }

    #[test]
    fn partition_used_as_swap_is_refused() {
        assert_eq!(
            refusals_for("desktop", "sdd", IMAGE),
            vec![Refusal::Swap {
                name: "sdd2".into()
            }]
        );
    }

    #[test]
    fn partition_held_by_luks_mapping_is_refused() {
        assert_eq!(
            refusals_for("desktop", "sdc", IMAGE),
            vec![Refusal::Held {
                name: "sdc1".into(),
                holders: vec!["dm-0".into()]
            }]
        );
    }

    #[test]
    fn root_disk_is_refused() {
        let found = refusals_for("desktop", "sda", IMAGE);
        assert!(found.contains(&Refusal::RootDisk), "{found:?}");
        assert!(found.contains(&Refusal::NotRemovable), "{found:?}");
    }

    #[test]
    fn root_on_luks_finds_the_disk_beneath_the_mapping() {
        let root = fixture("laptop-luks-root");
        let state = SystemState::read(&root).unwrap();
        assert_eq!(state.root_disks, vec!["nvme0n1".to_string()]);
        let found = refusals(&read_disk(&root, "nvme0n1").unwrap(), &state, IMAGE, true);
        assert!(found.contains(&Refusal::RootDisk), "{found:?}");
        assert!(found.contains(&Refusal::Held {
            name: "nvme0n1p2".into(),
            holders: vec!["dm-0".into()]
        }));
    }

    #[test]
    fn emmc_is_not_removable_unless_allowed() {
        assert_eq!(
            refusals_for("desktop", "mmcblk1", IMAGE),
            vec![Refusal::NotRemovable]
        );
        let root = fixture("desktop");
        let state = SystemState::read(&root).unwrap();
        assert_eq!(
            refusals(&read_disk(&root, "mmcblk1").unwrap(), &state, IMAGE, true),
            vec![]
        );
    }

    #[test]
    fn too_small_and_read_only_are_refused() {
        assert_eq!(
            refusals_for("desktop", "sde", IMAGE),
            vec![
                Refusal::ReadOnly,
                Refusal::TooSmall {
                    device: 64 << 20,
                    image: IMAGE
                }
            ]
        );
    }

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
    fn description_lists_partitions_and_mounts() {
        let root = fixture("desktop");
        let state = SystemState::read(&root).unwrap();
        let text = describe(
            &read_disk(&root, "sdb").unwrap(),
            Path::new("/dev/sdb"),
            &state,
        );
        assert!(text.contains("Generic STORAGE DEVICE"), "{text}");
        assert!(
            text.contains("sdb1 (256.0 MiB, mounted at /media/user/BOOT)"),
            "{text}"
        );
        assert!(text.contains("removable  yes"), "{text}");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let mounts = parse_mountinfo("36 35 8:17 / /media/my\\040card rw - vfat /dev/sdb1 rw\n");
        assert_eq!(mounts[0].mount_point, "/media/my card");
        assert_eq!(mounts[0].dev, "8:17");
    }

    /// The real machine: whatever disk holds `/` must be refused for that reason.
    #[test]
    fn this_machines_root_disk_is_refused() {
        let root = SystemRoot::live();
        let state = SystemState::read(&root).unwrap();
        let Some(disk) = state.root_disks.first() else {
            crate::util::skip(
                "this_machines_root_disk_is_refused",
                "/ is not on a block device here",
            );
            return;
        };
        let found = refusals(&read_disk(&root, disk).unwrap(), &state, 0, true);
        assert!(found.contains(&Refusal::RootDisk), "{disk}: {found:?}");
    }
}
