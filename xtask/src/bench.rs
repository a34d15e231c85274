//! `cargo xtask bench`: speed claims, measured (flashing against dd and bmaptool copy).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use xshell::{cmd, Shell};

use crate::bmap::human_size;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Time Berth (with and without read-back), `dd bs=4M conv=fsync` and `bmaptool copy` writing
    /// the same sparse image, several runs each; report medians and Berth's ratios.
    Flash(FlashBench),
}

#[derive(Args)]
pub struct FlashBench {
    /// Folder for the image and targets (needs about image size + data size free).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Image size in MiB.
    #[arg(long, default_value_t = 2048)]
    pub image_mib: u64,
    /// MiB of data in the image (the rest are holes).
    #[arg(long, default_value_t = 320)]
    pub data_mib: u64,
    /// Skip the loop-device runs even when root.
    #[arg(long)]
    pub no_loop: bool,
    /// Times each tool is run per target; the report gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchWhat::Flash(bench) => flash(bench),
    }
}

const MIB: u64 = 1 << 20;

/// Where the data goes: the first MiB (partition table and bootloader, as in sdcard.img), then
/// equal extents spread evenly with holes between. Pure, so the layout is tested.
pub fn data_extents(image_mib: u64, data_mib: u64, pieces: u64) -> Vec<(u64, u64)> {
    let mut extents = vec![(0, MIB)];
    let rest = data_mib.saturating_sub(1);
    if rest == 0 || pieces == 0 {
        return extents;
    }
    let piece = rest.div_ceil(pieces);
    let stride = (image_mib - 1) / pieces;
    for i in 0..pieces {
        let start = 1 + i * stride + (stride - piece.min(stride)) / 2;
        let len = piece.min(rest - (i * piece).min(rest)).min(stride);
        if len > 0 {
            extents.push((start * MIB, (start + len) * MIB));
        }
    }
    extents
}

fn fill(buf: &mut [u8], seed: &mut u64) {
    for word in buf.chunks_exact_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        word.copy_from_slice(&seed.to_le_bytes());
    }
}

fn build_image(path: &Path, image_mib: u64, data_mib: u64) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.set_len(image_mib * MIB)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut seed = 0x2545_f491_4f6c_dd1d;
    for (start, end) in data_extents(image_mib, data_mib, 12) {
        for offset in (start..end).step_by(MIB as usize) {
            fill(&mut buf, &mut seed);
            file.write_all_at(&buf, offset)
                .with_context(|| format!("could not write {}", path.display()))?;
        }
    }
    file.sync_all()?;
    Ok(())
}

const DD: &str = "dd bs=4M conv=fsync";
const BMAPTOOL: &str = "bmaptool copy";
const BERTH: &str = "berth flash";
const BERTH_NO_VERIFY: &str = "berth flash --no-verify";
const TOOLS: [&str; 4] = [DD, BMAPTOOL, BERTH, BERTH_NO_VERIFY];
/// Berth's two modes, each compared with the two other tools.
const COMPARISONS: [(&str, &str); 4] = [
    (BERTH, BMAPTOOL),
    (BERTH, DD),
    (BERTH_NO_VERIFY, BMAPTOOL),
    (BERTH_NO_VERIFY, DD),
];

#[derive(Debug, Clone, PartialEq)]
struct Timing {
    tool: &'static str,
    target: &'static str,
    seconds: f64,
}

/// The tools in the order run `run` uses: rotated each run, so no tool always goes first (after
/// the image was just read) or always follows the same one.
fn run_order(run: u32) -> Vec<&'static str> {
    let mut order = TOOLS.to_vec();
    order.rotate_left(run as usize % TOOLS.len());
    order
}

/// A fresh sparse backing file attached to a loop device, detached on drop.
struct LoopDevice<'a> {
    sh: &'a Shell,
    dev: String,
}

impl<'a> LoopDevice<'a> {
    fn attach(sh: &'a Shell, backing: &Path, size: u64) -> Result<Self> {
        let _ = std::fs::remove_file(backing);
        std::fs::File::create(backing)?.set_len(size)?;
        let dev = cmd!(sh, "losetup -f --show {backing}")
            .quiet()
            .read()
            .context("losetup failed")?;
        Ok(LoopDevice { sh, dev })
    }
}

impl Drop for LoopDevice<'_> {
    fn drop(&mut self) {
        let dev = &self.dev;
        let _ = cmd!(self.sh, "losetup -d {dev}").quiet().run();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Flushes and empties the page cache so each tool reads the image from disk as on a first
/// flash; the reason when it cannot.
fn drop_caches() -> std::result::Result<(), String> {
    if !is_root() {
        return Err("not root".into());
    }
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("writing /proc/sys/vm/drop_caches failed: {e}"))
}

/// The 1-minute load average from /proc/loadavg's text.
fn load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

fn current_load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(load_average)
        .map_or_else(|| "unknown".to_string(), |load| format!("{load:.2}"))
}

/// Everything one tool run needs.
struct Bench<'a> {
    sh: &'a Shell,
    image: PathBuf,
    map: PathBuf,
    berth: PathBuf,
    /// Why the page cache could not be dropped, once that is known.
    cache_kept: Option<String>,
}

impl Bench<'_> {
    /// Runs `tool` writing the image to `target` (a device when `device`), timed from process
    /// start to exit, after dropping the page cache.
    fn time(&mut self, tool: &'static str, target: &Path, device: bool) -> Result<f64> {
        if self.cache_kept.is_none() {
            if let Err(reason) = drop_caches() {
                self.cache_kept = Some(reason);
            }
        }
        let (sh, image, map, berth) = (self.sh, &self.image, &self.map, &self.berth);
        let berth_target: &[&str] = if device {
            &["--allow-non-removable"]
        } else {
            &["--to-file"]
        };
        let command = match tool {
            DD => cmd!(sh, "dd if={image} of={target} bs=4M conv=fsync status=none"),
            BMAPTOOL => cmd!(sh, "bmaptool -q copy --bmap {map} {image} {target}"),
            BERTH => cmd!(sh, "{berth} flash {image} {target} --yes {berth_target...}"),
            BERTH_NO_VERIFY => cmd!(
                sh,
                "{berth} flash {image} {target} --yes --no-verify {berth_target...}"
            ),
            _ => unreachable!("TOOLS lists every tool"),
        };
        let started = Instant::now();
        command
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .with_context(|| format!("{tool} writing to {} failed", target.display()))?;
        Ok(started.elapsed().as_secs_f64())
    }
}

fn flash(args: FlashBench) -> Result<()> {
    if args.data_mib + 1 >= args.image_mib {
        bail!("--data-mib must be well below --image-mib for a sparse image");
    }
    let sh = Shell::new()?;
    for tool in ["dd", "bmaptool"] {
        if cmd!(sh, "which {tool}")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            bail!("{tool} is not installed (bmaptool: apt-get install bmap-tools)");
        }
    }
    let work_dir = WorkDir::create(&args.dir)?;
    let work = work_dir.0.clone();
    let image = work.join("bench.img");
    let map = work.join("bench.img.bmap");
    let target = work.join("target.img");
    let backing = work.join("loop-backing.img");
    eprintln!(
        "building a {} sparse image with {} of data in {}",
        human_size(args.image_mib * MIB),
        human_size(args.data_mib * MIB),
        work.display()
    );
    build_image(&image, args.image_mib, args.data_mib)?;
    crate::bmap::write_for_image(&image, &map)?;
    // Where the cache cannot be dropped, every tool should at least find the image cached.
    crate::util::sha256_file(&image)?;
    let size = args.image_mib * MIB;
    let load_before = current_load();
    let mut bench = Bench {
        sh: &sh,
        image,
        map,
        berth: std::env::current_exe().context("could not find the xtask binary")?,
        cache_kept: None,
    };

    let loop_note = if args.no_loop {
        Some("loop device: skipped (--no-loop)")
    } else if !is_root() {
        Some("loop device: skipped (needs root)")
    } else {
        None
    };
    let mut timings = Vec::new();
    for run in 0..args.runs {
        eprintln!("run {} of {}:", run + 1, args.runs);
        for tool in run_order(run) {
            let _ = std::fs::remove_file(&target);
            let seconds = bench.time(tool, &target, false)?;
            eprintln!("  {tool:<24} -> file        {seconds:>7.2} s");
            timings.push(Timing {
                tool,
                target: "file",
                seconds,
            });
        }
        let _ = std::fs::remove_file(&target);
        if loop_note.is_some() {
            continue;
        }
        for tool in run_order(run) {
            let seconds = {
                let lo = LoopDevice::attach(&sh, &backing, size)?;
                bench.time(tool, Path::new(&lo.dev), true)?
            };
            eprintln!("  {tool:<24} -> loop device {seconds:>7.2} s");
            timings.push(Timing {
                tool,
                target: "loop device",
                seconds,
            });
        }
        let _ = std::fs::remove_file(&backing);
    }
    if let Some(note) = loop_note {
        eprintln!("{note}");
    }
    let cache = match &bench.cache_kept {
        None => "page cache dropped before every run".to_string(),
        Some(reason) => format!(
            "page cache NOT dropped ({reason}): the image was read once first, so every tool finds it cached"
        ),
    };
    drop(work_dir);
    let conditions = format!(
        "{} MiB sparse image, {} MiB of data, {} run(s) per tool in rotating order, {cache}; \
         1-minute load average {load_before} before, {} after",
        args.image_mib,
        args.data_mib,
        args.runs,
        current_load()
    );
    println!("{}", report(&timings, &conditions));
    Ok(())
}

/// The median of some times (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn times_of(timings: &[Timing], tool: &str, target: &str) -> Vec<f64> {
    timings
        .iter()
        .filter(|t| t.tool == tool && t.target == target)
        .map(|t| t.seconds)
        .collect()
}

/// Targets in the order first timed.
fn targets(timings: &[Timing]) -> Vec<&'static str> {
    let mut seen = Vec::new();
    for t in timings {
        if !seen.contains(&t.target) {
            seen.push(t.target);
        }
    }
    seen
}

/// The results: per tool and target the median and every run, then Berth's medians as a
/// fraction of the other tools' (below 1.00 means Berth was faster).
fn report(timings: &[Timing], conditions: &str) -> String {
    let mut out = format!(
        "flash benchmark: {conditions}\n\n| tool | target | median s | runs s |\n|---|---|---:|---|\n"
    );
    for target in targets(timings) {
        for tool in TOOLS {
            let times = times_of(timings, tool, target);
            let Some(mid) = median(&times) else { continue };
            let runs: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
            out.push_str(&format!(
                "| {tool} | {target} | {mid:.2} | {} |\n",
                runs.join(" ")
            ));
        }
    }
    out.push_str(
        "\n| target | berth mode | vs | ratio of medians | berth is |\n|---|---|---|---:|---|\n",
    );
    for target in targets(timings) {
        for (berth, other) in COMPARISONS {
            let (Some(b), Some(o)) = (
                median(&times_of(timings, berth, target)),
                median(&times_of(timings, other, target)),
            ) else {
                continue;
            };
            let ratio = b / o.max(1e-6);
            let verdict = if ratio <= 1.0 {
                format!("{:.1}x faster", 1.0 / ratio.max(1e-6))
            } else {
                format!("{ratio:.2}x slower")
            };
            out.push_str(&format!(
                "| {target} | {berth} | {other} | {ratio:.2} | {verdict} |\n"
            ));
        }
    }
    out
}

/// The bench's scratch folder, removed however the bench ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(parent: &Path) -> Result<Self> {
        let dir = parent.join(format!("berth-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_hold_the_requested_data_with_holes_between() {
        let extents = data_extents(2048, 320, 12);
        let total: u64 = extents.iter().map(|(s, e)| e - s).sum();
        assert!((319 * MIB..=321 * MIB).contains(&total), "{total}");
        assert_eq!(extents[0], (0, MIB));
        for pair in extents.windows(2) {
            assert!(pair[0].1 < pair[1].0, "extents touch or overlap: {pair:?}");
        }
        assert!(extents.last().unwrap().1 <= 2048 * MIB);
    }

    fn timing(tool: &'static str, target: &'static str, seconds: f64) -> Timing {
        Timing {
            tool,
            target,
            seconds,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn every_tool_leads_once_in_four_runs() {
        let firsts: Vec<&str> = (0..4).map(|run| run_order(run)[0]).collect();
        for tool in TOOLS {
            assert_eq!(
                firsts.iter().filter(|&&t| t == tool).count(),
                1,
                "{firsts:?}"
            );
            assert!((0..4).all(|run| run_order(run).contains(&tool)));
        }
    }

    #[test]
    fn load_average_is_the_first_field() {
        assert_eq!(load_average("2.29 2.11 2.32 3/812 16269\n"), Some(2.29));
        assert_eq!(load_average(""), None);
    }

    #[test]
    fn report_gives_medians_and_ratios_per_target() {
        let timings = [
            timing(DD, "file", 12.0),
            timing(DD, "file", 14.0),
            timing(DD, "file", 13.0),
            timing(BMAPTOOL, "file", 1.0),
            timing(BMAPTOOL, "file", 3.0),
            timing(BMAPTOOL, "file", 2.0),
            timing(BERTH, "file", 1.5),
            timing(BERTH, "file", 0.5),
            timing(BERTH, "file", 1.0),
            timing(BERTH_NO_VERIFY, "file", 0.5),
            timing(BERTH_NO_VERIFY, "loop device", 4.0),
            timing(BMAPTOOL, "loop device", 2.0),
        ];
        let text = report(&timings, "test");
        assert!(
            text.contains("| dd bs=4M conv=fsync | file | 13.00 | 12.00 14.00 13.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| berth flash | file | 1.00 | 1.50 0.50 1.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| file | berth flash | bmaptool copy | 0.50 | 2.0x faster |"),
            "{text}"
        );
        assert!(
            text.contains("| file | berth flash | dd bs=4M conv=fsync | 0.08 | 13.0x faster |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| file | berth flash --no-verify | bmaptool copy | 0.25 | 4.0x faster |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| loop device | berth flash --no-verify | bmaptool copy | 2.00 | 2.00x slower |"
            ),
            "{text}"
        );
        // No berth default timing on the loop device: no row compares it.
        assert!(!text.contains("| loop device | berth flash | "), "{text}");
    }
}
