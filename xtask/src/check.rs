//! `cargo xtask check`: the offline validation (Kconfig round trips, check-package, shellcheck, package set, kernel stage).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct CheckArgs {}

pub fn run(_args: CheckArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
