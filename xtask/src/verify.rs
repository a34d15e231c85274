//! `cargo xtask verify`: check an artifact folder (SHA256SUMS, manifest, block maps).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct VerifyArgs {}

pub fn run(_args: VerifyArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
