//! `cargo xtask audit root <output>`: the root filesystem stays read-only and persistent state has
//! one declared home. Judged on the Buildroot configuration (EROFS root, never remounted
//! read-write, /var on a tmpfs) and on the image tree (fstab mounts / read-only; every writable
//! mount and every folder a service is set to write is declared state or tmpfs).
//!
//! The rules are `configs/hardening/readonly-root.toml`, the declared state
//! `configs/hardening/persistent-state.toml` ([`tables`]); [`tree`] judges the image tree.

pub mod tables;
#[cfg(test)]
mod tests;
pub mod tree;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::audit::report::{Finding, Report, Severity, Verdict};
use crate::kconfig::Resolved;
use crate::project::Repo;
pub use tables::{RootRules, StateTable, Tables, Want, SOURCE};

#[derive(Args)]
pub struct RootArgs {
    /// Buildroot output folder (its .config and target/).
    pub output: PathBuf,
    /// Print machine-readable JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RootArgs, json: bool, repo: &Repo) -> Result<()> {
    let report = audit_output(repo, &args.output)?;
    crate::audit::report::print(
        args.json || json,
        || report.to_json(),
        || report.render_table(),
    )?;
    verdict(&report)
}

/// An error that says why, one failed rule after another.
pub fn verdict(report: &Report) -> Result<()> {
    let why: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail && f.severity == Severity::Required)
        .map(|f| f.detail.as_str())
        .collect();
    anyhow::ensure!(
        why.is_empty(),
        "{}: the root is not read-only, or state is kept outside its declared home: {}",
        report.title,
        why.join("; ")
    );
    Ok(())
}

/// Audit a Buildroot output folder: `.config`, then `target/`.
pub fn audit_output(repo: &Repo, output: &Path) -> Result<Report> {
    let tables = Tables::load(repo)?;
    let dot_config = output.join(".config");
    let (mut findings, tmpfs) = if dot_config.is_file() {
        let text = std::fs::read_to_string(&dot_config)
            .with_context(|| format!("could not read {}", dot_config.display()))?;
        let config = Resolved::parse(&text, &dot_config.display().to_string())?;
        config_findings(&tables.rules, &config)
    } else {
        let missing = Finding {
            subject: "build configuration".into(),
            rule: "the root is read-only by configuration".into(),
            source: SOURCE.into(),
            severity: Severity::Required,
            verdict: Verdict::Fail,
            detail: format!("{} is missing: nothing proves it", dot_config.display()),
        };
        (vec![missing], Vec::new())
    };
    let target = crate::target_dir::DirFs::new(&output.join("target"))
        .with_context(|| format!("{} is not a Buildroot output folder", output.display()))?;
    findings.extend(tree::audit_tree(&tables, &target, &tmpfs)?);
    // A whole image is audited here, so an exception that waives nothing is a typo or stale.
    crate::audit::exceptions::reject_unmatched(
        &tables.exceptions.root,
        |e| {
            findings.iter().any(|f| {
                f.subject == e.unit
                    && matches!(f.verdict, Verdict::Exception(_))
                    && f.rule.ends_with(&format!(" writes {}", e.path))
            })
        },
        "unit writing outside the declared state",
    )?;
    let mut report = Report::new(format!("Read-only root of {}", output.display()));
    for f in findings {
        report.push(f);
    }
    Ok(report)
}

/// The `[[buildroot]]` rules judged on a resolved Buildroot configuration, and the folders the
/// configuration puts a tmpfs on (those of the rules it meets).
pub fn config_findings(rules: &RootRules, config: &Resolved) -> (Vec<Finding>, Vec<String>) {
    let mut tmpfs = Vec::new();
    let findings = rules
        .buildroot
        .iter()
        .map(|rule| {
            let on = config.is_enabled(&rule.option);
            let met = on == (rule.want == Want::Y);
            if let (true, Some(dir)) = (met, &rule.tmpfs) {
                tmpfs.push(dir.clone());
            }
            let is = if on { "y" } else { "not set" };
            Finding {
                subject: rule.option.clone(),
                rule: format!("{}={}", rule.option, rule.want.as_str()),
                source: SOURCE.into(),
                severity: Severity::Required,
                verdict: if met { Verdict::Pass } else { Verdict::Fail },
                detail: if met {
                    format!("{} is {is}", rule.option)
                } else {
                    format!(
                        "{} is {is}: {} (source: {})",
                        rule.option, rule.why, rule.source
                    )
                },
            }
        })
        .collect();
    (findings, tmpfs)
}
