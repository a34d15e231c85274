//! What two reproducible builds cannot share: the update bundle's signature. An ECDSA signature
//! takes a random nonce and RAUC's CMS carries the signing time, and a verity bundle's hash tree
//! after the squashfs uses a salt RAUC draws at random. So a bundle is compared by its squashfs
//! (the signed content: system.img, system.env, the hook and RAUC's manifest), and the bundle's
//! own rows in SHA256SUMS and manifest.toml, whose digests follow the signature, are left out
//! (and so is the manifest's row in SHA256SUMS, as the manifest lists the bundle).
//! Everything else in those two files is still compared.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::disk::{digest_range, read_head};
use crate::release::{BUNDLE_SUFFIX, MANIFEST_FILE, SUMS_FILE};

/// Whether `name` is an update bundle.
pub fn is_bundle(name: &str) -> bool {
    name.ends_with(BUNDLE_SUFFIX)
}

/// Bytes of the squashfs a bundle starts with (its superblock's `bytes_used`). Pure.
pub fn squashfs_len(head: &[u8]) -> Result<u64> {
    ensure!(
        head.len() >= 48 && &head[..4] == b"hsqs",
        "does not start with a squashfs superblock, so it is no RAUC bundle"
    );
    Ok(u64::from_le_bytes(
        head[40..48].try_into().expect("8 bytes"),
    ))
}

/// Whether two bundles carry the same squashfs, whatever their signatures.
pub fn same_signed_content(a: &Path, b: &Path) -> Result<bool> {
    let len_of = |p: &Path| {
        squashfs_len(&read_head(p)?).with_context(|| format!("{} is no bundle", p.display()))
    };
    let (la, lb) = (len_of(a)?, len_of(b)?);
    Ok(la == lb && digest_range(a, 0, la)? == digest_range(b, 0, lb)?)
}

/// Whether `name` is a file that lists the bundle with its digest (SHA256SUMS, manifest.toml).
pub fn lists_bundles(name: &str) -> bool {
    name == SUMS_FILE || name == MANIFEST_FILE
}

/// `text` of SHA256SUMS or manifest.toml without the bundles' rows; `None` for any other file.
/// Pure.
pub fn without_bundle_rows(name: &str, text: &str) -> Option<Result<String>> {
    match name {
        // The manifest's own digest follows the bundle's too; the manifest is compared itself.
        SUMS_FILE => Some(Ok(text
            .lines()
            .filter(|line| {
                let line = line.trim_end();
                !is_bundle(line) && !line.ends_with(&format!(" {MANIFEST_FILE}"))
            })
            .map(|line| format!("{line}\n"))
            .collect())),
        MANIFEST_FILE => Some(manifest_without_bundles(text)),
        _ => None,
    }
}

fn manifest_without_bundles(text: &str) -> Result<String> {
    let mut value: toml::Table = text.parse().context("manifest.toml is not TOML")?;
    if let Some(toml::Value::Array(artifacts)) = value.get_mut("artifact") {
        artifacts.retain(|a| {
            !a.get("name")
                .and_then(toml::Value::as_str)
                .is_some_and(is_bundle)
        });
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_squashfs_length_is_read_from_the_superblock() {
        let mut head = vec![0u8; 96];
        head[..4].copy_from_slice(b"hsqs");
        head[40..48].copy_from_slice(&123_456u64.to_le_bytes());
        assert_eq!(squashfs_len(&head).unwrap(), 123_456);
        assert!(squashfs_len(b"CMS signature only").is_err());
    }

    #[test]
    fn only_the_bundle_rows_are_left_out() {
        let sums = "aa  berth-0123-odroid-xu4.raucb\ncc  manifest.toml\nbb  sdcard.img\n";
        assert_eq!(
            without_bundle_rows(SUMS_FILE, sums).unwrap().unwrap(),
            "bb  sdcard.img\n"
        );
        let manifest = "[berth]\ncommit = \"c\"\n\n[[artifact]]\nname = \"berth-x-odroid-xu4.raucb\"\n\
                        size = 1\nsha256 = \"aa\"\n\n[[artifact]]\nname = \"system.img\"\nsize = 2\n\
                        sha256 = \"bb\"\n";
        let kept = without_bundle_rows(MANIFEST_FILE, manifest)
            .unwrap()
            .unwrap();
        assert!(kept.contains("system.img") && kept.contains("commit"));
        assert!(!kept.contains("raucb"));
        // Another artifact's digest still counts.
        let other = manifest.replace("\"bb\"", "\"cc\"");
        assert_ne!(
            without_bundle_rows(MANIFEST_FILE, &other).unwrap().unwrap(),
            kept
        );
        assert!(without_bundle_rows("sdcard.img", "x").is_none());
    }
}
