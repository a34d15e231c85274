//! The board's genimage configuration checked against [`crate::project`]: the boot-chain offsets
//! and slot sizes live in `project.rs` alone, and `board/<board>/genimage.cfg` (which Buildroot's
//! genimage reads as it is) must say the same, or `cargo xtask image` refuses to build.
//!
//! The file stays hand-written rather than generated: Buildroot runs it directly, people read it
//! as the layout, and genimage itself enforces each slot (an image bigger than its partition's
//! `size` is an error), so a check that the numbers agree is all the one home needs.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::project::{
    BOOT_CHAIN, DISK_SIGNATURE, FIRST_PARTITION_OFFSET, PARTITIONS, SDCARD_IMAGE_BYTES,
};
use crate::release::{EMMC_BOOT0_IMAGE, SDCARD_IMAGE, SYSTEM_IMAGE};

/// A section of genimage.cfg (`image sdcard.img { ... }`, `hdimage { ... }`, `partition boot
/// { ... }`), read just far enough for the checks here: its `key = value` settings as written
/// and the sections inside it, in file order. Comments and lists (`files = { ... }`) are skipped.
#[derive(Debug, Default)]
pub struct Section {
    pub kind: String,
    pub name: String,
    pub settings: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

impl Section {
    /// The value of a setting, quotes removed.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first section inside this one of that kind and name (`""` for an unnamed one).
    pub fn section(&self, kind: &str, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.kind == kind && s.name == name)
    }

    /// The `partition` sections, in file order.
    pub fn partitions(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.kind == "partition")
    }
}

/// The whole file as one unnamed section holding the top-level ones.
pub fn parse(text: &str) -> Result<Section> {
    // The open sections, outermost (the file) first.
    let mut open = vec![Section::default()];
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            let mut words = head.split_whitespace();
            open.push(Section {
                kind: words.next().unwrap_or("").into(),
                name: words.next().unwrap_or("").into(),
                ..Section::default()
            });
            continue;
        }
        if line == "}" {
            ensure!(
                open.len() > 1,
                "genimage.cfg line {}: `}}` closes nothing",
                index + 1
            );
            let done = open.pop().expect("more than the file is open");
            open.last_mut()
                .expect("the file stays open")
                .sections
                .push(done);
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"');
            let section = open.last_mut().expect("the file stays open");
            section.settings.push((key.trim().into(), value.into()));
        }
    }
    ensure!(open.len() == 1, "genimage.cfg ends inside a section");
    Ok(open.pop().expect("the file"))
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

/// Every boot-chain partition of both images and every partition of the card's table where
/// [`crate::project`] puts them; the first disagreement is named.
pub fn check(text: &str) -> Result<()> {
    let file = parse(text)?;
    let image = |name: &str| {
        file.section("image", name)
            .with_context(|| format!("genimage.cfg has no image {name}"))
    };
    let partition = |image_name: &str, part: &str| -> Result<&Section> {
        image(image_name)?
            .section("partition", part)
            .with_context(|| format!("genimage.cfg gives {image_name} no partition {part}"))
    };
    for blob in BOOT_CHAIN {
        let part = genimage_partition(blob.name);
        for (image, offset) in [
            (SDCARD_IMAGE, blob.sd_offset()),
            (EMMC_BOOT0_IMAGE, blob.emmc_boot0_offset()),
        ] {
            let section = partition(image, &part)?;
            let file = section.get("image");
            ensure!(
                file == Some(blob.file),
                "genimage.cfg puts {file:?} in {image}'s {part} partition; project.rs says {}",
                blob.file
            );
            for (key, want) in [("offset", offset), ("size", blob.slot_bytes)] {
                let got = setting_bytes(section, &format!("{image}'s {part} partition"), key)?;
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
    check_partition_table(image(SDCARD_IMAGE)?, image(BOOT_IMAGE)?)
}

/// genimage's name for the boot partition's FAT image.
const BOOT_IMAGE: &str = "boot.vfat";

/// What each partition of [`PARTITIONS`] holds on a new card, by its genimage name: the boot
/// FAT, slot A's system image, nothing in slot B (a hole), the data partition's marker.
fn partition_image(name: &str) -> Option<&'static str> {
    match name {
        "boot" => Some(BOOT_IMAGE),
        "system-a" => Some(SYSTEM_IMAGE),
        "data" => Some("data-blank.img"),
        _ => None,
    }
}

/// The card's MBR: its signature, its size and each partition in the table, in order, as
/// [`PARTITIONS`] says.
fn check_partition_table(card: &Section, boot_vfat: &Section) -> Result<()> {
    let hdimage = card
        .section("hdimage", "")
        .context("genimage.cfg gives sdcard.img no hdimage section")?;
    ensure!(
        hdimage.get("partition-table-type") == Some("mbr"),
        "genimage.cfg gives {SDCARD_IMAGE} a {:?} partition table; the Exynos BL1 at sector 1 \
         leaves room only for an MBR",
        hdimage.get("partition-table-type")
    );
    let signature = hdimage.get("disk-signature").unwrap_or("none");
    ensure!(
        bytes(signature).ok() == Some(DISK_SIGNATURE.into()),
        "genimage.cfg gives {SDCARD_IMAGE} the disk signature {signature}; project.rs \
         (DISK_SIGNATURE) says {DISK_SIGNATURE:#010x}"
    );
    let size = card.get("size").map(bytes).transpose()?;
    ensure!(
        size == Some(SDCARD_IMAGE_BYTES),
        "genimage.cfg makes {SDCARD_IMAGE} {size:?} bytes; project.rs (SDCARD_IMAGE_BYTES) says \
         {SDCARD_IMAGE_BYTES}"
    );
    let vfat = boot_vfat.get("size").map(bytes).transpose()?;
    ensure!(
        vfat == Some(PARTITIONS[0].bytes),
        "genimage.cfg makes {BOOT_IMAGE} {vfat:?} bytes; project.rs (BOOT_PARTITION_BYTES) \
         says {}",
        PARTITIONS[0].bytes
    );
    let in_table: Vec<&Section> = card
        .partitions()
        .filter(|p| p.get("in-partition-table") != Some("false"))
        .collect();
    let names: Vec<&str> = in_table.iter().map(|p| p.name.as_str()).collect();
    let want: Vec<&str> = PARTITIONS.iter().map(|p| p.name).collect();
    ensure!(
        names == want,
        "genimage.cfg puts the partitions {names:?} in {SDCARD_IMAGE}'s table; project.rs \
         (PARTITIONS) says {want:?}"
    );
    for (section, part) in in_table.iter().zip(PARTITIONS) {
        let what = format!("{SDCARD_IMAGE}'s partition {} ({})", part.number, part.name);
        let kind = section.get("partition-type").map(bytes).transpose()?;
        ensure!(
            kind == Some(part.mbr_type.into()),
            "genimage.cfg gives {what} the type {kind:?}; project.rs says {:#04x}",
            part.mbr_type
        );
        let (got, want) = (section.get("image"), partition_image(part.name));
        ensure!(
            got == want,
            "genimage.cfg puts {} in {what}; it must hold {}",
            got.unwrap_or("no image"),
            want.unwrap_or("no image (an empty slot)")
        );
        let grows = section.get("autoresize") == Some("true");
        let last = part.number as usize == PARTITIONS.len();
        ensure!(
            grows == last,
            "genimage.cfg {} {what}: only the last partition grows to fill the card",
            if grows { "grows" } else { "does not grow" }
        );
        if !grows {
            let got = setting_bytes(section, &what, "size")?;
            ensure!(
                got == part.bytes,
                "genimage.cfg gives {what} size {got}; project.rs says {}",
                part.bytes
            );
        }
    }
    let boot = setting_bytes(in_table[0], "the boot partition", "offset")?;
    ensure!(
        boot == FIRST_PARTITION_OFFSET,
        "genimage.cfg starts {SDCARD_IMAGE}'s boot partition at {boot}; project.rs \
         (FIRST_PARTITION_OFFSET) says {FIRST_PARTITION_OFFSET}"
    );
    ensure!(
        in_table[0].get("bootable") == Some("true"),
        "genimage.cfg does not mark the boot partition bootable"
    );
    Ok(())
}

/// A size setting of a section, named in the error as `what`.
fn setting_bytes(section: &Section, what: &str, key: &str) -> Result<u64> {
    let value = section
        .get(key)
        .with_context(|| format!("genimage.cfg gives {what} no {key}"))?;
    bytes(value).with_context(|| format!("{what}, {key}"))
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
        let file = parse(SMALL).unwrap();
        let image = file.section("image", "x.img").unwrap();
        assert_eq!(
            image.section("hdimage", "").unwrap().get("align"),
            Some("1M")
        );
        let uboot = image.partitions().next().unwrap();
        assert_eq!(uboot.name, "u-boot");
        assert_eq!(uboot.get("image"), Some("u-boot-dtb.bin"));
        assert_eq!(bytes(uboot.get("size").unwrap()).unwrap(), 737_280);
        assert_eq!(bytes("4M").unwrap(), 4 << 20);
        assert_eq!(bytes("0x310000").unwrap(), 0x31_0000);
        assert!(bytes("big").is_err());
        assert!(parse("image x {\n").is_err());
        assert!(parse("}\n").is_err());
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

    /// The board's genimage.cfg, and `real` with `from` replaced once by `to`.
    fn changed(from: &str, to: &str) -> String {
        let real = std::fs::read_to_string(
            crate::project::default_board()
                .dir(&crate::project::Repo::checkout())
                .join("genimage.cfg"),
        )
        .unwrap();
        let changed = real.replacen(from, to, 1);
        assert!(changed != real, "{from:?} is not in genimage.cfg");
        changed
    }

    #[test]
    fn a_partition_table_other_than_project_rs_is_named() {
        let err = |from: &str, to: &str| format!("{:#}", check(&changed(from, to)).unwrap_err());
        let e = err(
            "size = 768M\n\t}\n\n\t# System slot B",
            "size = 512M\n\t}\n\n\t# System slot B",
        );
        assert!(e.contains("partition 2 (system-a) size 536870912"), "{e}");
        let e = err("disk-signature = 0xbe27d0c4", "disk-signature = 0xbe27d0c5");
        assert!(
            e.contains("disk signature 0xbe27d0c5") && e.contains("0xbe27d0c4"),
            "{e}"
        );
        let e = err("partition system-b {", "partition spare {");
        assert!(
            e.contains("[\"boot\", \"system-a\", \"spare\", \"data\"]"),
            "{e}"
        );
        let e = err("image = \"system.img\"", "image = \"rootfs.ext4\"");
        assert!(e.contains("rootfs.ext4 in sdcard.img's partition 2"), "{e}");
        let e = err("size = 1620M", "size = 600M");
        assert!(e.contains("SDCARD_IMAGE_BYTES"), "{e}");
        let e = err("size = 64M\n}", "size = 32M\n}");
        assert!(e.contains("boot.vfat"), "{e}");
        let e = err("autoresize = true", "size = 16M");
        assert!(e.contains("does not grow sdcard.img's partition 4"), "{e}");
        let e = err("table-type = \"mbr\"", "table-type = \"gpt\"");
        assert!(e.contains("only for an MBR"), "{e}");
        let e = err("partition-type = 0x0c", "partition-type = 0x83");
        assert!(e.contains("partition 1 (boot) the type"), "{e}");
    }
}
