//! `cargo xtask bmap` and the bmaptool-compatible block map format (pure range logic apart from I/O).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct BmapArgs {}

pub fn run(_args: BmapArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Write a bmaptool-compatible block map of `image` to `bmap_path`.
pub fn write_for_image(_image: &std::path::Path, _bmap_path: &std::path::Path) -> Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Check `image` against its block map: size, the map's own checksum, every range's sha256.
pub fn check_image_against_bmap(_image: &std::path::Path, _bmap_path: &std::path::Path) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
