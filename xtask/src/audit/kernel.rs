use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct KernelArgs {}

pub fn run(_args: KernelArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
