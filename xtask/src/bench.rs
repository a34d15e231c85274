//! `cargo xtask bench`: speed and size claims, measured (flashing against dd and bmaptool copy;
//! the EROFS compression of the system slot).

pub mod boot;
pub mod erofs;
pub mod erofs_table;
pub mod load;
pub mod results;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use xshell::{cmd, Shell};

use indicatif::HumanBytes;

use load::current_load;
use results::{report, run_order, Timing, BERTH, BERTH_NO_VERIFY, BMAPTOOL, DD};

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
    /// Build the system slot's EROFS image from a root tree with each candidate compression;
    /// report its size and the time to read every file back on this machine and on an ARM
    /// build under qemu-arm, and the candidate U-Boot and Buildroot can use that reads soonest.
    Erofs(erofs::ErofsBench),
    /// Boot the QEMU twin several times and report, from QEMU's start, when U-Boot chose a slot,
    /// the root was mounted, dockerd was ready and the slot was marked good (min/median/max; TCG).
    Boot(boot::BootBench),
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

pub fn run(args: BenchArgs, repo: &crate::project::Repo, host: &crate::host::Host) -> Result<()> {
    match args.what {
        BenchWhat::Flash(bench) => flash(bench),
        BenchWhat::Erofs(bench) => erofs::run(bench),
        BenchWhat::Boot(bench) => boot::run(bench, repo, host),
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
    for tool in ["dd", "bmaptool"] {
        if which::which(tool).is_err() {
            bail!("{tool} is not installed (bmaptool: apt-get install bmap-tools)");
        }
    }
    let sh = Shell::new()?;
    // The bench's scratch folder, removed however the bench ends.
    let work_dir = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("could not create a folder in {}", args.dir.display()))?;
    let work = work_dir.path().to_path_buf();
    let image = work.join("bench.img");
    let map = work.join("bench.img.bmap");
    let target = work.join("target.img");
    let backing = work.join("loop-backing.img");
    eprintln!(
        "building a {} sparse image with {} of data in {}",
        HumanBytes(args.image_mib * MIB),
        HumanBytes(args.data_mib * MIB),
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
    if let Err(e) = work_dir.close() {
        eprintln!("warning: could not remove {}: {e}", work.display());
    }
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
}
