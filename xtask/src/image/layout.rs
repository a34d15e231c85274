//! The board's genimage configuration checked against [`crate::project`]: the boot-chain offsets
//! and slot sizes live in `project.rs` alone, and `board/<board>/genimage.cfg` (which Buildroot's
//! genimage reads as it is) must say the same, or `cargo xtask image` refuses to build.
//!
//! The file stays hand-written rather than generated: Buildroot runs it directly, people read it
//! as the layout, and genimage itself enforces each slot (an image bigger than its partition's
//! `size` is an error), so a check that the numbers agree is all the one home needs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::project::{BOOT_CHAIN, FIRST_PARTITION_OFFSET};
use crate::release::{EMMC_BOOT0_IMAGE, SDCARD_IMAGE};

/// A partition of a genimage `image` section: its settings, as written.
type Settings = BTreeMap<String, String>;

/// `image name { ... partition p { key = value } }`, read just far enough for the checks here:
/// image name → partition name → settings. Comments and other sections are skipped.
pub fn partitions(text: &str) -> Result<BTreeMap<String, BTreeMap<String, Settings>>> {
    let mut images: BTreeMap<String, BTreeMap<String, Settings>> = BTreeMap::new();
    // The open sections, outermost first: ("image", name), ("partition", name) or ("", "").
    let mut open: Vec<(String, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            let mut words = head.split_whitespace();
            let kind = words.next().unwrap_or("").to_string();
            let name = words.next().unwrap_or("").to_string();
            open.push((kind, name));
            continue;
        }
        if line == "}" {
            open.pop()
                .with_context(|| format!("genimage.cfg line {}: `}}` closes nothing", index + 1))?;
            continue;
        }
        if let ([(image_kind, image), (part_kind, part)], Some((key, value))) =
            (open.as_slice(), line.split_once('='))
        {
            if image_kind == "image" && part_kind == "partition" {
                images
                    .entry(image.clone())
                    .or_default()
                    .entry(part.clone())
                    .or_default()
                    .insert(key.trim().into(), value.trim().trim_matches('"').into());
            }
        }
    }
    ensure!(open.is_empty(), "genimage.cfg ends inside a section");
    Ok(images)
}

/// A genimage size: decimal or `0x` hex bytes, optionally with a `k`, `M` or `G` suffix.
fn bytes(value: &str) -> Result<u64> {
    let (digits, unit) = match value.char_indices().last() {
        Some((at, 'k' | 'K')) => (&value[..at], 1 << 10),
        Some((at, 'M')) => (&value[..at], 1 << 20),
        Some((at, 'G')) => (&value[..at], 1 << 30),
        _ => (value, 1),
    };
    let number = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    Ok(number.with_context(|| format!("{value:?} is not a size genimage reads"))? * unit)
}

/// Every boot-chain partition of both images, and the first real partition, where
/// [`crate::project`] puts them; the first disagreement is named.
pub fn check(text: &str) -> Result<()> {
    let images = partitions(text)?;
    let setting = |image: &str, part: &str, key: &str| -> Result<u64> {
        let value = images
            .get(image)
            .and_then(|parts| parts.get(part))
            .and_then(|settings| settings.get(key))
            .with_context(|| {
                format!("genimage.cfg gives {image} no partition {part} with a {key}")
            })?;
        bytes(value).with_context(|| format!("{image}, partition {part}, {key}"))
    };
    for blob in BOOT_CHAIN {
        let part = genimage_partition(blob.name);
        for (image, offset) in [
            (SDCARD_IMAGE, blob.sd_offset()),
            (EMMC_BOOT0_IMAGE, blob.emmc_boot0_offset()),
        ] {
            let file = images
                .get(image)
                .and_then(|parts| parts.get(&part))
                .and_then(|settings| settings.get("image"));
            ensure!(
                file.map(String::as_str) == Some(blob.file),
                "genimage.cfg puts {file:?} in {image}'s {part} partition; project.rs says {}",
                blob.file
            );
            for (key, want) in [("offset", offset), ("size", blob.slot_bytes)] {
                let got = setting(image, &part, key)?;
                if got != want {
                    bail!(
                        "genimage.cfg gives {image}'s {part} partition {key} {got}; project.rs \
                         (BOOT_CHAIN, {}) says {want}",
                        blob.name
                    );
                }
            }
        }
    }
    let boot = setting(SDCARD_IMAGE, "boot", "offset")?;
    ensure!(
        boot == FIRST_PARTITION_OFFSET,
        "genimage.cfg starts {SDCARD_IMAGE}'s boot partition at {boot}; project.rs \
         (FIRST_PARTITION_OFFSET) says {FIRST_PARTITION_OFFSET}"
    );
    Ok(())
}

/// The partition name genimage.cfg uses for a boot-chain stage (`U-Boot` → `u-boot`).
fn genimage_partition(stage: &str) -> String {
    stage.to_lowercase()
}

/// [`check`] of the board folder's genimage.cfg.
pub fn check_board(board_dir: &Path) -> Result<()> {
    let path = board_dir.join("genimage.cfg");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    check(&text).with_context(|| format!("{} disagrees with xtask/src/project.rs", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "image x.img {\n\thdimage {\n\t\talign = 1M # comment\n\t}\n\
        \tpartition u-boot {\n\t\tin-partition-table = false\n\t\timage = \"u-boot-dtb.bin\"\n\
        \t\toffset = 32256\n\t\tsize = 720k\n\t}\n}\n";

    #[test]
    fn reads_the_settings_of_each_partition() {
        let images = partitions(SMALL).unwrap();
        let uboot = &images["x.img"]["u-boot"];
        assert_eq!(uboot["image"], "u-boot-dtb.bin");
        assert_eq!(bytes(&uboot["size"]).unwrap(), 737_280);
        assert_eq!(bytes("4M").unwrap(), 4 << 20);
        assert_eq!(bytes("0x310000").unwrap(), 0x31_0000);
        assert!(bytes("big").is_err());
        assert!(partitions("image x {\n").is_err());
        assert!(partitions("}\n").is_err());
    }

    #[test]
    fn a_layout_that_moves_a_slot_is_named() {
        let real = std::fs::read_to_string(
            crate::project::default_board()
                .dir(&crate::project::Repo::checkout())
                .join("genimage.cfg"),
        )
        .unwrap();
        check(&real).unwrap();
        let moved = real.replacen("offset = 769536", "offset = 770048", 1);
        assert_ne!(moved, real);
        let err = format!("{:#}", check(&moved).unwrap_err());
        assert!(
            err.contains("sdcard.img's tzsw partition offset 770048")
                && err.contains("says 769536"),
            "{err}"
        );
        let shrunk = real.replace("size = 737280", "size = 720000");
        assert!(format!("{:#}", check(&shrunk).unwrap_err()).contains("u-boot partition size"));
        assert!(check(&real.replace("offset = 4M", "offset = 2M")).is_err());
    }
}
