use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ImageArgs {}

pub fn run(_args: ImageArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
