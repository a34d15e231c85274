//! The kernel audit from files: the config, and optionally the command line and sysctl.d folders,
//! read and judged against the rule table.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cmdline::parse_cmdline;
use super::engine::{evaluate, Inputs, Toolchain};
use super::rules::load_rules;
use super::sysctl::read_sysctl_dirs;
use crate::audit::exceptions::Exceptions;
use crate::audit::report::Report;
use crate::kconfig::Resolved;
use crate::project::Repo;

/// Read every input and audit it; `rules` defaults to the checkout's rule file.
pub fn audit_files(
    repo: &Repo,
    config: &Path,
    cmdline: Option<&Path>,
    sysctl_dirs: Option<&[PathBuf]>,
    rules: Option<&Path>,
    toolchain: Toolchain,
) -> Result<Report> {
    let rules_path = rules
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.path(crate::audit::tables::KERNEL_RULES));
    let rules = load_rules(&rules_path)?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("could not read the kernel config {}", config.display()))?;
    let resolved = Resolved::parse(&text, &config.display().to_string())?;
    let cmdline = cmdline
        .map(|path| {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("could not read the kernel command line {}", path.display())
            })?;
            parse_cmdline(&text).with_context(|| {
                format!("{} is not a one-line kernel command line", path.display())
            })
        })
        .transpose()?;
    let sysctl = sysctl_dirs.map(read_sysctl_dirs).transpose()?;
    let exceptions = Exceptions::load(&repo.path(crate::audit::tables::EXCEPTIONS))?;
    let title = format!("Kernel audit of {}", config.display());
    evaluate(
        &title,
        &rules,
        &Inputs {
            config: &resolved,
            cmdline: cmdline.as_ref(),
            sysctl: sysctl.as_ref(),
        },
        &exceptions.kernel,
        toolchain,
    )
}
