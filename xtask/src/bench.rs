//! `cargo xtask bench`: speed claims, measured (flashing against dd and bmaptool copy).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Time Berth, `dd bs=4M conv=fsync` and `bmaptool copy` writing the same sparse image.
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

struct Timing {
    tool: &'static str,
    target: &'static str,
    time: Duration,
}

fn timed(
    tool: &'static str,
    target: &'static str,
    run: impl FnOnce() -> Result<()>,
) -> Result<Timing> {
    eprint!("  {tool:<24} -> {target:<12} ");
    std::io::stderr().flush().ok();
    let started = Instant::now();
    run().with_context(|| format!("{tool} writing to a {target} failed"))?;
    let time = started.elapsed();
    eprintln!("{:>7.2} s", time.as_secs_f64());
    Ok(Timing { tool, target, time })
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
    // Warm the page cache once so every tool reads the image at the same speed.
    crate::util::sha256_file(&image)?;
    let berth = std::env::current_exe().context("could not find the xtask binary")?;
    let size = args.image_mib * MIB;

    let mut timings = Vec::new();
    let fresh = |path: &Path| {
        let _ = std::fs::remove_file(path);
    };
    eprintln!("writing to a file:");
    fresh(&target);
    timings.push(timed("dd bs=4M conv=fsync", "file", || {
        Ok(
            cmd!(sh, "dd if={image} of={target} bs=4M conv=fsync status=none")
                .quiet()
                .run()?,
        )
    })?);
    fresh(&target);
    timings.push(timed("bmaptool copy", "file", || {
        Ok(cmd!(sh, "bmaptool -q copy --bmap {map} {image} {target}")
            .quiet()
            .run()?)
    })?);
    fresh(&target);
    timings.push(timed("berth flash", "file", || {
        Ok(cmd!(sh, "{berth} flash {image} {target} --to-file --yes")
            .quiet()
            .ignore_stderr()
            .ignore_stdout()
            .run()?)
    })?);
    fresh(&target);
    timings.push(timed("berth flash --no-verify", "file", || {
        Ok(cmd!(
            sh,
            "{berth} flash {image} {target} --to-file --yes --no-verify"
        )
        .quiet()
        .ignore_stderr()
        .ignore_stdout()
        .run()?)
    })?);
    fresh(&target);

    if args.no_loop {
        eprintln!("loop device: skipped (--no-loop)");
    } else if !is_root() {
        eprintln!("loop device: skipped (needs root)");
    } else {
        eprintln!("writing to a loop device:");
        {
            let lo = LoopDevice::attach(&sh, &backing, size)?;
            let dev = &lo.dev;
            timings.push(timed("dd bs=4M conv=fsync", "loop device", || {
                Ok(
                    cmd!(sh, "dd if={image} of={dev} bs=4M conv=fsync status=none")
                        .quiet()
                        .run()?,
                )
            })?);
        }
        {
            let lo = LoopDevice::attach(&sh, &backing, size)?;
            let dev = &lo.dev;
            timings.push(timed("bmaptool copy", "loop device", || {
                Ok(cmd!(sh, "bmaptool -q copy --bmap {map} {image} {dev}")
                    .quiet()
                    .run()?)
            })?);
        }
        {
            let lo = LoopDevice::attach(&sh, &backing, size)?;
            let dev = &lo.dev;
            timings.push(timed("berth flash", "loop device", || {
                Ok(cmd!(
                    sh,
                    "{berth} flash {image} {dev} --yes --allow-non-removable"
                )
                .quiet()
                .ignore_stderr()
                .ignore_stdout()
                .run()?)
            })?);
        }
        {
            let lo = LoopDevice::attach(&sh, &backing, size)?;
            let dev = &lo.dev;
            timings.push(timed("berth flash --no-verify", "loop device", || {
                Ok(cmd!(
                    sh,
                    "{berth} flash {image} {dev} --yes --allow-non-removable --no-verify"
                )
                .quiet()
                .ignore_stderr()
                .ignore_stdout()
                .run()?)
            })?);
        }
        fresh(&backing);
    }
    drop(work_dir);
    println!("{}", report(&timings, args.image_mib, args.data_mib));
    Ok(())
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

/// The results table: each time, and for each target how dd and bmaptool compare with Berth.
fn report(timings: &[Timing], image_mib: u64, data_mib: u64) -> String {
    let mut out = format!(
        "flash benchmark: {} MiB sparse image, {} MiB of data\n\n| tool | target | seconds | vs berth flash |\n|---|---|---:|---:|\n",
        image_mib, data_mib
    );
    for t in timings {
        let berth = timings
            .iter()
            .find(|b| b.target == t.target && b.tool == "berth flash");
        let ratio = berth
            .map(|b| {
                format!(
                    "{:.2}x",
                    t.time.as_secs_f64() / b.time.as_secs_f64().max(1e-6)
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {:.2} | {} |\n",
            t.tool,
            t.target,
            t.time.as_secs_f64(),
            ratio
        ));
    }
    out
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

    #[test]
    fn report_gives_ratios_per_target() {
        let timings = [
            Timing {
                tool: "dd bs=4M conv=fsync",
                target: "file",
                time: Duration::from_secs(6),
            },
            Timing {
                tool: "berth flash",
                target: "file",
                time: Duration::from_secs(2),
            },
        ];
        let text = report(&timings, 2048, 320);
        assert!(
            text.contains("| dd bs=4M conv=fsync | file | 6.00 | 3.00x |"),
            "{text}"
        );
        assert!(
            text.contains("| berth flash | file | 2.00 | 1.00x |"),
            "{text}"
        );
    }
}
