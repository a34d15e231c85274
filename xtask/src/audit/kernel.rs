use std::path::Path;

use anyhow::Result;
use clap::Args;

use crate::report::Report;

#[derive(Args)]
pub struct KernelArgs {}

pub fn run(_args: KernelArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Audit the kernel config Buildroot resolved in `output` (with the board's cmdline and sysctl).
pub fn audit_buildroot_output(_output: &Path) -> Result<Report> {
    anyhow::bail!("not implemented yet")
}
