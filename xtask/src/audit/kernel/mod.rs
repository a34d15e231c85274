//! `cargo xtask audit kernel`: judge a resolved kernel `.config`, the kernel command line and the
//! sysctl.d settings against the rule data in `configs/hardening/kernel-rules.toml`, with every
//! deliberate departure taken from the `[[kernel]]` section of `configs/hardening/exceptions.toml`.
//!
//! The layers, one file each: [`rules`] (the table), [`cmdline`] and [`sysctl`] (the inputs as the
//! kernel and systemd read them), [`engine`] (pure: everything in, [`Report`] out), [`linux`]
//! (`--linux`: resolve a config in a kernel tree first). This file is the command line and the
//! file reading.

pub mod cmdline;
pub mod engine;
pub mod files;
pub mod linux;
pub mod rules;
pub mod sysctl;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

pub use cmdline::{parse_cmdline, Cmdline};
pub use engine::{evaluate, Inputs, Toolchain};
pub use files::audit_files;
pub use rules::{load_rules, parse_rules, Rules};
pub use sysctl::{parse_sysctl, read_sysctl_dirs, Sysctl};

use crate::audit::report::Report;
use crate::host::Host;
use crate::project::Repo;

#[derive(Args)]
pub struct KernelArgs {
    /// The resolved kernel .config to audit (Buildroot: `<output>/build/linux-<version>/.config`).
    #[arg(required_unless_present = "linux")]
    config: Option<PathBuf>,
    /// Instead of a .config: resolve exynos_defconfig + Berth's fragments in this Linux 6.12
    /// source tree (olddefconfig, O= a temporary folder), check that every fragment line
    /// survived, and audit the result with the board's cmdline and sysctl.d (as `cargo xtask check`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "cmdline", "sysctl", "rules", "json"])]
    linux: Option<PathBuf>,
    /// The kernel command line file (one line), e.g. board/odroid-xu4/cmdline.txt.
    #[arg(long)]
    cmdline: Option<PathBuf>,
    /// A sysctl.d folder; repeat for several (a later folder's file overrides an earlier one of the
    /// same name, as /etc/sysctl.d overrides /usr/lib/sysctl.d).
    #[arg(long)]
    sysctl: Vec<PathBuf>,
    /// Rule file (default: configs/hardening/kernel-rules.toml in the repository).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Print machine-readable JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `json` is the parent's `audit --json`, which counts as much as the sub-command's own.
/// `--linux` resolves the tree's config in the host's cache folder.
pub fn run(args: KernelArgs, json: bool, repo: &Repo, host: &Host) -> Result<()> {
    if let Some(tree) = &args.linux {
        return linux::audit_linux_tree(repo, tree, host.cache()?);
    }
    let config = args.config.expect("clap requires a config without --linux");
    let sysctl = if args.sysctl.is_empty() {
        None
    } else {
        Some(args.sysctl.as_slice())
    };
    let report = audit_files(
        repo,
        &config,
        args.cmdline.as_deref(),
        sysctl,
        args.rules.as_deref(),
        Toolchain::Target,
    )?;
    report.emit(args.json || json)
}

/// Audit the kernel config Buildroot resolved in `output` (with the board's cmdline and sysctl).
/// Called by `audit::audit_output` at the end of `cargo xtask image`.
pub fn audit_buildroot_output(repo: &Repo, output: &Path) -> Result<Report> {
    let config = buildroot_kernel_config(output)?;
    let cmdline = crate::project::default_board()
        .dir(repo)
        .join("cmdline.txt");
    let target = output.join("target");
    // systemd's search path, lowest priority first (a folder that is a link, as /lib with a
    // merged /usr, repeats the same files, which changes nothing).
    let sysctl = [
        "lib/sysctl.d",
        "usr/lib/sysctl.d",
        "usr/local/lib/sysctl.d",
        "run/sysctl.d",
        "etc/sysctl.d",
    ]
    .map(|dir| target.join(dir));
    audit_files(
        repo,
        &config,
        Some(&cmdline),
        Some(&sysctl),
        None,
        Toolchain::Target,
    )
}

/// `<output>/build/linux-<version>/.config`; exactly one must exist.
pub fn buildroot_kernel_config(output: &Path) -> Result<PathBuf> {
    let build = output.join("build");
    let entries = std::fs::read_dir(&build).with_context(|| {
        format!(
            "could not list {} (is {} a Buildroot output folder?)",
            build.display(),
            output.display()
        )
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("could not list {}", build.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // linux-headers-* and linux-firmware-* are other packages; the kernel is linux-<digit>...
        let is_kernel = name
            .strip_prefix("linux-")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) || rest == "custom");
        if is_kernel && entry.path().join(".config").is_file() {
            found.push(entry.path().join(".config"));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no resolved kernel config (build/linux-<version>/.config) under {}",
            output.display()
        ),
        _ => bail!(
            "several kernel build folders under {}: {}; remove the stale ones",
            build.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::audit::report::Verdict;

    #[test]
    fn buildroot_output_layout() {
        let out = tempfile::tempdir().unwrap();
        let build = out.path().join("build");
        for dir in [
            "linux-headers-6.12.91",
            "linux-firmware-20250311",
            "linux-6.12.91",
        ] {
            std::fs::create_dir_all(build.join(dir)).unwrap();
            std::fs::write(build.join(dir).join(".config"), "CONFIG_X=y\n").unwrap();
        }
        assert_eq!(
            buildroot_kernel_config(out.path()).unwrap(),
            build.join("linux-6.12.91/.config")
        );
        std::fs::create_dir_all(build.join("linux-custom")).unwrap();
        std::fs::write(build.join("linux-custom/.config"), "").unwrap();
        let err = buildroot_kernel_config(out.path()).unwrap_err().to_string();
        assert!(err.contains("several kernel build folders"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(buildroot_kernel_config(empty.path()).is_err());

        // /etc/sysctl.d hides a file of the same name in /usr/lib/sysctl.d; others still apply.
        let lib = out.path().join("target/usr/lib/sysctl.d");
        let etc = out.path().join("target/etc/sysctl.d");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            lib.join("50-default.conf"),
            "kernel.sysrq = 16\nfs.protected_fifos = 1\n",
        )
        .unwrap();
        std::fs::write(lib.join("60-berth.conf"), "kernel.kptr_restrict = 1\n").unwrap();
        std::fs::write(etc.join("60-berth.conf"), "kernel.kptr_restrict = 2\n").unwrap();
        std::fs::write(etc.join("README"), "not a conf file\n").unwrap();
        let s = read_sysctl_dirs(&[lib, etc.clone(), out.path().join("missing")]).unwrap();
        assert_eq!(s.get("kernel.kptr_restrict").unwrap().0, "2");
        assert_eq!(s.get("kernel.sysrq").unwrap().0, "16");
        assert!(s.get("kernel/sysrq").is_some());

        // The whole image-build audit on that layout: the board's cmdline.txt is judged too.
        std::fs::remove_dir_all(build.join("linux-custom")).unwrap();
        let report = audit_buildroot_output(&Repo::checkout(), out.path()).unwrap();
        let verdict = |subject: &str| {
            &report
                .findings
                .iter()
                .find(|f| f.subject == subject)
                .unwrap()
                .verdict
        };
        assert_eq!(verdict("cmdline:console"), &Verdict::Pass);
        assert_eq!(verdict("sysctl:kernel.kptr_restrict"), &Verdict::Pass);
        assert_eq!(verdict("sysctl:kernel.dmesg_restrict"), &Verdict::Fail);
        assert_eq!(verdict("CONFIG_SECCOMP"), &Verdict::Fail);
        assert!(!report.passed());
    }
}
