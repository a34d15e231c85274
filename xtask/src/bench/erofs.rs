//! `cargo xtask bench erofs`: which EROFS compression for the system slot, measured on a real
//! root tree. Each candidate image is built, its size taken, and every file in it read back
//! and decoded by `fsck.erofs --extract` (no folder: decode and check only), on the build
//! machine and, as a stand-in for the board's Cortex-A15, by an ARM build under qemu-arm.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use super::erofs_table::{available_compressors, report, Candidate, Measured, CANDIDATES};
use super::load::current_load;

#[derive(Args)]
pub struct ErofsBench {
    /// The root filesystem tree to pack, such as a Buildroot output's target/.
    #[arg(long)]
    pub tree: PathBuf,
    /// Folder for the candidate images (needs about the tree's size free).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// The mkfs.erofs that builds the images; erofs-utils 1.7 or later also offers deflate.
    #[arg(long, default_value = "mkfs.erofs")]
    pub mkfs: PathBuf,
    /// The build machine's fsck.erofs, which reads every image back.
    #[arg(long, default_value = "fsck.erofs")]
    pub fsck: PathBuf,
    /// An ARM (armhf) fsck.erofs, run under --qemu as a proxy for the Cortex-A15; without it
    /// only the build machine's read is timed.
    #[arg(long)]
    pub arm_fsck: Option<PathBuf>,
    /// The user-mode emulator that runs --arm-fsck.
    #[arg(long, default_value = "qemu-arm-static")]
    pub qemu: PathBuf,
    /// Times each image is read per reader; the report gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Read speeds of the boot medium in MiB/s for the estimate "image bytes / speed + ARM
    /// decode time" (assumed, not measured: an ordinary microSD card and an eMMC module).
    #[arg(long = "card-mib-per-s", default_values_t = [20.0, 140.0])]
    pub card_speeds: Vec<f64>,
}

/// A command from a program and its leading arguments (`[qemu, arm-fsck]` or `[fsck]`).
fn command<'a>(sh: &'a Shell, program: &[&Path]) -> xshell::Cmd<'a> {
    let (first, rest) = program
        .split_first()
        .expect("a command names at least its program");
    sh.cmd(first).args(rest).quiet()
}

/// The first line a tool prints for `flag`, for the report's conditions.
fn version_line(sh: &Shell, program: &[&Path], flag: &str) -> String {
    let output = command(sh, program).arg(flag).ignore_status().output();
    output
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "version unknown".to_string())
}

/// Seconds one read of every file in `image` takes with `reader` (a program and its leading
/// arguments).
fn time_read(sh: &Shell, reader: &[&Path], image: &Path) -> Result<f64> {
    let started = Instant::now();
    command(sh, reader)
        .arg("--extract")
        .arg(image)
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "{} could not read every file of {}",
                reader.last().unwrap_or(&Path::new("fsck.erofs")).display(),
                image.display()
            )
        })?;
    Ok(started.elapsed().as_secs_f64())
}

/// Builds one candidate's image from `tree` and times the reads.
fn measure(
    sh: &Shell,
    args: &ErofsBench,
    candidate: Candidate,
    image: &Path,
    arm_reader: Option<&[&Path]>,
) -> Result<Measured> {
    let (mkfs, tree) = (&args.mkfs, &args.tree);
    let compression = candidate.mkfs_args();
    let _ = std::fs::remove_file(image);
    let started = Instant::now();
    // Fixed time and UUID, as Buildroot passes for a reproducible build.
    cmd!(
        sh,
        "{mkfs} --quiet -T0 -U00000000-0000-0000-0000-000000000000 {compression...} {image} {tree}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("{} failed for {}", mkfs.display(), candidate.name()))?;
    let mkfs_seconds = started.elapsed().as_secs_f64();
    let image_bytes = std::fs::metadata(image)
        .with_context(|| format!("{} left no image", mkfs.display()))?
        .len();
    // Into the page cache, so each read times decoding; the card's part is estimated from size.
    crate::util::sha256_file(image)?;
    let mut measured = Measured {
        candidate,
        image_bytes,
        mkfs_seconds,
        host_seconds: Vec::new(),
        arm_seconds: Vec::new(),
    };
    for _ in 0..args.runs {
        measured
            .host_seconds
            .push(time_read(sh, &[args.fsck.as_path()], image)?);
        if let Some(reader) = arm_reader {
            measured.arm_seconds.push(time_read(sh, reader, image)?);
        }
    }
    std::fs::remove_file(image).ok();
    Ok(measured)
}

pub fn run(args: ErofsBench) -> Result<()> {
    if !args.tree.is_dir() {
        bail!("{} is not a folder (--tree)", args.tree.display());
    }
    if args.card_speeds.iter().any(|&s| s.is_nan() || s <= 0.0) {
        bail!("--card-mib-per-s must be above 0");
    }
    let sh = Shell::new()?;
    let mkfs = args.mkfs.as_path();
    let help = cmd!(sh, "{mkfs} --help")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not run {} (erofs-utils)", mkfs.display()))?;
    let help =
        String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    let offered = available_compressors(&help);
    if offered.is_empty() {
        bail!(
            "could not find which compressors {} offers in its --help",
            mkfs.display()
        );
    }
    let arm_reader: Option<Vec<&Path>> = args
        .arm_fsck
        .as_deref()
        .map(|arm| vec![args.qemu.as_path(), arm]);
    let mut conditions = vec![
        format!("tree {}", args.tree.display()),
        format!("{} run(s) per reader", args.runs),
        format!("images built by {}", version_line(&sh, &[mkfs], "-V")),
        format!(
            "host reader {}",
            version_line(&sh, &[args.fsck.as_path()], "-V")
        ),
    ];
    match &arm_reader {
        Some(reader) => {
            // A reader that cannot start fails here, before any image is built.
            command(&sh, reader)
                .arg("-V")
                .ignore_stdout()
                .run()
                .context("the ARM fsck.erofs does not run under qemu (--arm-fsck, --qemu)")?;
            conditions.push(format!(
                "ARM proxy {} under {} (user-mode emulation on this machine: a proxy for a Cortex-A15, not a measurement of one)",
                version_line(&sh, reader, "-V"),
                version_line(&sh, &[args.qemu.as_path()], "--version")
            ));
        }
        None => conditions.push("ARM proxy: not measured (no --arm-fsck)".to_string()),
    }
    conditions.push(
        "each image read from the page cache, so read times are decoding; the card's time is \
         estimated as image bytes / speed"
            .to_string(),
    );
    conditions.push(format!("1-minute load average {} before", current_load()));

    let work_dir = tempfile::Builder::new()
        .prefix("berth-bench-erofs-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("could not create a folder in {}", args.dir.display()))?;
    let image = work_dir.path().join("candidate.erofs");
    let mut measured = Vec::new();
    let mut skipped = Vec::new();
    for candidate in CANDIDATES {
        if let Some(compressor) = candidate.compressor {
            if !offered.iter().any(|c| c == compressor) {
                skipped.push((
                    candidate,
                    format!("{} offers only {}", mkfs.display(), offered.join(", ")),
                ));
                continue;
            }
        }
        eprintln!("{}: building and reading", candidate.name());
        let m = measure(&sh, &args, candidate, &image, arm_reader.as_deref())?;
        eprintln!(
            "  {} bytes, mkfs {:.1} s, host reads {:?} s, ARM proxy reads {:?} s",
            m.image_bytes, m.mkfs_seconds, m.host_seconds, m.arm_seconds
        );
        measured.push(m);
    }
    conditions.push(format!("{} after", current_load()));
    if let Err(e) = work_dir.close() {
        eprintln!("warning: could not remove the bench folder: {e}");
    }
    println!(
        "{}",
        report(
            &measured,
            &skipped,
            &args.card_speeds,
            &conditions.join("; ")
        )
    );
    Ok(())
}
