//! `cargo xtask bmap` and the bmaptool-compatible block map format.
//!
//! A block map lists the 4 KiB blocks of an image that hold data, with a sha256 per range, so a
//! flasher writes only those and can prove it read them right. The format is bmaptool's v2.0
//! (read by bmaptool 2.x and 3.x). [`model`] holds the map and its arithmetic, pure and
//! unit-tested; [`xml`] renders and parses the file (also pure); [`image`] does the file I/O:
//! finding an image's data, hashing it, checking an image against its map.

pub mod image;
pub mod model;
pub mod xml;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::HumanBytes;

pub use image::{check_image_against_bmap, create, load, write_for_image};
pub use model::{block_ranges_from_extents, BlockRange, Bmap, MappedRange, BLOCK_SIZE};
pub use xml::{parse, render};

#[derive(Args)]
pub struct BmapArgs {
    /// The image to map (uncompressed; holes are found with SEEK_DATA/SEEK_HOLE).
    pub image: PathBuf,
    /// Where to write the map (default: `<image>.bmap`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Instead of writing a map, check the image against this existing map.
    #[arg(long, conflicts_with = "output")]
    pub check: Option<PathBuf>,
}

pub fn run(args: BmapArgs) -> Result<()> {
    if let Some(map) = &args.check {
        check_image_against_bmap(&args.image, map)?;
        println!("{} matches {}", args.image.display(), map.display());
        return Ok(());
    }
    let output = args.output.unwrap_or_else(|| {
        let mut name = args.image.clone().into_os_string();
        name.push(".bmap");
        PathBuf::from(name)
    });
    write_for_image(&args.image, &output)?;
    let map = load(&output)?;
    println!(
        "wrote {}: {} of {} mapped ({} ranges)",
        output.display(),
        HumanBytes(map.mapped_bytes()),
        HumanBytes(map.image_size),
        map.ranges.len()
    );
    Ok(())
}
