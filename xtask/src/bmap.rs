//! `cargo xtask bmap` and the bmaptool-compatible block map format (pure range logic apart from I/O).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct BmapArgs {}

pub fn run(_args: BmapArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
