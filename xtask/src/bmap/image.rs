//! Block maps and image files: loading a map, finding an image's data with SEEK_DATA/SEEK_HOLE,
//! hashing its ranges, writing its map and checking an image against one.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::model::{block_ranges_from_extents, Bmap, MappedRange, BLOCK_SIZE};
use super::xml::{parse, render};
use crate::util::hex;

/// Reads and parses a map file.
pub fn load(bmap_path: &Path) -> Result<Bmap> {
    let text = std::fs::read_to_string(bmap_path)
        .with_context(|| format!("could not read block map {}", bmap_path.display()))?;
    parse(&text).with_context(|| format!("block map {} is not usable", bmap_path.display()))
}

/// Byte extents of `file` holding data, found with SEEK_DATA/SEEK_HOLE (file systems without
/// hole support report one extent covering everything, which is still correct).
pub fn data_extents(file: &File, len: u64) -> Result<Vec<(u64, u64)>> {
    use rustix::fs::{seek, SeekFrom};
    let mut extents = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        let start = match seek(file, SeekFrom::Data(offset)) {
            Ok(pos) => pos,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e).context("SEEK_DATA failed"),
        };
        if start >= len {
            break;
        }
        let end = seek(file, SeekFrom::Hole(start))
            .context("SEEK_HOLE failed")?
            .min(len);
        extents.push((start, end));
        offset = end;
    }
    Ok(extents)
}

/// sha256 of bytes `start..end` of `file`, read in 1 MiB chunks.
pub fn hash_span(file: &File, start: u64, end: u64, buf: &mut [u8]) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut pos = start;
    while pos < end {
        let n = ((end - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// An image opened for reading, and its length.
fn open_image(image: &Path) -> Result<(File, u64)> {
    let file =
        File::open(image).with_context(|| format!("could not open image {}", image.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("could not stat {}", image.display()))?
        .len();
    Ok((file, len))
}

/// Maps an image: its data extents as block ranges, each with its sha256.
pub fn create(image: &Path) -> Result<Bmap> {
    let (file, image_size) = open_image(image)?;
    let extents = data_extents(&file, image_size)
        .with_context(|| format!("could not find the data extents of {}", image.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let ranges = block_ranges_from_extents(&extents, image_size, BLOCK_SIZE)
        .into_iter()
        .map(|blocks| {
            let (start, end) = blocks.byte_span(BLOCK_SIZE, image_size);
            let sum = hash_span(&file, start, end, &mut buf)
                .with_context(|| format!("could not read {blocks} of {}", image.display()))?;
            Ok(MappedRange {
                blocks,
                sha256: Some(sum),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Bmap {
        image_size,
        block_size: BLOCK_SIZE,
        ranges,
    })
}

/// Writes a bmaptool-compatible map of `image` to `bmap_path` (used by `cargo xtask image`).
pub fn write_for_image(image: &Path, bmap_path: &Path) -> Result<()> {
    let map = create(image)?;
    std::fs::write(bmap_path, render(&map))
        .with_context(|| format!("could not write block map {}", bmap_path.display()))
}

/// Checks an image against its map: the map's own checksum, the image size and every range's
/// sha256. The error names the first range that differs. Accepts maps from `bmaptool create`.
pub fn check_image_against_bmap(image: &Path, bmap_path: &Path) -> Result<()> {
    let map = load(bmap_path)?;
    let (file, size) = open_image(image)?;
    ensure!(
        size == map.image_size,
        "{} is {size} bytes but its block map {} says {} bytes",
        image.display(),
        bmap_path.display(),
        map.image_size
    );
    let mut buf = vec![0u8; 1 << 20];
    for range in &map.ranges {
        let Some(expected) = &range.sha256 else {
            continue;
        };
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        let actual = hash_span(&file, start, end, &mut buf)
            .with_context(|| format!("could not read {} of {}", range.blocks, image.display()))?;
        if &actual != expected {
            bail!(
                "{} of {} (bytes {start}..{end}) hash to {actual}, but {} says {expected}",
                range.blocks,
                image.display(),
                bmap_path.display()
            );
        }
    }
    Ok(())
}
