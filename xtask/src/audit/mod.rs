//! `cargo xtask audit`: kernel config rules, and the image (CIS Docker items, ELF hardening).
//! With no sub-command it audits a Buildroot output folder fully (kernel + image).

pub mod kernel;
mod image;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    what: Option<AuditWhat>,
    /// Buildroot output folder to audit fully (kernel .config + image) when no sub-command is given.
    #[arg(long, default_value = "output/odroid-xu4")]
    output: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AuditWhat {
    /// Audit a resolved kernel .config against the hardening and Docker rules.
    Kernel(kernel::KernelArgs),
    /// Audit a Buildroot output folder: CIS Docker items and ELF hardening of every binary.
    Image(image::ImageArgs),
}

pub fn run(args: AuditArgs) -> Result<()> {
    match args.what {
        Some(AuditWhat::Kernel(a)) => kernel::run(a),
        Some(AuditWhat::Image(a)) => image::run(a),
        None => audit_output(&args.output, args.json),
    }
}

/// Full audit of a Buildroot output folder; also called at the end of `cargo xtask image`.
pub fn audit_output(_output: &std::path::Path, _json: bool) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
