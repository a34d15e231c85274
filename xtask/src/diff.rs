//! `cargo xtask diff`: compare two build outputs file by file.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct DiffArgs {}

pub fn run(_args: DiffArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
