//! The output folder `image` builds in: refused when it holds someone's own files, and cleared of
//! whatever marks or describes a finished image before a new build starts.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::release;

/// Create the output folder, refusing a non-empty folder that is not a Buildroot output (so
/// a mistyped --output cannot scatter build files among the user's own).
pub(super) fn prepare_output(output: &Path) -> Result<PathBuf> {
    if output.is_dir() && !output.join(".config").exists() && !output.join("Makefile").exists() {
        let mut entries = std::fs::read_dir(output)
            .with_context(|| format!("could not list {}", output.display()))?;
        if entries.next().is_some() {
            bail!(
                "the output folder {} is not empty and is not a Buildroot output folder (no .config); \
                 choose another --output so nothing in it is overwritten",
                output.display()
            );
        }
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("could not create the output folder {}", output.display()))?;
    // Buildroot runs with `make -C <tree>`, so O= must not be relative.
    output
        .canonicalize()
        .with_context(|| format!("could not resolve the output folder {}", output.display()))
}

/// Remove what marks a finished build, so no failure can leave an old or partial image looking
/// complete; and what was derived from the old images (block maps, SBOM, license bundle), so none
/// lies beside a new image it does not describe (bmaptool picks up `<image>.bmap` by itself).
pub(super) fn remove_finished_markers(images: &Path) -> Result<()> {
    for name in release::finished_and_derived() {
        for path in [
            images.join(&name),
            release::partial_path(&images.join(&name)),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => eprintln!("Removed {} from an earlier build", path.display()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("could not remove the stale {}", path.display()))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn finished_markers_are_removed_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        let old = [
            "SHA256SUMS",
            "manifest.toml",
            "SHA256SUMS.partial",
            "sdcard.img.bmap",
            "sbom.cdx.json",
        ];
        for name in old.iter().chain(&["sdcard.img"]) {
            std::fs::write(images.join(name), "old").unwrap();
        }
        remove_finished_markers(images).unwrap();
        let left: BTreeSet<_> = std::fs::read_dir(images)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("sdcard.img")].into());
        remove_finished_markers(&images.join("missing")).unwrap();
        release::write_atomically(&images.join("SHA256SUMS"), b"new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(images.join("SHA256SUMS")).unwrap(),
            "new\n"
        );
        assert!(!images.join("SHA256SUMS.partial").exists());
    }

    #[test]
    fn a_foreign_non_empty_folder_is_not_used_as_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "mine").unwrap();
        let err = prepare_output(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a Buildroot output folder"), "{err}");
        std::fs::write(dir.path().join(".config"), "").unwrap();
        assert_eq!(
            prepare_output(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let fresh = dir.path().join("new/out");
        assert!(prepare_output(&fresh).unwrap().is_absolute());
    }
}
