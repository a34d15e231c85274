//! The build a twin boots: the card and the twin's U-Boot from one images folder, proven to be
//! of the same build by its SHA256SUMS when `cargo xtask image` sealed it, and its update bundle.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::release::{self, BUNDLE_SUFFIX, SDCARD_IMAGE, SUMS_FILE, TWIN_UBOOT};
use crate::util;

#[derive(Debug, Clone)]
pub struct Build {
    pub images: PathBuf,
    pub card: PathBuf,
    pub firmware: PathBuf,
    /// The build's update bundle, when it made one.
    pub bundle: Option<PathBuf>,
    /// The card's SHA-256: what a kept twin's state records, so it is never booted with the
    /// U-Boot of another build.
    pub card_sha256: String,
    /// False for a folder `image` did not seal (a Buildroot run by hand): nothing then proves
    /// that the card and the U-Boot come from one build.
    pub sealed: bool,
}

impl Build {
    pub fn find(images: &Path) -> Result<Build> {
        let card = images.join(SDCARD_IMAGE);
        let firmware = images.join(TWIN_UBOOT);
        if !card.is_file() {
            bail!(
                "{} has no {SDCARD_IMAGE}: build it first with `cargo xtask image` (or pass --output)",
                images.display()
            );
        }
        if !firmware.is_file() {
            bail!(
                "{} has no {TWIN_UBOOT}, the twin's U-Boot: this build predates the twin or \
                 BR2_PACKAGE_BERTH_TWIN_UBOOT is off; build again with `cargo xtask image`",
                images.display()
            );
        }
        let card_sha256 = util::sha256_file(&card)?;
        let sealed = images.join(SUMS_FILE).is_file();
        if sealed {
            let sums = release::read_sums(images)?;
            for (path, name) in [(&card, SDCARD_IMAGE), (&firmware, TWIN_UBOOT)] {
                let listed = sums.iter().find(|e| e.name == name).with_context(|| {
                    format!(
                        "{SUMS_FILE} in {} does not list {name}: the twin's U-Boot is not of \
                             this build; build again with `cargo xtask image`",
                        images.display()
                    )
                })?;
                let actual = if name == SDCARD_IMAGE {
                    card_sha256.clone()
                } else {
                    util::sha256_file(path)?
                };
                if listed.sha256 != actual {
                    bail!(
                        "{name} in {} is not the one its {SUMS_FILE} lists: the card and the \
                         twin's U-Boot are of different builds; build again with `cargo xtask image`",
                        images.display()
                    );
                }
            }
        }
        let mut bundles: Vec<PathBuf> = std::fs::read_dir(images)
            .with_context(|| format!("could not list {}", images.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(BUNDLE_SUFFIX))
            .collect();
        bundles.sort();
        if bundles.len() > 1 {
            bail!(
                "{} holds {} update bundles; a build makes one",
                images.display(),
                bundles.len()
            );
        }
        Ok(Build {
            images: images.to_path_buf(),
            card,
            firmware,
            bundle: bundles.pop(),
            card_sha256,
            sealed,
        })
    }
}
