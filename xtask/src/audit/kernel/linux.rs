//! `cargo xtask audit kernel --linux DIR`: resolve the kernel config in a Linux 6.12 source tree
//! as the build would, check that every fragment line survived, then audit the result with the
//! board's command line and sysctl.d (what `cargo xtask check` does for the kernel).
//!
//! Only [`resolve_with_linux_tree`] reaches the kernel tree; the rest of the audit never calls
//! into the check stages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Toolchain;
use crate::audit::report::Report;
use crate::kconfig::{self, Resolved, Setting};
use crate::project::Repo;

/// A kernel config resolved in a source tree, and what it was resolved from.
pub struct LinuxTreeConfig {
    /// Berth's fragments, in the order they were merged.
    pub fragments: Vec<PathBuf>,
    pub config: Resolved,
    pub symbol_count: usize,
    /// A copy of the resolved `.config`, kept for inspection and the audit.
    pub config_path: PathBuf,
    pub toolchain: Toolchain,
    /// Which compiler Kconfig probed, for the log.
    pub compiler: String,
}

/// The audit's one way into a kernel tree: the board defconfig plus Berth's fragments, resolved
/// with Kconfig in a temporary `O=` folder (the tree is only read).
pub fn resolve_with_linux_tree(repo: &Repo, linux_src: &Path) -> Result<LinuxTreeConfig> {
    let fragments: Vec<PathBuf> = crate::kernel_check::FRAGMENTS
        .iter()
        .map(|f| repo.path(f))
        .collect();
    let resolved = crate::kernel_check::resolve(linux_src, &fragments)?;
    Ok(LinuxTreeConfig {
        fragments,
        config: resolved.config,
        symbol_count: resolved.symbol_count,
        config_path: resolved.config_path,
        toolchain: resolved.toolchain,
        compiler: resolved.compiler,
    })
}

/// Resolve, name every fragment line that did not survive, audit; print the failures and totals.
pub fn audit_linux_tree(repo: &Repo, linux_src: &Path) -> Result<()> {
    let report = audit_resolved_tree(repo, linux_src)?;
    // The passing rules are listed by `cargo xtask audit kernel <that .config>`.
    print!("{}", report.render_attention());
    report.verdict()
}

/// [`audit_linux_tree`] up to the report: an error when a fragment line was dropped, naming each.
pub fn audit_resolved_tree(repo: &Repo, linux_src: &Path) -> Result<Report> {
    let resolved = resolve_with_linux_tree(repo, linux_src)?;
    let requested = merged_fragments(repo, &resolved.fragments)?;
    let lost = kconfig::dropped(&requested, &resolved.config);
    println!(
        "kernel: {} fragment settings, {} resolved symbols ({} with {})",
        requested.len(),
        resolved.symbol_count,
        linux_src.display(),
        resolved.compiler
    );
    if !lost.is_empty() {
        let lines: Vec<String> = lost.iter().map(|d| format!("  {d}")).collect();
        bail!(
            "{} fragment line(s) did not survive olddefconfig in {}:\n{}",
            lost.len(),
            linux_src.display(),
            lines.join("\n")
        );
    }
    println!("kernel: every fragment line survived olddefconfig");

    let board = crate::project::default_board().dir(repo);
    let sysctl = [board.join("rootfs-overlay/etc/sysctl.d")];
    let report = super::audit_files(
        repo,
        &resolved.config_path,
        Some(&board.join("cmdline.txt")),
        Some(&sysctl),
        None,
        resolved.toolchain,
    )?;
    println!(
        "kernel: resolved config kept at {}",
        resolved.config_path.display()
    );
    Ok(report)
}

/// The fragments merged (a later fragment's setting of a symbol replaces an earlier one's), each
/// line named by its path in the checkout.
fn merged_fragments(repo: &Repo, fragments: &[PathBuf]) -> Result<Vec<Setting>> {
    let parsed = fragments
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let name = path.strip_prefix(repo.root()).unwrap_or(path);
            kconfig::parse(&text, &name.display().to_string())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(kconfig::merge(parsed.iter().map(Vec::as_slice)))
}
