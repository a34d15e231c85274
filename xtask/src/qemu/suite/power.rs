//! Power cuts: QEMU killed (SIGKILL) at seeded random moments during `rauc install`, during the
//! boot script's write of the boot counter, and during the first boot's LUKS format. After each,
//! the next boots must reach a good slot, with the boot partition readable and /data mounted.
//!
//! Two models of the cut, each cut naming its own:
//! - `sigkill`: QEMU is killed. Every write QEMU already handed to the host is kept, which is
//!   kinder than an SD card.
//! - `write-log-prefix`: the stricter one. The card is written through QEMU's `blklogwrites`,
//!   QEMU is killed once the first boot has made its volume, and only a random prefix of the
//!   logged writes is replayed onto the card as it was at power-on ([`crate::qemu::writelog`]):
//!   everything after that point is lost, flushed or not, as if the medium had stopped there.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::harness::{check, Suite, BOOTING_SLOT, COMMAND_DEADLINE, UBOOT_DEADLINE};
use super::system::FIRST_BOOT_FORMAT;
use crate::qemu::machine::{ssh_options, Twin};
use crate::qemu::report::{Outcome, TestResult};
use crate::qemu::{disk, writelog};

/// Where a cut falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// While `rauc install` writes and checks the other slot.
    RaucInstall,
    /// Right after U-Boot announced its choice, while boot.scr writes the older copy of the boot
    /// state (it does so at once: the window is short, so that cuts land in the write).
    BootCounterWrite,
    /// While the first boot makes the LUKS2 volume and its file system.
    FirstBootFormat,
}

impl Moment {
    const ALL: [Moment; 3] = [
        Moment::RaucInstall,
        Moment::BootCounterWrite,
        Moment::FirstBootFormat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Moment::RaucInstall => "rauc-install",
            Moment::BootCounterWrite => "boot-counter-write",
            Moment::FirstBootFormat => "first-boot-luks-format",
        }
    }

    /// The window the cut is drawn from, after the moment's start is seen.
    fn window(self) -> Duration {
        match self {
            Moment::RaucInstall => Duration::from_secs(240),
            Moment::BootCounterWrite => Duration::from_millis(250),
            Moment::FirstBootFormat => Duration::from_secs(60),
        }
    }
}

/// How the cut loses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Sigkill,
    WriteLogPrefix,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Sigkill => "sigkill",
            Model::WriteLogPrefix => "write-log-prefix",
        }
    }
}

/// SplitMix64: the cuts' moments from one printed seed, so a run can be repeated. Pure.
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in [0, `max`), to the millisecond.
    pub fn within(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next_u64() % ms)
    }
}

/// The plan (pure): `count` cuts, the moments taken in turn; every other first-boot cut uses
/// the write log, whose prefix can fall anywhere in the first boot's writes (the boot counter,
/// the partition's growth, the LUKS2 header, the file system, the first state).
pub fn plan(count: u32) -> Vec<(Moment, Model)> {
    (0..count as usize)
        .map(|i| {
            let moment = Moment::ALL[i % Moment::ALL.len()];
            let logged =
                moment == Moment::FirstBootFormat && (i / Moment::ALL.len()).is_multiple_of(2);
            (
                moment,
                if logged {
                    Model::WriteLogPrefix
                } else {
                    Model::Sigkill
                },
            )
        })
        .collect()
}

pub fn all(s: &mut Suite, ssh_key: &Path) {
    // `--only power/` runs every cut; `--only boot-counter` (a moment's name) only those cuts.
    if !s.selected("power/") && !Moment::ALL.iter().any(|m| s.selected(m.name())) {
        return;
    }
    let seed = s.args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "power cuts: {} with seed {seed} (--seed {seed} repeats them)",
        s.args.power_cuts
    );
    let mut random = Seeded::new(seed);
    for (i, (moment, model)) in plan(s.args.power_cuts).into_iter().enumerate() {
        let started = Instant::now();
        let delay = random.within(moment.window());
        // Drawn for every logged cut, run or not, so that a seed gives the same cuts either way.
        let replay_seed = (model == Model::WriteLogPrefix).then(|| random.next_u64());
        let name = format!(
            "power/cut-{:02}-{}-{}-at-{:.3}s",
            i + 1,
            model.name(),
            moment.name(),
            delay.as_secs_f64()
        );
        if !s.selected(&name) {
            continue;
        }
        let result = match replay_seed {
            None => cut_once(s, ssh_key, moment, delay, i),
            Some(seed) => logged_first_boot(s, ssh_key, delay, seed, i),
        };
        let outcome = match result {
            Ok(note) => {
                println!("     {note}");
                Outcome::Passed
            }
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        s.record(TestResult {
            name,
            outcome,
            time: started.elapsed(),
        });
    }
}

/// One cut and the boots after it; returns what happened, for the log.
fn cut_once(
    s: &mut Suite,
    ssh_key: &Path,
    moment: Moment,
    delay: Duration,
    index: usize,
) -> Result<String> {
    match moment {
        Moment::FirstBootFormat => {
            // A card of its own, never booted: the first boot is what is cut.
            let name = format!("cut-{index:02}");
            let mut twin = Twin::fresh(&s.sh, s.build, s.args.ssh_port, ssh_key, &s.work, &name)?;
            let _ = s.twin.power_cut();
            twin.power_on()?;
            let from = twin.since_power_on;
            let seen = twin.expect(from, &[FIRST_BOOT_FORMAT], super::harness::SSH_DEADLINE)?;
            std::thread::sleep(delay);
            let before_cut = twin.said_since(seen.next);
            twin.power_cut()?;
            let result = after_cut_on(s, twin);
            let made = if before_cut.contains("created and opened") {
                "after"
            } else {
                "before"
            };
            result.map(|slot| {
                format!("cut {made} the volume was complete; then slot {slot} good, /data mounted")
            })
        }
        Moment::BootCounterWrite => {
            let _ = s.twin.power_cut();
            s.twin.power_on()?;
            let from = s.twin.since_power_on;
            s.twin.expect(from, &[BOOTING_SLOT], UBOOT_DEADLINE)?;
            std::thread::sleep(delay);
            s.twin.power_cut()?;
            let next_boot = s.twin.mark();
            let slot = after_cut(s)?;
            // What the boot script says of a copy whose CRC fails (board/odroid-xu4/boot.cmd).
            let torn = s
                .twin
                .said_since(next_boot)
                .contains("is unreadable or corrupt");
            let copies = if torn {
                "the next boot found the copy being written spoiled and read the other"
            } else {
                "both copies of the boot state whole"
            };
            Ok(format!("{copies}; then slot {slot} good, /data mounted"))
        }
        Moment::RaucInstall => {
            s.ensure_up()?;
            let bundle = s
                .build
                .bundle
                .clone()
                .context("the build made no update bundle")?;
            let name = bundle.file_name().unwrap().to_string_lossy().to_string();
            let remote = format!("/data/{name}");
            let present =
                s.twin
                    .ssh_output(&format!("test -s {remote}"), None, COMMAND_DEADLINE)?;
            if !present.status.success() {
                super::updates::upload(s, &bundle)?;
            }
            let mut install = Command::new("ssh")
                .args(ssh_options(&s.twin.ssh))
                .arg("root@127.0.0.1")
                .arg(format!("rauc install {remote}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("could not start rauc install over SSH")?;
            std::thread::sleep(delay);
            let finished = matches!(install.try_wait(), Ok(Some(_)));
            s.twin.power_cut()?;
            let _ = install.kill();
            let _ = install.wait();
            let when = if finished {
                "after the install ended"
            } else {
                "during the install"
            };
            after_cut(s).map(|slot| format!("cut {when}; then slot {slot} good, /data mounted"))
        }
    }
}

/// The stricter model: a fresh card's first boot written through a write log, QEMU killed
/// `delay` after the volume was made, then only a random prefix of the log (drawn with `draw`)
/// replayed onto the card as it was at power-on, and that card booted.
fn logged_first_boot(
    s: &mut Suite,
    ssh_key: &Path,
    delay: Duration,
    draw: u64,
    index: usize,
) -> Result<String> {
    let name = format!("cut-{index:02}");
    let mut twin = Twin::fresh(&s.sh, s.build, s.args.ssh_port, ssh_key, &s.work, &name)?;
    let _ = std::fs::remove_file(&twin.machine.card);
    let logged_card = s.work.join(format!("{name}.logged.img"));
    let log = s.work.join(format!("{name}.writes.log"));
    let replayed = s.work.join(format!("{name}.replayed.img"));
    disk::raw_copy(&s.sh, &s.build.card, &logged_card)?;
    std::fs::File::create(&log).with_context(|| format!("could not make {}", log.display()))?;
    twin.machine.card = logged_card.clone();
    twin.machine.card_format = "raw";
    twin.machine.card_log = Some(log.clone());
    let _ = s.twin.power_cut();
    twin.power_on()?;
    let from = twin.since_power_on;
    twin.expect(
        from,
        &["berth-data-crypt: created and opened"],
        super::harness::SSH_DEADLINE,
    )?;
    std::thread::sleep(delay);
    twin.power_cut()?;
    let _ = std::fs::remove_file(&logged_card);
    let entries = writelog::read(&log)?;
    let upto = (draw % (entries.entries.len() as u64 + 1)) as usize;
    disk::raw_copy(&s.sh, &s.build.card, &replayed)?;
    let stats = writelog::replay(&log, &entries, upto, &replayed)?;
    let _ = std::fs::remove_file(&log);
    twin.machine.card = replayed.clone();
    twin.machine.card_log = None;
    let result = after_cut_on(s, twin);
    let kept = format!(
        "{upto} of {} logged writes and flushes kept ({} writes, {} bytes, {} flushes)",
        entries.entries.len(),
        stats.writes,
        stats.bytes,
        stats.flushes
    );
    result.map(|slot| format!("{kept}; then slot {slot} good, /data mounted"))
}

/// [`after_cut`] on a twin with a card of its own, which is then dropped with its files.
fn after_cut_on(s: &mut Suite, twin: Twin) -> Result<char> {
    let main = std::mem::replace(&mut s.twin, twin);
    let result = after_cut(s);
    let mut cut = std::mem::replace(&mut s.twin, main);
    let _ = cut.power_cut();
    for file in [Some(&cut.machine.card), cut.machine.key_medium.as_ref()]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// Power on after a cut: a slot must be booted and marked good, the boot partition readable
/// and /data mounted. Returns the slot.
fn after_cut(s: &mut Suite) -> Result<char> {
    let t = s.power_on_until_good(None)?;
    let boot = s.ssh("ls /boot/firmware")?;
    check(
        boot.contains("boot.scr") && boot.contains(&format!("slot-{}.env", t.slot)),
        || format!("/boot/firmware lists {boot:?}"),
    )?;
    let data = s.ssh("findmnt -n -o SOURCE /data")?;
    check(data.trim() == "/dev/mapper/berth-data", || {
        format!("/data is {data:?}")
    })?;
    // Linux reads the boot state as RAUC does (mark-good, which wrote it, already passed).
    s.ssh("fw_printenv BOOT_ORDER")?;
    Ok(t.slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_the_same_moments_and_another_seed_others() {
        let draw = |seed| {
            let mut r = Seeded::new(seed);
            (0..5)
                .map(|_| r.within(Duration::from_secs(60)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(9).iter().all(|d| *d < Duration::from_secs(60)));
    }

    #[test]
    fn twenty_cuts_spread_over_the_three_moments_and_both_models() {
        let p = plan(20);
        assert_eq!(p.len(), 20);
        for m in Moment::ALL {
            assert!(p.iter().filter(|(x, _)| *x == m).count() >= 6, "{m:?}");
        }
        let logged = p
            .iter()
            .filter(|(_, model)| *model == Model::WriteLogPrefix)
            .count();
        assert!((3..=4).contains(&logged), "{p:?}");
        assert!(p
            .iter()
            .all(|(m, model)| *model == Model::Sigkill || *m == Moment::FirstBootFormat));
    }
}
