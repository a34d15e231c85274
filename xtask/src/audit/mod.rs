//! `cargo xtask audit`: kernel config rules, and the image (CIS Docker items, ELF hardening).
//! With no sub-command it audits a Buildroot output folder fully (kernel + image).

pub mod apps;
pub mod cis;
pub mod cves;
pub mod elf;
pub mod exceptions;
pub mod image;
pub mod kernel;
pub mod report;
pub mod root;
pub mod tables;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::host::Host;
use crate::project::Repo;
use report::Report;
pub use tables::{
    APPS_RULES, CIS_RULES, ELF_RULES, EXCEPTIONS, KERNEL_RULES, PERSISTENT_STATE, ROOT_RULES,
};

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    what: Option<AuditWhat>,
    /// Buildroot output folder to audit fully (kernel .config + image) when no sub-command is given
    /// [default: output/odroid-xu4].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Audit the declared apps of FILE (apps.toml) against CIS Docker section 5.
    #[arg(long, value_name = "FILE")]
    apps: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditWhat {
    /// Audit a resolved kernel .config against the hardening and Docker rules.
    Kernel(kernel::KernelArgs),
    /// Audit a Buildroot output folder: CIS Docker items and ELF hardening of every binary.
    Image(image::ImageArgs),
    /// Audit a Buildroot output folder's read-only root: its .config (EROFS, never remounted
    /// read-write) and target/ (what is mounted writable, what services write), against the
    /// declared persistent state.
    Root(root::RootArgs),
    /// Judge `make pkg-stats` JSON against the vulnerability record (configs/vulnerabilities.toml).
    Cves(cves::CvesArgs),
}

/// `cargo xtask audit` on the checkout `repo`, on `host` (whose cache `kernel --linux` uses).
pub fn run(args: AuditArgs, repo: &Repo, host: &Host) -> Result<()> {
    // `--apps` alone is a whole audit of its own; with an output or a sub-command it comes first.
    if let Some(apps) = &args.apps {
        apps::run(repo, apps, args.json)?;
        if args.what.is_none() && args.output.is_none() {
            return Ok(());
        }
    }
    if let (Some(output), Some(_)) = (&args.output, &args.what) {
        anyhow::bail!(
            "--output {} audits a whole output folder, so it goes without a sub-command \
             (`cargo xtask audit --output DIR`); `audit image` takes its folder as an argument",
            output.display()
        );
    }
    match args.what {
        Some(AuditWhat::Kernel(a)) => kernel::run(a, args.json, repo, host),
        Some(AuditWhat::Image(a)) => image::run(a, args.json, repo),
        Some(AuditWhat::Root(a)) => root::run(a, args.json, repo),
        Some(AuditWhat::Cves(a)) => cves::run(repo, a, args.json),
        None => {
            // Where `cargo xtask image` builds the default board.
            let output = args
                .output
                .unwrap_or_else(|| Path::new("output").join(crate::project::DEFAULT_BOARD));
            audit_output(repo, &output, args.json)
        }
    }
}

/// Full audit of a Buildroot output folder, printed as tables or JSON.
pub fn audit_output(repo: &Repo, output: &Path, json: bool) -> Result<()> {
    let audit = OutputAudit::run(repo, output);
    report::print(json, || audit.to_json(), || audit.render_table())?;
    audit.verdict()
}

/// The audit at the end of `cargo xtask image`: the full tables go to `report` (they run to
/// hundreds of lines), the totals and any failure to the terminal.
pub fn audit_output_into(repo: &Repo, output: &Path, report: &Path) -> Result<()> {
    let audit = OutputAudit::run(repo, output);
    std::fs::write(report, audit.render_table())
        .with_context(|| format!("could not write the audit report {}", report.display()))?;
    print!("{}", audit.summary());
    println!("audit: full report in {}", report.display());
    audit.verdict()
}

/// Kernel and image audits of one output folder. Both always run, so one failing (or unable to
/// run) does not hide the other's findings.
struct OutputAudit<'a> {
    output: &'a Path,
    kernel: Result<Report>,
    image: Result<image::ImageAudit>,
    root: Result<Report>,
}

impl<'a> OutputAudit<'a> {
    fn run(repo: &Repo, output: &'a Path) -> Self {
        OutputAudit {
            output,
            kernel: kernel::audit_buildroot_output(repo, output),
            image: image::audit_image(repo, output, None),
            root: root::audit_output(repo, output),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let part = |r: Result<serde_json::Value, &anyhow::Error>| match r {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        serde_json::json!({
            "output": self.output.display().to_string(),
            "kernel": part(self.kernel.as_ref().map(|r| r.to_json())),
            "image": part(self.image.as_ref().map(|a| a.to_json())),
            "root": part(self.root.as_ref().map(|r| r.to_json())),
        })
    }

    fn render_table(&self) -> String {
        let mut out = String::new();
        if let Ok(report) = &self.kernel {
            out.push_str(&report.render_table());
            out.push('\n');
        }
        if let Ok(audit) = &self.image {
            out.push_str(&audit.render_table());
        }
        if let Ok(report) = &self.root {
            out.push('\n');
            out.push_str(&report.render_table());
        }
        out
    }

    /// One totals line per audit.
    fn summary(&self) -> String {
        let line = |name: &str, r: &Report| {
            let t = r.totals();
            format!(
                "audit: {name}: passed {}, failed {} (required {}), exceptions {}\n",
                t.passed, t.failed, t.failed_required, t.exceptions
            )
        };
        let mut out = String::new();
        if let Ok(report) = &self.kernel {
            out.push_str(&line("kernel", report));
        }
        if let Ok(audit) = &self.image {
            out.push_str(&line("CIS Docker", &audit.cis));
            out.push_str(&line("ELF hardening", &audit.elf));
        }
        if let Ok(report) = &self.root {
            out.push_str(&line("read-only root", report));
        }
        out
    }

    fn verdict(&self) -> Result<()> {
        let mut problems = Vec::new();
        match &self.kernel {
            Ok(report) if !report.passed() => problems.push(format!(
                "kernel audit: {} required rule(s) failed",
                report.totals().failed_required
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("kernel audit could not run: {e:#}")),
        }
        match &self.image {
            Ok(audit) => {
                if let Err(e) = audit.verdict() {
                    problems.push(format!("{e:#}"));
                }
            }
            Err(e) => problems.push(format!("image audit could not run: {e:#}")),
        }
        match &self.root {
            Ok(report) => {
                if let Err(e) = root::verdict(report) {
                    problems.push(format!("{e:#}"));
                }
            }
            Err(e) => problems.push(format!("read-only root audit could not run: {e:#}")),
        }
        anyhow::ensure!(
            problems.is_empty(),
            "audit of {} failed: {}",
            self.output.display(),
            problems.join("; ")
        );
        Ok(())
    }
}
