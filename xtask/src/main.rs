//! Berth's orchestrator, run as `cargo xtask <verb>`: the command line and its dispatch. Every
//! verb lives in the library (`src/lib.rs`), which the tests call directly.

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::host::Host;
use xtask::project::Repo;
use xtask::{audit, bench, bmap, buildroot_tree, check, diff, flash, image, qemu, verify};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, check, audit, flash and verify Berth, the hardened Docker host OS for ODROID-XU3 Lite / XU4",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the flashable image with the pinned Buildroot and the BERTH BR2_EXTERNAL tree.
    Image(image::ImageArgs),
    /// Validate offline: Kconfig round trips, check-package, shellcheck, package set, kernel fragments, U-Boot config.
    Check(check::CheckArgs),
    /// Prove the hardening of a kernel config and of a built image.
    Audit(audit::AuditArgs),
    /// Write an image to an SD card or eMMC safely, fast and verified.
    Flash(flash::FlashArgs),
    /// Create a bmaptool-compatible block map for an image.
    Bmap(bmap::BmapArgs),
    /// Measure speed claims (e.g. flashing against dd and bmaptool).
    Bench(bench::BenchArgs),
    /// Check an artifact folder (SHA256SUMS, manifest, block maps) before flashing.
    Verify(verify::VerifyArgs),
    /// Compare two build outputs file by file.
    Diff(diff::DiffArgs),
    /// The pinned Buildroot with patches/buildroot applied, as `image` builds with it (its path with --print-path).
    Buildroot(buildroot_tree::BuildrootArgs),
    /// Boot the built card in QEMU's `virt` machine, the board's twin; with --test, run the runtime suite.
    Qemu(qemu::QemuArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Image(args) => image::run(&Repo::checkout(), args, &Host::from_process()),
        Command::Check(args) => check::run(args, &Repo::checkout(), Host::from_process()),
        Command::Audit(args) => audit::run(args, &Repo::checkout(), &Host::from_process()),
        Command::Flash(args) => flash::run(args),
        Command::Bmap(args) => bmap::run(args),
        Command::Bench(args) => bench::run(args, &Repo::checkout(), &Host::from_process()),
        Command::Verify(args) => verify::run(&Repo::checkout(), args),
        Command::Diff(args) => diff::run(&Repo::checkout(), args),
        Command::Qemu(args) => qemu::run(&Repo::checkout(), args, &Host::from_process()),
        Command::Buildroot(args) => {
            buildroot_tree::run(args, &Repo::checkout(), &Host::from_process())
        }
    }
}
