//! `cargo xtask qemu --test`: the runtime suite. Each test drives the twin over its serial
//! console and SSH, every step with a deadline, and prints its result and time as it ends; the
//! last line is `N passed, N failed`. docs/testing.md maps each test to the claim it proves.
//!
//! The tests run in order on one twin, as a board lives: first boot, reboots, updates from A to
//! B and back, broken slots left behind, the clock at 1970, and last the power cuts, which start
//! fresh cards.

mod docker;
pub mod harness;
mod power;
pub mod rauc_state;
mod system;
mod updates;

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::project::Repo;
use crate::qemu::args::QemuArgs;
use crate::qemu::build::Build;
use crate::qemu::machine::Twin;
use crate::qemu::report::{summary, Outcome};
use harness::Suite;

pub use harness::BOOTING_SLOT;

pub fn run(
    repo: &Repo,
    args: &QemuArgs,
    build: &Build,
    output: &Path,
    ssh_key: &Path,
) -> Result<()> {
    let sh = Shell::new().context("could not start a shell")?;
    let work_dir = tempfile::Builder::new()
        .prefix("berth-twin-")
        .tempdir()
        .context("could not make the suite's scratch folder")?;
    let work = work_dir.path().to_path_buf();
    println!(
        "twin suite: {} (console logs in {})",
        build.images.display(),
        work.display()
    );
    let twin = Twin::fresh(&sh, build, args.ssh_port, ssh_key, &work, "twin")?;
    let mut suite = Suite {
        repo,
        build,
        output,
        args,
        twin,
        work,
        sh,
        results: Vec::new(),
    };
    system::boot_and_data(&mut suite);
    docker::all(&mut suite);
    updates::all(&mut suite);
    system::time(&mut suite);
    power::all(&mut suite, ssh_key);
    let _ = suite.twin.power_cut();
    let line = summary(&suite.results);
    println!("{line}");
    if suite.results.iter().any(|r| r.outcome != Outcome::Passed) {
        // Keep the console logs of a failed run.
        let kept = work_dir.keep();
        println!("console logs kept in {}", kept.display());
        bail!("the twin suite failed: {line}");
    }
    Ok(())
}
