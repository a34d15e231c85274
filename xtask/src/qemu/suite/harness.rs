//! What every test of the suite works with: the twin and its build, the runner that times a
//! test and keeps its result, the waits for a boot to be good, and the deadlines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xshell::Shell;

use crate::project::Repo;
use crate::qemu::args::QemuArgs;
use crate::qemu::build::Build;
use crate::qemu::console::Cursor;
use crate::qemu::machine::Twin;
use crate::qemu::report::{Outcome, TestResult};

use super::rauc_state::RaucState;

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
    pub results: Vec<TestResult>,
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

    /// [`Self::power_on_until_good`] with the real-time clock starting at `rtc` (QEMU's
    /// `-rtc base=`), for this power-on only.
    pub fn power_on_until_good_with_clock(
        &mut self,
        rtc: &str,
        slot: Option<char>,
    ) -> Result<BootTimes> {
        self.twin.machine.rtc_base = Some(rtc.to_string());
        let booted = self.power_on_until_good(slot);
        self.twin.machine.rtc_base = None;
        booted
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

    /// `rauc status` and the boot counters, read on the twin.
    pub fn rauc_state(&self) -> Result<RaucState> {
        let shell = self.ssh("rauc status --output-format=shell")?;
        let env = self.ssh("fw_printenv")?;
        RaucState::parse(&shell, &env)
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
