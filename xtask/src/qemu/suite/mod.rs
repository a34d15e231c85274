//! `cargo xtask qemu --test`: the runtime suite. Each test drives the twin over its serial
//! console and SSH, every step with a deadline, and prints its result and time as it ends; the
//! last line is `N passed, N failed`. docs/testing.md maps each test to the claim it proves.
//!
//! The tests run in order on one twin, as a board lives: first boot, reboots, updates from A to
//! B and back, broken slots left behind, and last the power cuts, which start fresh cards.

mod docker;
mod power;
mod rauc_state;
mod system;
mod updates;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::build::Build;
use super::command::{Console, Machine};
use super::console::Cursor;
use super::disk;
use super::machine::{Ssh, Twin};
use super::report::{summary, Outcome, TestResult};
use super::QemuArgs;
use crate::project::Repo;

pub use rauc_state::RaucState;

/// From power-on to U-Boot's choice of a slot.
pub const UBOOT_DEADLINE: Duration = Duration::from_secs(180);
/// From U-Boot's choice to sshd answering; TCG on two host cores, a first boot formatting the
/// data volume.
pub const SSH_DEADLINE: Duration = Duration::from_secs(900);
/// From sshd answering to the slot marked good (Docker answering first).
pub const GOOD_DEADLINE: Duration = Duration::from_secs(600);
/// One command over SSH.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
/// `rauc install` of a whole slot, read back through dm-verity by the hook.
pub const INSTALL_DEADLINE: Duration = Duration::from_secs(1800);

/// What the console says when U-Boot has chosen (board/odroid-xu4/boot.cmd).
pub const BOOTING_SLOT: &str = "berth: booting slot ";

pub struct Suite<'a> {
    pub repo: &'a Repo,
    pub build: &'a Build,
    /// The Buildroot output folder (its host tools, the development signing pair).
    pub output: &'a Path,
    pub args: &'a QemuArgs,
    pub twin: Twin,
    /// The suite's scratch folder: cards, logs, bundles, the test container.
    pub work: PathBuf,
    pub sh: Shell,
    results: Vec<TestResult>,
}

/// The twin's own pieces in `work`: its card overlay, key medium and SSH known-hosts file.
fn new_twin(
    sh: &Shell,
    build: &Build,
    args: &QemuArgs,
    ssh_key: &Path,
    work: &Path,
    name: &str,
) -> Result<Twin> {
    let card = work.join(format!("{name}.qcow2"));
    let key = work.join(format!("{name}-key.img"));
    disk::overlay(sh, &build.card, &card)?;
    disk::key_medium(sh, &key)?;
    let known_hosts = work.join(format!("{name}.known_hosts"));
    let _ = std::fs::remove_file(&known_hosts);
    Ok(Twin::new(
        Machine {
            firmware: build.firmware.clone(),
            card,
            card_format: "qcow2",
            card_log: None,
            key_medium: Some(key),
            ssh_port: args.ssh_port,
            rtc_base: None,
            console: Console::Pipe,
        },
        Ssh {
            port: args.ssh_port,
            key: ssh_key.to_path_buf(),
            known_hosts,
        },
        work.join(format!("{name}.console.log")),
    ))
}

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
    let twin = new_twin(&sh, build, args, ssh_key, &work, "twin")?;
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

impl Suite<'_> {
    /// Whether `name` was asked for (`--only`).
    pub fn selected(&self, name: &str) -> bool {
        self.args.only.is_empty()
            || self
                .args
                .only
                .iter()
                .any(|part| name.contains(part.as_str()))
    }

    /// Run one test, print its line and keep its result.
    pub fn test(&mut self, name: &str, body: impl FnOnce(&mut Self) -> Result<()>) {
        if !self.selected(name) {
            return;
        }
        let started = Instant::now();
        let outcome = match body(self) {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        let result = TestResult {
            name: name.to_string(),
            outcome,
            time: started.elapsed(),
        };
        println!("{}", result.line());
        self.results.push(result);
    }

    /// Keep a result measured elsewhere (a power cut's own line).
    pub fn record(&mut self, result: TestResult) {
        println!("{}", result.line());
        self.results.push(result);
    }

    /// Power on and wait until `slot` (or any slot, with `None`) is booted, answers SSH and is
    /// marked good; returns the slot and when each of those happened.
    pub fn power_on_until_good(&mut self, slot: Option<char>) -> Result<BootTimes> {
        self.twin.power_on()?;
        let from = self.twin.since_power_on;
        self.until_good(from, slot)
    }

    /// From `from` on the console: U-Boot's choice, SSH, then the mark-good unit.
    pub fn until_good(&mut self, from: Cursor, slot: Option<char>) -> Result<BootTimes> {
        let started = Instant::now();
        let chosen = self.twin.expect(from, &[BOOTING_SLOT], UBOOT_DEADLINE)?;
        let booted = chosen.line[chosen.line.find(BOOTING_SLOT).unwrap() + BOOTING_SLOT.len()..]
            .chars()
            .next()
            .unwrap_or('?');
        if let Some(want) = slot {
            if booted != want {
                bail!("U-Boot chose slot {booted}, not {want}: {}", chosen.line);
            }
        }
        let chose_at = started.elapsed();
        self.twin.wait_for_ssh(SSH_DEADLINE)?;
        let ssh_at = started.elapsed();
        self.wait_for_unit("berth-rauc-mark-good.service", GOOD_DEADLINE)?;
        Ok(BootTimes {
            slot: booted,
            chose: chose_at,
            ssh: ssh_at,
            good: started.elapsed(),
        })
    }

    /// Wait until the oneshot `unit` has finished: fails if it failed.
    pub fn wait_for_unit(&mut self, unit: &str, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let state = self.twin.ssh_output(
                &format!("systemctl is-active {unit}"),
                None,
                COMMAND_DEADLINE,
            )?;
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            match state.as_str() {
                "active" => return Ok(()),
                "failed" => bail!(
                    "{unit} failed:\n{}",
                    self.twin
                        .ssh(
                            &format!("journalctl -b -u {unit} --no-pager -n 20"),
                            COMMAND_DEADLINE
                        )
                        .unwrap_or_default()
                ),
                _ if Instant::now() >= until => {
                    bail!("{unit} is still {state} after {} s", deadline.as_secs())
                }
                _ => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    }

    /// Reboot from the running system and wait for `slot` to be good again.
    pub fn reboot_until_good(&mut self, slot: Option<char>) -> Result<BootTimes> {
        let from = self.reboot()?;
        self.until_good(from, slot)
    }

    /// `systemctl reboot`; returns where the console stood, so waits see only the new boot.
    pub fn reboot(&mut self) -> Result<Cursor> {
        let from = self.twin.mark();
        // The connection may drop before ssh reports the exit status; the console tells.
        let _ = self
            .twin
            .ssh_output("systemctl reboot", None, COMMAND_DEADLINE);
        self.twin.expect(from, &["U-Boot 20"], UBOOT_DEADLINE)?;
        Ok(from)
    }

    /// Make sure the twin runs a good slot, powering it on if it is off.
    pub fn ensure_up(&mut self) -> Result<()> {
        if self.twin.is_running()
            && self
                .twin
                .ssh_output("true", None, COMMAND_DEADLINE)
                .is_ok_and(|o| o.status.success())
        {
            return Ok(());
        }
        let _ = self.twin.power_cut();
        self.power_on_until_good(None).map(|_| ())
    }

    pub fn ssh(&self, command: &str) -> Result<String> {
        self.twin.ssh(command, COMMAND_DEADLINE)
    }

    pub fn rauc_state(&self) -> Result<RaucState> {
        RaucState::read(&self.twin)
    }
}

/// When a boot reached each point, from power-on (or the reboot).
#[derive(Debug, Clone, Copy)]
pub struct BootTimes {
    pub slot: char,
    pub chose: Duration,
    pub ssh: Duration,
    pub good: Duration,
}

/// Fail with `what` unless `ok`.
pub fn check(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("{}", what())
    }
}
