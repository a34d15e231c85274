//! `cargo xtask bench boot`: how long the twin takes from QEMU's start to each point of a boot,
//! over several boots of one card after its first (which also makes the data volume and is not
//! counted). QEMU emulates the Cortex-A15 in software (TCG), so the times say how the boot's
//! parts compare and whether a change made one slower, not how fast the board boots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::results::median;
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
}

/// The points of a boot and what the console says there (pure data).
pub const MILESTONES: &[(&str, &str)] = &[
    ("U-Boot chose a slot", qemu::suite::BOOTING_SLOT),
    // The kernel's line once the verity device's EROFS is the root.
    ("root mounted", "erofs: (device dm-0): mounted"),
    // systemd's status line names the unit by its Description.
    (
        "dockerd ready",
        "Started Docker Application Container Engine",
    ),
    // What `rauc status mark-good` prints, on the console through berth-rauc-mark-good.service.
    ("slot marked good", "marked slot "),
];
/// One boot, start to end.
const BOOT_DEADLINE: Duration = Duration::from_secs(1200);

pub fn run(bench: BootBench, repo: &Repo, host: &Host) -> Result<()> {
    let output = qemu::output_folder(repo, bench.output.as_deref(), host)?;
    let build = Build::find(&output.join("images"))?;
    let work = tempfile::Builder::new()
        .prefix("berth-bench-boot-")
        .tempdir()
        .context("could not make a scratch folder")?;
    let sh = host.shell()?;
    // No SSH: the console says when each point is reached.
    let mut twin = Twin::fresh(
        &sh,
        &build,
        DEFAULT_SSH_PORT,
        Path::new(""),
        work.path(),
        "bench",
    )?;
    println!("first boot (makes the data volume; not counted)…");
    boot_once(&mut twin).context("the first boot did not finish")?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); MILESTONES.len()];
    for run in 1..=bench.runs {
        twin.power_cut()?;
        let at = boot_once(&mut twin).with_context(|| format!("boot {run} did not finish"))?;
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
    println!("{}", report(&times, bench.runs));
    Ok(())
}

/// Power on and wait for each milestone in turn; the time of each from QEMU's start.
fn boot_once(twin: &mut Twin) -> Result<Vec<Duration>> {
    let started = Instant::now();
    twin.power_on()?;
    let mut from: Cursor = twin.since_power_on;
    let mut at = Vec::new();
    for (what, said) in MILESTONES {
        let left = BOOT_DEADLINE.saturating_sub(started.elapsed());
        let found = twin
            .expect(from, &[said], left)
            .with_context(|| format!("waiting for {what}"))?;
        at.push(started.elapsed());
        from = found.next;
    }
    Ok(at)
}

/// The table (pure): minimum, median and maximum of each milestone.
pub fn report(times: &[Vec<f64>], runs: u32) -> String {
    let mut out = format!(
        "Boot of the QEMU twin (TCG: software-emulated Cortex-A15; informative, not the board's \
         speed), {runs} boots:\n{:<22} {:>9} {:>9} {:>9}\n",
        "from QEMU start to", "min", "median", "max"
    );
    for ((what, _), values) in MILESTONES.iter().zip(times) {
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
        let r = report(&times, 3);
        assert!(r.contains("3 boots"), "{r}");
        assert!(
            r.contains("U-Boot chose a slot        1.0 s     2.0 s     3.0 s"),
            "{r}"
        );
        assert!(
            r.contains("slot marked good          60.0 s    61.0 s    62.0 s"),
            "{r}"
        );
        let order: Vec<usize> = MILESTONES.iter().map(|(w, _)| r.find(w).unwrap()).collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]));
    }
}
