//! `cargo xtask flash`: write an image to an SD card or eMMC safely, fast and verified.
//!
//! Order of work: every check that can refuse runs before a byte is written (map checksum, image
//! size, target device rules, eMMC boot0); then the first MiB is zeroed, unmapped ranges are
//! discarded, mapped ranges are streamed (checked against the map as they go), everything is
//! flushed, the first MiB is written last, and the target is read back past the page cache.
//!
//! The files, in the order a flash uses them: [`source`] (the image's bytes, decompressed),
//! [`device`] and [`refusal`] (which disk, and may it be overwritten), [`select`] (opening the
//! target after those checks), [`boot0`] and [`emmc`] (the eMMC bootloader), [`target`] (the
//! block-device or file I/O), [`pipeline`] (the write stages) with [`hashing`] and [`readback`],
//! [`policy`] (head last, discards; pure), and [`interrupt`] (Ctrl-C).

pub mod boot0;
pub mod device;
pub mod emmc;
pub mod hashing;
pub mod interrupt;
pub mod pipeline;
pub mod policy;
pub mod readback;
pub mod refusal;
pub mod select;
pub mod source;
pub mod target;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::bmap::{self, BlockRange, Bmap, MappedRange};
pub use boot0::Boot0Location;
use boot0::{Boot0Place, Boot0Write};
use select::Consent;
use source::Compression;
use target::{Target, TargetKind};

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
    /// benchmarks. Device checks do not apply, and there is no eMMC boot0 to write.
    #[arg(long, conflicts_with = "emmc")]
    pub to_file: bool,
}

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A whole-disk block device, checked against every refusal rule; with `emmc`, the
    /// bootloader also goes into its boot0 hardware partition.
    Device { path: PathBuf, emmc: bool },
    /// A regular file, created if missing; the device checks do not apply. With `boot0`, the
    /// bootloader goes there as it would into an eMMC's boot0 partition.
    File {
        path: PathBuf,
        boot0: Option<Boot0Location>,
    },
}

impl Destination {
    pub fn path(&self) -> &Path {
        match self {
            Destination::Device { path, .. } | Destination::File { path, .. } => path,
        }
    }
}

/// Which block map to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapChoice {
    /// `<image>.bmap`, or for `x.img.xz` also `x.img.bmap`, if there is one.
    Beside,
    Given(PathBuf),
    /// Write every byte.
    None,
}

/// One flash, as the library takes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub image: PathBuf,
    pub destination: Destination,
    pub map: MapChoice,
    /// The eMMC bootloader (default: `emmc-boot0.img` beside the image, else derived).
    pub boot0_image: Option<PathBuf>,
    pub consent: Consent,
    /// Read the target back past the page cache after writing.
    pub verify: bool,
}

impl Request {
    /// The defaults of the command line: the map beside the image, verified, asking first.
    pub fn new(image: impl Into<PathBuf>, destination: Destination) -> Self {
        Request {
            image: image.into(),
            destination,
            map: MapChoice::Beside,
            boot0_image: None,
            consent: Consent::default(),
            verify: true,
        }
    }
}

impl From<FlashArgs> for Request {
    fn from(args: FlashArgs) -> Self {
        let destination = if args.to_file {
            Destination::File {
                path: args.device,
                boot0: None,
            }
        } else {
            Destination::Device {
                path: args.device,
                emmc: args.emmc,
            }
        };
        let map = match (args.no_bmap, args.bmap) {
            (true, _) => MapChoice::None,
            (false, Some(path)) => MapChoice::Given(path),
            (false, None) => MapChoice::Beside,
        };
        Request {
            image: args.image,
            destination,
            map,
            boot0_image: args.boot0_image,
            consent: Consent {
                yes: args.yes,
                allow_non_removable: args.allow_non_removable,
            },
            verify: !args.no_verify,
        }
    }
}

/// The map to use: the one given, or one found beside the image.
fn find_map(image: &Path, choice: &MapChoice, compression: Compression) -> Option<PathBuf> {
    match choice {
        MapChoice::Given(path) => return Some(path.clone()),
        MapChoice::None => return None,
        MapChoice::Beside => {}
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

fn image_len(image: &Path) -> Result<u64> {
    Ok(std::fs::metadata(image)
        .with_context(|| format!("could not stat {}", image.display()))?
        .len())
}

/// The block map to write by: the given or found one (checked against a plain image's size), or
/// one covering every byte; for a compressed image without a map, that takes a first pass.
fn load_map(image: &Path, map_path: Option<&Path>, compression: Compression) -> Result<Bmap> {
    if let Some(path) = map_path {
        let map = bmap::load(path).context("refusing to flash; nothing was written")?;
        if compression == Compression::None {
            let size = image_len(image)?;
            anyhow::ensure!(
                size == map.image_size,
                "refusing to flash: {} is {size} bytes but its block map {} says {}; nothing was written",
                image.display(),
                path.display(),
                map.image_size
            );
        }
        return Ok(map);
    }
    if compression == Compression::None {
        return Ok(whole_image_map(image_len(image)?));
    }
    eprintln!(
        "no block map: decompressing {} once to learn its size",
        image.display()
    );
    let (size, digest) = source::measure(image, compression)?;
    let mut map = whole_image_map(size);
    // The second decompression, the one written, must give the same bytes.
    if let Some(range) = map.ranges.first_mut() {
        range.sha256 = Some(digest);
    }
    Ok(map)
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
    flash(&Request::from(args))
}

/// Opens the target after every check, and plans the boot0 write; nothing is written yet.
fn prepare(
    request: &Request,
    map: &Bmap,
    compression: Compression,
) -> Result<(Target, Option<Boot0Write>)> {
    let image = &request.image;
    let given = request.boot0_image.as_deref();
    let plan = |place| boot0::plan(image, given, compression, place);
    match &request.destination {
        Destination::Device { path, emmc } => {
            let (target, disk) = select::open_device(path, map.image_size, request.consent)?;
            let boot0 = emmc.then(|| plan(Boot0Place::OfDisk(&disk))).transpose();
            Ok((
                target,
                boot0.context("refusing to flash; nothing was written")?,
            ))
        }
        Destination::File { path, boot0 } => {
            let target = select::open_file(image, path, map.image_size)?;
            let boot0 = boot0
                .as_ref()
                .map(|at| plan(Boot0Place::At(at)))
                .transpose();
            Ok((
                target,
                boot0.context("refusing to flash; nothing was written")?,
            ))
        }
    }
}

/// Flashes as `request` says: everything that can refuse first, then the write, the read-back
/// and the eMMC boot0.
pub fn flash(request: &Request) -> Result<()> {
    let image = &request.image;
    let device = request.destination.path();
    let compression = source::detect_compression(image)?;
    let map_path = find_map(image, &request.map, compression);
    let map = load_map(image, map_path.as_deref(), compression)?;
    match &map_path {
        Some(path) => eprintln!(
            "image {} ({}), map {}: {} to write",
            image.display(),
            HumanBytes(map.image_size),
            path.display(),
            HumanBytes(map.mapped_bytes())
        ),
        None => eprintln!(
            "image {} ({}), no block map: writing every byte",
            image.display(),
            HumanBytes(map.image_size)
        ),
    }
    let (target, boot0) = prepare(request, &map, compression)?;

    // From here on the target is being changed: Ctrl-C must not leave it claiming to be whole.
    if !interrupt::catch_ctrl_c() {
        eprintln!(
            "warning: could not catch Ctrl-C; an interrupted flash will stop without a message"
        );
    }
    let incomplete = |e: anyhow::Error| {
        e.context(format!(
            "{} is INCOMPLETE and will not boot (its first MiB, with the partition table, is zeroed); flash it again",
            device.display()
        ))
    };
    let started = Instant::now();
    let mut source = source::Source::open(image, compression)?;
    let verify = request.verify.then_some(device);
    let bar = if request.verify {
        progress_bar(2 * map.mapped_bytes(), "writing and reading back")
    } else {
        progress_bar(map.mapped_bytes(), "writing")
    };
    let outcome =
        pipeline::write_image(&mut source, &target, &map, verify, &bar).map_err(incomplete)?;
    bar.finish_and_clear();
    let write_time = started.elapsed();
    eprintln!(
        "wrote {} to {} in {:.1} s ({}/s){}",
        HumanBytes(outcome.written),
        device.display(),
        write_time.as_secs_f64(),
        HumanBytes((outcome.written as f64 / write_time.as_secs_f64().max(1e-3)) as u64),
        if request.verify {
            ", and verified it read back past the page cache"
        } else {
            ""
        }
    );
    if let Some(line) = policy::describe_unmapped(&outcome) {
        eprintln!("{line}");
    }
    if let Some(warning) = target.reread_partitions() {
        eprintln!("warning: {warning}");
    }
    let kind = target.kind;
    drop(target);

    if let Some(boot0) = boot0 {
        boot0.run().context("the eMMC user area is written, but its boot0 bootloader is not: the board will not boot from eMMC")?;
        eprintln!(
            "wrote and verified {} of bootloader in {}",
            HumanBytes(boot0.data.len() as u64),
            boot0.at.device.display()
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
        HumanBytes(outcome.written),
        device.display(),
        if request.verify {
            " and verified"
        } else {
            " (not verified)"
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
        let beside = MapChoice::Beside;
        std::fs::write(dir.path().join("sdcard.img.bmap"), "").unwrap();
        assert_eq!(
            find_map(&xz, &beside, Compression::Xz),
            Some(dir.path().join("sdcard.img.bmap"))
        );
        std::fs::write(dir.path().join("sdcard.img.xz.bmap"), "").unwrap();
        assert_eq!(
            find_map(&xz, &beside, Compression::Xz),
            Some(dir.path().join("sdcard.img.xz.bmap"))
        );
        assert_eq!(
            find_map(&dir.path().join("other.img"), &beside, Compression::None),
            None
        );
        assert_eq!(find_map(&xz, &MapChoice::None, Compression::Xz), None);
    }

    #[test]
    fn whole_image_map_covers_every_byte() {
        let map = whole_image_map(10_000);
        assert_eq!(map.mapped_bytes(), 10_000);
        assert!(map.unmapped_spans().is_empty());
        assert!(whole_image_map(0).ranges.is_empty());
    }

    #[test]
    fn command_line_flags_become_a_request() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: FlashArgs,
        }
        let parse = |line: &[&str]| Request::from(Cli::try_parse_from(line).unwrap().args);
        let request = parse(&["flash", "a.img", "/dev/sdx", "--emmc", "--no-verify"]);
        assert_eq!(
            request.destination,
            Destination::Device {
                path: "/dev/sdx".into(),
                emmc: true
            }
        );
        assert!(!request.verify && request.map == MapChoice::Beside);
        let request = parse(&["flash", "a.img", "out", "--to-file", "--no-bmap"]);
        assert_eq!(
            request.destination,
            Destination::File {
                path: "out".into(),
                boot0: None
            }
        );
        assert_eq!(request.map, MapChoice::None);
        // The test stand-ins for boot0 are not part of the command line.
        assert!(Cli::try_parse_from(["flash", "a.img", "out", "--boot0-file", "b"]).is_err());
        assert!(Cli::try_parse_from(["flash", "a.img", "out", "--to-file", "--emmc"]).is_err());
    }
}
