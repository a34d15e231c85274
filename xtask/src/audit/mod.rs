//! `cargo xtask audit`: kernel config rules, and the image (CIS Docker items, ELF hardening).
//! With no sub-command it audits a Buildroot output folder fully (kernel + image).

mod cis;
mod elf;
mod image;
pub mod kernel;

use std::path::{Path, PathBuf};

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
        Some(AuditWhat::Image(a)) => image::run(a, args.json),
        None => audit_output(&args.output, args.json),
    }
}

/// Full audit of a Buildroot output folder; also called at the end of `cargo xtask image`.
/// Both audits always run and print, so one failing does not hide the other's findings.
pub fn audit_output(output: &Path, json: bool) -> Result<()> {
    let kernel = kernel::audit_buildroot_output(output);
    let image = image::audit_image(output, None);
    if json {
        let part = |r: Result<serde_json::Value, &anyhow::Error>| match r {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        let doc = serde_json::json!({
            "output": output.display().to_string(),
            "kernel": part(kernel.as_ref().map(|r| r.to_json())),
            "image": part(image.as_ref().map(|a| a.to_json())),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if let Ok(report) = &kernel {
            println!("{}", report.render_table());
        }
        if let Ok(audit) = &image {
            print!("{}", audit.render_table());
        }
    }
    let mut problems = Vec::new();
    match &kernel {
        Ok(report) if !report.passed() => problems.push(format!(
            "kernel audit: {} required rule(s) failed",
            report.totals().failed_required
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("kernel audit could not run: {e:#}")),
    }
    match &image {
        Ok(audit) => {
            if let Err(e) = audit.verdict() {
                problems.push(format!("{e:#}"));
            }
        }
        Err(e) => problems.push(format!("image audit could not run: {e:#}")),
    }
    anyhow::ensure!(problems.is_empty(), "audit of {} failed: {}", output.display(), problems.join("; "));
    Ok(())
}
