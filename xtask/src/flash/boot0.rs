//! Planning the eMMC boot0 write before anything is written: which bootloader (the artifact
//! beside the image, one given, or the SD image's chain shifted down a sector), and where it goes
//! (the target eMMC's boot0 hardware partition, or a stand-in the caller names).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use indicatif::HumanBytes;

use super::device::{Disk, SystemRoot};
use super::emmc;
use super::source::Compression;

/// A boot0 partition and the sysfs `force_ro` switch that guards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot0Location {
    pub device: PathBuf,
    pub force_ro: PathBuf,
}

/// A planned boot0 write.
pub struct Boot0Write {
    pub at: Boot0Location,
    pub data: Vec<u8>,
    /// A real block device (opened exclusively), not a stand-in file.
    pub block_device: bool,
}

impl Boot0Write {
    /// Writes, reads back and compares, with `force_ro` lifted only meanwhile.
    pub fn run(&self) -> Result<()> {
        emmc::write_boot0(
            &self.at.device,
            &self.at.force_ro,
            &self.data,
            self.block_device,
        )
    }
}

/// The bootloader for boot0: `given`, else `emmc-boot0.img` beside the image, else derived from
/// the SD image's chain.
fn bootloader(image: &Path, given: Option<&Path>, compression: Compression) -> Result<Vec<u8>> {
    let beside = image.with_file_name("emmc-boot0.img");
    let artifact = given
        .map(Path::to_path_buf)
        .or_else(|| beside.is_file().then_some(beside));
    let Some(path) = artifact else {
        let data = emmc::boot0_from_sd_head(&emmc::read_sd_head(image, compression)?)
            .with_context(|| format!("no emmc-boot0.img beside {}, and", image.display()))?;
        eprintln!(
            "eMMC boot0: derived from the SD image's sectors 1..2015, shifted down one sector"
        );
        return Ok(data);
    };
    let data = std::fs::read(&path)
        .with_context(|| format!("could not read eMMC bootloader {}", path.display()))?;
    ensure!(
        !data.is_empty(),
        "eMMC bootloader {} is empty",
        path.display()
    );
    eprintln!(
        "eMMC boot0: {} ({})",
        path.display(),
        HumanBytes(data.len() as u64)
    );
    Ok(data)
}

/// The boot0 hardware partition of eMMC `disk`, checked to exist and to hold `len` bytes.
fn boot0_of_disk(disk: &Disk, len: usize) -> Result<Boot0Location> {
    let sys = SystemRoot::live().sys;
    let (dev, sysdir) = emmc::boot0_of(&disk.name, &sys);
    ensure!(
        sysdir.is_dir(),
        "{} has no boot0 hardware partition ({} does not exist): --emmc needs the eMMC module in a \
         native SD/MMC slot (USB card readers do not expose boot partitions)",
        disk.name,
        sysdir.display()
    );
    let size = std::fs::read_to_string(sysdir.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    ensure!(
        size >= len as u64,
        "{} holds {size} bytes, less than the {len}-byte bootloader",
        dev.display(),
    );
    Ok(Boot0Location {
        device: dev,
        force_ro: sysdir.join("force_ro"),
    })
}

/// Where boot0 is to be written.
pub enum Boot0Place<'a> {
    /// The boot0 partition of the target eMMC.
    OfDisk(&'a Disk),
    /// A stand-in the caller names (a regular file and its `force_ro` file).
    At(&'a Boot0Location),
}

/// Everything the boot0 write needs, checked before a byte of the image is written.
pub fn plan(
    image: &Path,
    given: Option<&Path>,
    compression: Compression,
    place: Boot0Place,
) -> Result<Boot0Write> {
    let data = bootloader(image, given, compression)?;
    let (at, block_device) = match place {
        Boot0Place::OfDisk(disk) => (boot0_of_disk(disk, data.len())?, true),
        Boot0Place::At(at) => (at.clone(), false),
    };
    Ok(Boot0Write {
        at,
        data,
        block_device,
    })
}
