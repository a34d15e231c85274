//! `cargo xtask audit kernel --linux DIR`, and the kernel stage of `cargo xtask check`: Berth's
//! kernel configuration resolved in a Linux 6.12 source tree as Buildroot resolves it
//! ([`crate::kconfig::resolve()`]: the board defconfig, then our fragments over it), every
//! fragment line that did not survive named, and the result audited with the board's command line
//! and sysctl.d.
//!
//! Which defconfig and fragments are read from the Buildroot defconfig, so they are stated once.
//! The source tree is only read: Kconfig runs with `O=` a folder of Berth's cache.

use std::path::Path;

use anyhow::{ensure, Result};

use super::engine::Toolchain;
use crate::audit::report::Report;
use crate::kconfig::{self, plan::Package, plan::Plan};
use crate::project::Repo;

/// Resolve, name every fragment line that did not survive, audit; print the failures and totals.
pub fn audit_linux_tree(repo: &Repo, linux_src: &Path, cache: &Path) -> Result<()> {
    let report = audit_resolved_tree(repo, linux_src, cache)?;
    // The passing rules are listed by `cargo xtask audit kernel <that .config>`.
    print!("{}", report.render_attention());
    report.verdict()
}

/// [`audit_linux_tree`] up to the report: an error when a fragment line was dropped, naming each.
/// The resolved `.config` is kept in `<cache>/kernel-check/`.
pub fn audit_resolved_tree(repo: &Repo, linux_src: &Path, cache: &Path) -> Result<Report> {
    let plan = Plan::read(repo, Package::Linux)?;
    let defconfig = Path::new("arch/arm/configs").join(&plan.defconfig);
    ensure!(
        linux_src.join("Makefile").is_file() && linux_src.join(&defconfig).is_file(),
        "{} is not a Linux source tree with {}",
        linux_src.display(),
        defconfig.display()
    );
    let cross = kconfig::arm_cross_compile();
    let (toolchain, compiler) = match &cross {
        Some(prefix) => (Toolchain::Target, format!("{prefix}gcc")),
        None => {
            eprintln!(
                "kernel: no ARM cross compiler (arm-linux-gnueabihf-gcc); Kconfig probes the host \
                 gcc, so rules on compiler-probed options only warn (apt-get install \
                 gcc-arm-linux-gnueabihf to judge them)"
            );
            (Toolchain::Host, "the host gcc".to_string())
        }
    };
    let resolved = plan.resolve(
        linux_src,
        &kconfig::arm_make_args(cross.as_deref()),
        &cache.join("kernel-check"),
    )?;
    println!(
        "kernel: {} {} fragment settings, {} resolved symbols ({} with {compiler})",
        plan.defconfig,
        resolved.requested,
        resolved.settings.len(),
        linux_src.display(),
    );
    println!(
        "kernel: resolved config kept at {}",
        resolved.config_path.display()
    );
    resolved.ensure_kept(linux_src)?;
    println!("kernel: every fragment line survived olddefconfig");

    let board = crate::project::default_board().dir(repo);
    let sysctl = [board.join("rootfs-overlay/etc/sysctl.d")];
    super::files::audit_files(
        repo,
        &resolved.config_path,
        Some(&board.join("cmdline.txt")),
        Some(&sysctl),
        None,
        toolchain,
    )
}
