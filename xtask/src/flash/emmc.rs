//! The eMMC `boot0` hardware partition: where the Exynos5422 boot ROM looks for the bootloader on
//! eMMC. It reads the same chain as on SD, one sector lower (SD sector 1 is boot0 sector 0).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::util::sha256_hex;

pub const SECTOR: u64 = crate::project::SECTOR;

/// The Hardkernel chain (`project::BOOT_CHAIN`): (blob, sector on SD, sector on eMMC boot0).
pub const CHAIN: [(&str, u64, u64); 4] = {
    use crate::project::{BOOT_CHAIN, EMMC_BOOT0_SHIFT_SECTORS};
    let mut chain = [("", 0, 0); 4];
    let mut i = 0;
    while i < chain.len() {
        let blob = BOOT_CHAIN[i];
        chain[i] = (
            blob.name,
            blob.sd_sector,
            blob.sd_sector - EMMC_BOOT0_SHIFT_SECTORS,
        );
        i += 1;
    }
    chain
};
/// TZSW is 256 KiB; the chain ends at SD sector 2015.
pub const TZSW_SECTORS: u64 = crate::project::BOOT_CHAIN[3].slot_bytes / SECTOR;

/// Bytes of the SD image holding the chain: sectors 1..2015.
pub fn sd_chain_span() -> (u64, u64) {
    (CHAIN[0].1 * SECTOR, (CHAIN[3].1 + TZSW_SECTORS) * SECTOR)
}

/// The boot0 contents derived from an SD image's first sectors: the chain shifted down one sector.
pub fn boot0_from_sd_head(head: &[u8]) -> Result<Vec<u8>> {
    let (start, end) = sd_chain_span();
    ensure!(
        head.len() as u64 >= end,
        "the SD image is {} bytes, too short to hold the bootloader chain (sectors 1..{})",
        head.len(),
        end / SECTOR
    );
    let chain = &head[start as usize..end as usize];
    ensure!(
        chain[..512].iter().any(|&b| b != 0),
        "the SD image has nothing at sector 1 (BL1), so it holds no bootloader to copy to eMMC boot0"
    );
    Ok(chain.to_vec())
}

/// The first bytes of an image (decompressed if need be), for deriving boot0.
pub fn read_sd_head(image: &Path, compression: super::source::Compression) -> Result<Vec<u8>> {
    let mut source = super::source::Source::open(image, compression)?;
    let mut head = vec![0u8; sd_chain_span().1 as usize];
    source.read_exact(&mut head)?;
    Ok(head)
}

/// `/dev/mmcblkNboot0` and its sysfs folder for an eMMC disk `mmcblkN`.
pub fn boot0_of(disk: &str, sys: &Path) -> (PathBuf, PathBuf) {
    let name = format!("{disk}boot0");
    (
        PathBuf::from("/dev").join(&name),
        sys.join("block").join(name),
    )
}

/// Holds boot0 writable and puts `force_ro` back as it was, also on error or panic.
struct ForceRoUnlock {
    path: PathBuf,
    original: String,
    restored: bool,
}

impl ForceRoUnlock {
    fn new(path: &Path) -> Result<Self> {
        let original = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?
            .trim()
            .to_string();
        std::fs::write(path, "0").with_context(|| {
            format!(
                "could not unlock eMMC boot0 by writing 0 to {}",
                path.display()
            )
        })?;
        Ok(ForceRoUnlock {
            path: path.to_path_buf(),
            original,
            restored: false,
        })
    }

    fn restore(&mut self) -> Result<()> {
        self.restored = true;
        std::fs::write(&self.path, &self.original).with_context(|| {
            format!(
                "could not restore {} to {}",
                self.path.display(),
                self.original
            )
        })
    }
}

impl Drop for ForceRoUnlock {
    fn drop(&mut self) {
        if !self.restored {
            if let Err(e) = self.restore() {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// Writes `data` at the start of boot0 with `force_ro` lifted, flushes, reads it back past the
/// page cache and compares, then locks boot0 again.
pub fn write_boot0(device: &Path, force_ro: &Path, data: &[u8], block_device: bool) -> Result<()> {
    let mut unlock = ForceRoUnlock::new(force_ro)?;
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if block_device {
            options.custom_flags(rustix::fs::OFlags::EXCL.bits() as i32);
        }
        let file = options
            .open(device)
            .with_context(|| format!("could not open {} for writing", device.display()))?;
        file.write_all_at(data, 0)
            .with_context(|| format!("could not write the bootloader to {}", device.display()))?;
        file.sync_data()
            .with_context(|| format!("could not flush {}", device.display()))?;
    }
    let mut back = vec![0u8; data.len()];
    let mut file = File::open(device)
        .with_context(|| format!("could not open {} to verify it", device.display()))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .with_context(|| format!("could not drop cached pages of {}", device.display()))?;
    file.read_exact(&mut back)
        .with_context(|| format!("could not read {} back", device.display()))?;
    ensure!(
        sha256_hex(&back) == sha256_hex(data),
        "verification failed: the bootloader read back from {} differs from what was written",
        device.display()
    );
    unlock.restore()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot0_offsets_are_one_sector_below_sd() {
        for (blob, sd, boot0) in CHAIN {
            assert_eq!(sd - 1, boot0, "{blob}");
        }
        assert_eq!(sd_chain_span(), (512, 2015 * 512));
    }

    #[test]
    fn boot0_is_the_sd_chain_shifted_down_one_sector() {
        let mut sd = vec![0u8; 1 << 20];
        sd[512] = 0xb1; // BL1 at SD sector 1
        sd[31 * 512] = 0xb2;
        sd[63 * 512] = 0xb0;
        sd[1503 * 512] = 0x72;
        sd[2015 * 512] = 0xee; // past the chain: not copied
        let boot0 = boot0_from_sd_head(&sd).unwrap();
        assert_eq!(boot0.len(), 2014 * 512);
        assert_eq!(
            (
                boot0[0],
                boot0[30 * 512],
                boot0[62 * 512],
                boot0[1502 * 512]
            ),
            (0xb1, 0xb2, 0xb0, 0x72)
        );
        assert!(!boot0.contains(&0xee));
    }

    #[test]
    fn image_without_bl1_is_rejected() {
        assert!(boot0_from_sd_head(&vec![0u8; 1 << 20])
            .unwrap_err()
            .to_string()
            .contains("BL1"));
        assert!(boot0_from_sd_head(&[1u8; 4096])
            .unwrap_err()
            .to_string()
            .contains("too short"));
    }

    #[test]
    fn force_ro_is_restored_after_success_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let force_ro = dir.path().join("force_ro");
        let boot0 = dir.path().join("boot0");
        std::fs::write(&force_ro, "1\n").unwrap();
        std::fs::write(&boot0, vec![0u8; 4 << 20]).unwrap();
        write_boot0(&boot0, &force_ro, b"bootloader", false).unwrap();
        assert_eq!(std::fs::read_to_string(&force_ro).unwrap(), "1");
        assert_eq!(&std::fs::read(&boot0).unwrap()[..10], b"bootloader");

        let missing = dir.path().join("no-such-dir/boot0");
        assert!(write_boot0(&missing, &force_ro, b"x", false).is_err());
        assert_eq!(std::fs::read_to_string(&force_ro).unwrap(), "1");
    }
}
