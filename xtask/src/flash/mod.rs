//! `cargo xtask flash`: write an image to an SD card or eMMC safely, fast and verified.
//!
//! Order of work: every check that can refuse runs before a byte is written (map checksum, image
//! size, target device rules, eMMC boot0); then the first MiB is zeroed, unmapped ranges are
//! discarded, mapped ranges are streamed (checked against the map as they go), everything is
//! flushed, the first MiB is written last, and the target is read back past the page cache.

pub mod device;
pub mod emmc;
pub mod writer;

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bmap::{self, human_size, BlockRange, Bmap, MappedRange};
use device::{SystemRoot, SystemState};
use writer::{Compression, Target, TargetKind};

#[derive(Args)]
pub struct FlashArgs {
    /// Image to write: `sdcard.img`, or compressed `sdcard.img.xz` / `sdcard.img.gz`.
    pub image: PathBuf,
    /// Whole-disk target, e.g. /dev/sdb or /dev/mmcblk0 (a regular file with --to-file).
    pub device: PathBuf,
    /// Block map to use (default: `<image>.bmap`, or for `x.img.xz` also `x.img.bmap`).
    #[arg(long)]
    pub bmap: Option<PathBuf>,
    /// Ignore any block map and write every byte of the image.
    #[arg(long, conflicts_with = "bmap")]
    pub no_bmap: bool,
    /// The target is the eMMC: also write the bootloader into its boot0 hardware partition.
    #[arg(long)]
    pub emmc: bool,
    /// Bootloader for eMMC boot0 (default: `emmc-boot0.img` beside the image, else the SD image's
    /// bootloader sectors shifted down one sector).
    #[arg(long, requires = "emmc")]
    pub boot0_image: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Skip reading the target back after writing.
    #[arg(long)]
    pub no_verify: bool,
    /// Allow a disk the kernel does not mark removable (an eMMC in a native slot, a loop device).
    #[arg(long)]
    pub allow_non_removable: bool,
    /// The target is a regular file (created if missing), not a block device; for tests and
    /// benchmarks. Device checks do not apply.
    #[arg(long)]
    pub to_file: bool,
    /// With --to-file --emmc: a regular file standing in for the boot0 device (tests).
    #[arg(long, hide = true, requires_all = ["to_file", "emmc"])]
    pub boot0_file: Option<PathBuf>,
    /// With --boot0-file: the file standing in for boot0's sysfs `force_ro` (tests).
    #[arg(long, hide = true, requires = "boot0_file")]
    pub force_ro_file: Option<PathBuf>,
}

/// The map to use: the one given, or one found beside the image.
fn find_map(image: &Path, given: Option<&Path>, compression: Compression) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    let mut candidates = vec![with_suffix(image, ".bmap")];
    if compression != Compression::None {
        if let Some(stem) = image.file_stem() {
            candidates.push(image.with_file_name(stem).with_extension(
                match Path::new(stem).extension() {
                    Some(ext) => format!("{}.bmap", ext.to_string_lossy()),
                    None => "bmap".into(),
                },
            ));
        }
    }
    candidates.into_iter().find(|c| c.is_file())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A map covering the whole image, for images without one: every byte is written and verified.
fn whole_image_map(image_size: u64) -> Bmap {
    let ranges = if image_size == 0 {
        Vec::new()
    } else {
        let last = (image_size - 1) / bmap::BLOCK_SIZE;
        vec![MappedRange {
            blocks: BlockRange { first: 0, last },
            sha256: None,
        }]
    };
    Bmap {
        image_size,
        block_size: bmap::BLOCK_SIZE,
        ranges,
    }
}

/// Where boot0 is and how to unlock it.
struct Boot0Target {
    device: PathBuf,
    force_ro: PathBuf,
    data: Vec<u8>,
    block_device: bool,
}

fn boot0_data(args: &FlashArgs, compression: Compression) -> Result<Vec<u8>> {
    let beside = args.image.with_file_name("emmc-boot0.img");
    let artifact = args
        .boot0_image
        .clone()
        .or_else(|| beside.is_file().then_some(beside));
    match artifact {
        Some(path) => {
            let data = std::fs::read(&path)
                .with_context(|| format!("could not read eMMC bootloader {}", path.display()))?;
            ensure!(
                !data.is_empty(),
                "eMMC bootloader {} is empty",
                path.display()
            );
            eprintln!(
                "eMMC boot0: {} ({})",
                path.display(),
                human_size(data.len() as u64)
            );
            Ok(data)
        }
        None => {
            let data = emmc::boot0_from_sd_head(&emmc::read_sd_head(&args.image, compression)?)
                .with_context(|| {
                    format!("no emmc-boot0.img beside {}, and", args.image.display())
                })?;
            eprintln!(
                "eMMC boot0: derived from the SD image's sectors 1..2015, shifted down one sector"
            );
            Ok(data)
        }
    }
}

fn plan_boot0(
    args: &FlashArgs,
    disk: Option<&device::Disk>,
    compression: Compression,
) -> Result<Option<Boot0Target>> {
    if !args.emmc {
        return Ok(None);
    }
    let data = boot0_data(args, compression)?;
    if let Some(file) = &args.boot0_file {
        let force_ro = args
            .force_ro_file
            .clone()
            .context("--boot0-file needs --force-ro-file")?;
        return Ok(Some(Boot0Target {
            device: file.clone(),
            force_ro,
            data,
            block_device: false,
        }));
    }
    let disk = disk.context("--emmc needs a real eMMC device (or --boot0-file with --to-file)")?;
    let sys = SystemRoot::live().sys;
    let (dev, sysdir) = emmc::boot0_of(&disk.name, &sys);
    ensure!(
        sysdir.is_dir(),
        "{} has no boot0 hardware partition ({} does not exist): --emmc needs the eMMC module in a \
         native SD/MMC slot (USB card readers do not expose boot partitions)",
        disk.name,
        sysdir.display()
    );
    let size = std::fs::read_to_string(sysdir.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    ensure!(
        size >= data.len() as u64,
        "{} holds {size} bytes, less than the {}-byte bootloader",
        dev.display(),
        data.len()
    );
    Ok(Some(Boot0Target {
        device: dev,
        force_ro: sysdir.join("force_ro"),
        data,
        block_device: true,
    }))
}

/// Checks the device against every refusal rule, shows it, asks, and opens it exclusively.
fn select_device(args: &FlashArgs, image_size: u64) -> Result<(Target, Option<device::Disk>)> {
    let path = &args.device;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("target {} does not exist", path.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "refusing to write {}: it is not a block device (to write into a regular file, pass --to-file); nothing was written",
            path.display()
        );
    }
    use std::os::unix::fs::MetadataExt;
    let dev = format!(
        "{}:{}",
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev())
    );
    let root = SystemRoot::live();
    let (name, partition) = device::find_by_dev(&root, &dev)
        .with_context(|| format!("{} ({dev}) is not listed under /sys/block", path.display()))?;
    if let Some(part) = partition {
        bail!(
            "refusing to write {}: it is partition {part} of /dev/{name}; give the whole disk; nothing was written",
            path.display()
        );
    }
    let disk = device::read_disk(&root, &name)?;
    let state = SystemState::read(&root)?;
    let refusals = device::refusals(&disk, &state, image_size, args.allow_non_removable);
    if !refusals.is_empty() {
        let reasons: Vec<String> = refusals.iter().map(|r| format!("  - {r}")).collect();
        bail!(
            "refusing to write {}; nothing was written:\n{}",
            path.display(),
            reasons.join("\n")
        );
    }
    eprintln!(
        "This will overwrite:\n{}",
        device::describe(&disk, path, &state)
    );
    if !args.yes {
        confirm(path)?;
    }
    let target = Target::open_device(path)?;
    let size = target.size()?;
    ensure!(
        size >= image_size,
        "refusing to write {}: it holds {size} bytes, less than the image's {image_size}; nothing was written",
        path.display()
    );
    Ok((target, Some(disk)))
}

/// `--to-file` skips the device checks, so it must never reach a device, nor the image itself.
fn check_file_target(image: &Path, target: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(target) {
        ensure!(
            !meta.file_type().is_block_device(),
            "refusing to write {}: it is a block device, and --to-file skips the device checks \
             (drop --to-file); nothing was written",
            target.display()
        );
        let same = std::fs::canonicalize(image).ok() == std::fs::canonicalize(target).ok();
        ensure!(
            !same,
            "refusing to write {} onto itself; nothing was written",
            image.display()
        );
    }
    Ok(())
}

fn confirm(path: &Path) -> Result<()> {
    ensure!(
        std::io::stdin().is_terminal(),
        "refusing to write {} without confirmation: stdin is not a terminal (pass --yes); nothing was written",
        path.display()
    );
    eprint!(
        "Everything on {} will be lost. Type yes to continue: ",
        path.display()
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer")?;
    ensure!(answer.trim() == "yes", "not confirmed; nothing was written");
    Ok(())
}

fn progress_bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{verb:>9} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
        ))
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    bar
}

pub fn run(args: FlashArgs) -> Result<()> {
    let compression = writer::detect_compression(&args.image)?;
    let map_path = if args.no_bmap {
        None
    } else {
        find_map(&args.image, args.bmap.as_deref(), compression)
    };
    let map = match &map_path {
        Some(path) => Some(bmap::load(path).context("refusing to flash; nothing was written")?),
        None => None,
    };
    if let (Some(map), Compression::None) = (&map, compression) {
        let size = std::fs::metadata(&args.image)
            .with_context(|| format!("could not stat {}", args.image.display()))?
            .len();
        ensure!(
            size == map.image_size,
            "refusing to flash: {} is {size} bytes but its block map {} says {}; nothing was written",
            args.image.display(),
            map_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            map.image_size
        );
    }
    let map = match (map, compression) {
        (Some(map), _) => map,
        (None, Compression::None) => {
            let size = std::fs::metadata(&args.image)
                .with_context(|| format!("could not stat {}", args.image.display()))?
                .len();
            whole_image_map(size)
        }
        (None, _) => {
            eprintln!(
                "no block map: decompressing {} once to learn its size",
                args.image.display()
            );
            let (size, digest) = writer::measure(&args.image, compression)?;
            let mut map = whole_image_map(size);
            // The second decompression, the one written, must give the same bytes.
            if let Some(range) = map.ranges.first_mut() {
                range.sha256 = Some(digest);
            }
            map
        }
    };
    flash(&args, compression, map, map_path.as_deref())
}

fn flash(
    args: &FlashArgs,
    compression: Compression,
    map: Bmap,
    map_path: Option<&Path>,
) -> Result<()> {
    match map_path {
        Some(path) => eprintln!(
            "image {} ({}), map {}: {} to write",
            args.image.display(),
            human_size(map.image_size),
            path.display(),
            human_size(map.mapped_bytes())
        ),
        None => eprintln!(
            "image {} ({}), no block map: writing every byte",
            args.image.display(),
            human_size(map.image_size)
        ),
    }
    let (target, disk) = if args.to_file {
        check_file_target(&args.image, &args.device)?;
        (Target::open_file(&args.device, map.image_size)?, None)
    } else {
        select_device(args, map.image_size)?
    };
    let boot0 = plan_boot0(args, disk.as_ref(), compression)
        .context("refusing to flash; nothing was written")?;

    // From here on the target is being changed: Ctrl-C must not leave it claiming to be whole.
    if ctrlc::set_handler(|| writer::INTERRUPTED.store(true, Ordering::SeqCst)).is_err() {
        eprintln!(
            "warning: could not catch Ctrl-C; an interrupted flash will stop without a message"
        );
    }
    let incomplete = |e: anyhow::Error| {
        e.context(format!(
            "{} is INCOMPLETE and will not boot (its first MiB, with the partition table, is zeroed); flash it again",
            args.device.display()
        ))
    };
    let started = Instant::now();
    let mut source = writer::Source::open(&args.image, compression)?;
    let verify = (!args.no_verify).then_some(args.device.as_path());
    let bar = if verify.is_some() {
        progress_bar(2 * map.mapped_bytes(), "writing and reading back")
    } else {
        progress_bar(map.mapped_bytes(), "writing")
    };
    let outcome =
        writer::write_image(&mut source, &target, &map, verify, &bar).map_err(incomplete)?;
    bar.finish_and_clear();
    let write_time = started.elapsed();
    eprintln!(
        "wrote {} to {} in {:.1} s ({}/s){}",
        human_size(outcome.written),
        args.device.display(),
        write_time.as_secs_f64(),
        human_size((outcome.written as f64 / write_time.as_secs_f64().max(1e-3)) as u64),
        if verify.is_some() {
            ", and verified it read back past the page cache"
        } else {
            ""
        }
    );
    if let Some(line) = writer::describe_unmapped(&outcome) {
        eprintln!("{line}");
    }
    if let Some(warning) = target.reread_partitions() {
        eprintln!("warning: {warning}");
    }
    let kind = target.kind;
    drop(target);

    if let Some(boot0) = boot0 {
        emmc::write_boot0(&boot0.device, &boot0.force_ro, &boot0.data, boot0.block_device)
            .context("the eMMC user area is written, but its boot0 bootloader is not: the board will not boot from eMMC")?;
        eprintln!(
            "wrote and verified {} of bootloader in {}",
            human_size(boot0.data.len() as u64),
            boot0.device.display()
        );
    }
    let what = if kind == TargetKind::BlockDevice {
        "the card is ready"
    } else {
        "the file is ready"
    };
    println!(
        "done in {:.1} s: {} written to {}{}; {what}",
        started.elapsed().as_secs_f64(),
        human_size(outcome.written),
        args.device.display(),
        if args.no_verify {
            " (not verified)"
        } else {
            " and verified"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_image_finds_the_plain_images_map() {
        let dir = tempfile::tempdir().unwrap();
        let xz = dir.path().join("sdcard.img.xz");
        std::fs::write(dir.path().join("sdcard.img.bmap"), "").unwrap();
        assert_eq!(
            find_map(&xz, None, Compression::Xz),
            Some(dir.path().join("sdcard.img.bmap"))
        );
        std::fs::write(dir.path().join("sdcard.img.xz.bmap"), "").unwrap();
        assert_eq!(
            find_map(&xz, None, Compression::Xz),
            Some(dir.path().join("sdcard.img.xz.bmap"))
        );
        assert_eq!(
            find_map(&dir.path().join("other.img"), None, Compression::None),
            None
        );
    }

    #[test]
    fn whole_image_map_covers_every_byte() {
        let map = whole_image_map(10_000);
        assert_eq!(map.mapped_bytes(), 10_000);
        assert!(map.unmapped_spans().is_empty());
        assert!(whole_image_map(0).ranges.is_empty());
    }
}
