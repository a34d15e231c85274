//! The refusal rules: every reason not to overwrite a disk (mounted, swap, held by a mapping,
//! the running system's disk, not removable, read-only, too small), and the description the user
//! confirms. Pure functions of what [`super::device`] read, tested on fixture trees.

use std::fmt;
use std::path::Path;

use indicatif::HumanBytes;

use super::device::{kernel_name, Disk, SystemState};

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
                HumanBytes(*device),
                HumanBytes(*image)
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
        HumanBytes(disk.size_bytes),
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
            HumanBytes(part.size_bytes)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::device::{fixture, parse_mountinfo, read_disk, SystemRoot};

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
    fn a_partition_in_use_is_refused() {
        let cases = [
            // A USB reader with a mounted partition.
            (
                "sdb",
                Refusal::Mounted {
                    name: "sdb1".into(),
                    at: "/media/user/BOOT".into(),
                },
            ),
            // A partition used as swap.
            (
                "sdd",
                Refusal::Swap {
                    name: "sdd2".into(),
                },
            ),
            // A partition held by a LUKS mapping.
            (
                "sdc",
                Refusal::Held {
                    name: "sdc1".into(),
                    holders: vec!["dm-0".into()],
                },
            ),
        ];
        for (disk, refusal) in cases {
            assert_eq!(refusals_for("desktop", disk, IMAGE), [refusal], "{disk}");
        }
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
            text.contains("sdb1 (256.00 MiB, mounted at /media/user/BOOT)"),
            "{text}"
        );
        assert!(text.contains("removable  yes"), "{text}");
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
