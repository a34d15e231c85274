//! `cargo xtask bench boot`: how long the twin takes from QEMU's start to each point of a boot,
//! over several boots of one card after its first (which also makes the data volume and is not
//! counted). QEMU emulates the Cortex-A15 in software (TCG), so the times say how the boot's
//! parts compare and whether a change made one slower, not how fast the board boots.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;

use super::results::median;
use crate::apps::{self, units};
use crate::host::Host;
use crate::project::Repo;
use crate::qemu;
use crate::qemu::args::DEFAULT_SSH_PORT;
use crate::qemu::build::Build;
use crate::qemu::console::Cursor;
use crate::qemu::machine::Twin;

#[derive(Args, Debug)]
pub struct BootBench {
    /// Buildroot output folder of the build to boot (as `cargo xtask qemu --output`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Boots measured after the first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// For a build that declares apps: the private half of an SSH key the image authorizes, to
    /// ask Docker when the apps run (default: as `cargo xtask qemu`).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
}

/// The point timed over SSH for a build that declares apps: every app's container running.
pub const APPS_RUNNING: &str = "apps running";
/// How often Docker is asked about the apps.
const APPS_POLL: Duration = Duration::from_secs(1);

/// A point of a boot: its name and what the console says there.
#[derive(Debug, Clone, PartialEq)]
pub struct Milestone {
    pub what: &'static str,
    pub said: &'static str,
}

/// The points of a boot (pure), each timed on its own, as they need not come in this order. Only
/// lines that reach the console on every boot serve: systemd stops printing unit status once the
/// console's getty runs, and the apps' loader is silent when its images are already loaded, so a
/// running app has no line of its own: [`APPS_RUNNING`] is asked of Docker over SSH instead.
pub const MILESTONES: &[Milestone] = &[
    Milestone {
        what: "U-Boot chose a slot",
        said: qemu::suite::BOOTING_SLOT,
    },
    // The kernel's line once the verity device's EROFS is the root.
    Milestone {
        what: "root mounted",
        said: "erofs: (device dm-0): mounted",
    },
    // berth-rauc-mark-good's line once `docker info` answers.
    Milestone {
        what: "dockerd ready",
        said: "berth-rauc-mark-good: dockerd answers",
    },
    // What `rauc status mark-good` prints, on the console through berth-rauc-mark-good.service.
    Milestone {
        what: "slot marked good",
        said: "marked slot ",
    },
];

/// One boot, start to end.
const BOOT_DEADLINE: Duration = Duration::from_secs(1200);
/// How often the console is looked at while a boot is timed.
const POLL: Duration = Duration::from_millis(100);

pub fn run(bench: BootBench, repo: &Repo, host: &Host) -> Result<()> {
    let output = qemu::output_folder(repo, bench.output.as_deref(), host)?;
    let build = Build::find(&output.join("images"))?;
    let milestones = MILESTONES;
    let containers: Vec<String> = declared_apps(&output)?
        .iter()
        .map(|name| units::container_name(name))
        .collect();
    let ssh_key = if containers.is_empty() {
        PathBuf::new()
    } else {
        qemu::ssh_key(bench.ssh_key, host.home.as_deref())?
    };
    let mut names: Vec<&str> = milestones.iter().map(|m| m.what).collect();
    if !containers.is_empty() {
        names.push(APPS_RUNNING);
    }
    let work = tempfile::Builder::new()
        .prefix("berth-bench-boot-")
        .tempdir()
        .context("could not make a scratch folder")?;
    let sh = host.shell()?;
    // The console says when each point is reached; SSH is for the apps only.
    let mut twin = Twin::fresh(
        &sh,
        &build,
        DEFAULT_SSH_PORT,
        &ssh_key,
        work.path(),
        "bench",
    )?;
    println!("first boot (makes the data volume; not counted)…");
    boot_once(&mut twin, milestones, &containers).context("the first boot did not finish")?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for run in 1..=bench.runs {
        twin.power_cut()?;
        let at = boot_once(&mut twin, milestones, &containers)
            .with_context(|| format!("boot {run} did not finish"))?;
        let line: Vec<String> = at
            .iter()
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .collect();
        println!("boot {run}: {}", line.join(", "));
        for (i, d) in at.iter().enumerate() {
            times[i].push(d.as_secs_f64());
        }
    }
    twin.power_cut()?;
    println!("{}", report(&names, &times, bench.runs));
    Ok(())
}

/// The apps the build declares: the names in the loader's list in its root.
fn declared_apps(output: &Path) -> Result<Vec<String>> {
    let list = output
        .join("target")
        .join(apps::ARCHIVE_DIR)
        .join(apps::LIST_FILE);
    match std::fs::read_to_string(&list) {
        Ok(text) => Ok(apps::parse_list(&text)
            .into_iter()
            .map(|(name, _)| name)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("could not read {}", list.display())),
    }
}

/// Whether Docker on the twin says every one of `containers` is running.
fn apps_run(twin: &Twin, containers: &[String]) -> bool {
    let command = format!(
        "docker inspect --format '{{{{.State.Running}}}}' {}",
        containers.join(" ")
    );
    twin.ssh(&command, APPS_POLL * 10)
        .is_ok_and(|said| said.lines().filter(|l| l.trim() == "true").count() == containers.len())
}

/// Power on and look at the console until every milestone was reached; when each was first seen.
/// Then, for `containers`, ask Docker every second until they all run (so that point is timed to
/// about a second plus an SSH round trip).
fn boot_once(
    twin: &mut Twin,
    milestones: &[Milestone],
    containers: &[String],
) -> Result<Vec<Duration>> {
    let started = Instant::now();
    twin.power_on()?;
    let from: Cursor = twin.since_power_on;
    let mut at: Vec<Option<Duration>> = vec![None; milestones.len()];
    while at.iter().any(Option::is_none) {
        for (m, seen) in milestones.iter().zip(at.iter_mut()) {
            if seen.is_none() && twin.find(from, &[m.said]).is_some() {
                *seen = Some(started.elapsed());
            }
        }
        let missing: Vec<&str> = milestones
            .iter()
            .zip(&at)
            .filter(|(_, seen)| seen.is_none())
            .map(|(m, _)| m.what)
            .collect();
        if missing.is_empty() {
            break;
        }
        ensure!(
            twin.is_running(),
            "QEMU ended before {}; the console's last lines:\n{}",
            missing.join(", "),
            twin.tail(15)
        );
        ensure!(
            started.elapsed() < BOOT_DEADLINE,
            "no {} within {} s; the console's last lines:\n{}",
            missing.join(", "),
            BOOT_DEADLINE.as_secs(),
            twin.tail(15)
        );
        thread::sleep(POLL);
    }
    let mut at: Vec<Duration> = at.into_iter().flatten().collect();
    if !containers.is_empty() {
        loop {
            if apps_run(twin, containers) {
                at.push(started.elapsed());
                break;
            }
            ensure!(
                twin.is_running() && started.elapsed() < BOOT_DEADLINE,
                "Docker did not run {} within {} s",
                containers.join(", "),
                BOOT_DEADLINE.as_secs()
            );
            thread::sleep(APPS_POLL);
        }
    }
    Ok(at)
}

/// The table (pure): minimum, median and maximum of each milestone.
pub fn report(names: &[&str], times: &[Vec<f64>], runs: u32) -> String {
    let mut out = format!(
        "Boot of the QEMU twin (TCG: software-emulated Cortex-A15; informative, not the board's \
         speed), {runs} boots:\n{:<22} {:>9} {:>9} {:>9}\n",
        "from QEMU start to", "min", "median", "max"
    );
    for (what, values) in names.iter().zip(times) {
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let med = median(values).unwrap_or(f64::NAN);
        out.push_str(&format!(
            "{what:<22} {min:>7.1} s {med:>7.1} s {max:>7.1} s\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_min_median_and_max_of_each_milestone_in_order() {
        let times = vec![
            vec![3.0, 1.0, 2.0],
            vec![10.0, 12.0, 11.0],
            vec![50.0; 3],
            vec![60.0, 61.0, 62.0],
        ];
        let names: Vec<&str> = MILESTONES.iter().map(|m| m.what).collect();
        let r = report(&names, &times, 3);
        assert!(r.contains("3 boots"), "{r}");
        assert!(
            r.contains("U-Boot chose a slot        1.0 s     2.0 s     3.0 s"),
            "{r}"
        );
        assert!(
            r.contains("slot marked good          60.0 s    61.0 s    62.0 s"),
            "{r}"
        );
        let order: Vec<usize> = MILESTONES.iter().map(|m| r.find(m.what).unwrap()).collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]));
    }
}
