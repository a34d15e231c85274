//! The twin's disks: the card as a copy-on-write overlay over the release's (the release's file
//! is only ever read), or as a plain copy where a test needs the raw bytes; and the key medium
//! the data partition's default key policy reads (a FAT file system labelled BERTH-KEY holding
//! berth-data.key, as br2-external/package/berth-data-crypt/Config.in defaults them).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// The twin's card: a 4 GiB medium, as small cards go, so the first boot has a data partition
/// to grow into that holds the LUKS2 header, ext4 and a few containers.
pub const CARD_BYTES: u64 = 4 << 30;
pub const KEY_LABEL: &str = "BERTH-KEY";
pub const KEY_FILE: &str = "berth-data.key";
const KEY_MEDIUM_BYTES: u64 = 8 << 20;

/// A qcow2 overlay at `at` whose reads fall through to `card` (raw) and whose writes stay in
/// the overlay.
pub fn overlay(sh: &Shell, card: &Path, at: &Path) -> Result<()> {
    let card = card
        .canonicalize()
        .with_context(|| format!("could not resolve {}", card.display()))?;
    let size = CARD_BYTES.to_string();
    cmd!(
        sh,
        "qemu-img create -q -f qcow2 -F raw -b {card} {at} {size}"
    )
    .run()
    .with_context(|| format!("qemu-img could not make the overlay {}", at.display()))
}

/// A raw copy of `card` at `at`, holes kept, grown to [`CARD_BYTES`].
pub fn raw_copy(sh: &Shell, card: &Path, at: &Path) -> Result<()> {
    cmd!(sh, "cp --sparse=always {card} {at}")
        .run()
        .with_context(|| format!("could not copy {} to {}", card.display(), at.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(at)
        .and_then(|f| f.set_len(CARD_BYTES))
        .with_context(|| format!("could not grow {}", at.display()))
}

/// The key medium at `at`, holding a new random key.
pub fn key_medium(sh: &Shell, at: &Path) -> Result<()> {
    let key_dir = tempfile::tempdir().context("could not make a scratch folder for the key")?;
    let key = key_dir.path().join(KEY_FILE);
    let mut bytes = [0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("could not read /dev/urandom for the data partition's key")?;
    std::fs::File::create(&key)
        .and_then(|mut f| f.write_all(&bytes))
        .with_context(|| format!("could not write {}", key.display()))?;
    // mtools makes the FAT file system in a plain file, without root or /sbin on the PATH.
    let _ = std::fs::remove_file(at);
    std::fs::File::create(at)
        .and_then(|f| f.set_len(KEY_MEDIUM_BYTES))
        .with_context(|| format!("could not make {}", at.display()))?;
    cmd!(sh, "mformat -i {at} -v {KEY_LABEL} ::")
        .quiet()
        .run()
        .with_context(|| format!("mformat could not make the key medium {}", at.display()))?;
    cmd!(sh, "mcopy -i {at} {key} ::{KEY_FILE}")
        .run()
        .with_context(|| format!("mcopy could not put the key on {}", at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_medium_is_a_fat_file_system_labelled_berth_key_holding_a_64_byte_key() {
        let test = "qemu::disk::tests::the_key_medium_is_a_fat_file_system_labelled_berth_key_holding_a_64_byte_key";
        if which::which("mformat").is_err() {
            crate::util::skip(test, "mtools is not installed (apt-get install mtools)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sh = Shell::new().unwrap();
        let medium = dir.path().join("key.img");
        key_medium(&sh, &medium).unwrap();
        let label = cmd!(sh, "mlabel -i {medium} -s ::").read().unwrap();
        assert!(label.contains(KEY_LABEL), "{label}");
        let key = dir.path().join("out.key");
        cmd!(sh, "mcopy -i {medium} ::{KEY_FILE} {key}")
            .run()
            .unwrap();
        let first = std::fs::read(&key).unwrap();
        assert_eq!(first.len(), 64);
        key_medium(&sh, &medium).unwrap();
        std::fs::remove_file(&key).unwrap();
        cmd!(sh, "mcopy -i {medium} ::{KEY_FILE} {key}")
            .run()
            .unwrap();
        assert_ne!(
            std::fs::read(&key).unwrap(),
            first,
            "a new medium holds a new key"
        );
    }
}
