//! `cargo xtask flash`: write an image to an SD card or eMMC safely, fast and verified.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct FlashArgs {}

pub fn run(_args: FlashArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
