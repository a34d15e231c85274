//! `cargo xtask bmap` and the bmaptool-compatible block map format.
//!
//! A block map lists the 4 KiB blocks of an image that hold data, with a sha256 per range, so a
//! flasher writes only those and can prove it read them right. The format is bmaptool's v2.0
//! (read by bmaptool 2.x and 3.x). Pure logic (extents to ranges, XML rendering and parsing, the
//! map's own checksum) is kept apart from the file I/O below it and unit-tested.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use quick_xml::events::Event;
use sha2::{Digest, Sha256};

use crate::util::{hex, sha256_hex};

/// bmaptool's block size; every map Berth writes uses it.
pub const BLOCK_SIZE: u64 = 4096;
const CHECKSUM_LEN: usize = 64;
const ZERO_CHECKSUM: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
        human_size(map.mapped_bytes()),
        human_size(map.image_size),
        map.ranges.len()
    );
    Ok(())
}

/// An inclusive range of blocks, as `<Range>first-last</Range>` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub first: u64,
    pub last: u64,
}

impl BlockRange {
    pub fn blocks(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The bytes this range covers in an image of `image_size` bytes (the last block may be short).
    pub fn byte_span(&self, block_size: u64, image_size: u64) -> (u64, u64) {
        let start = self.first * block_size;
        let end = ((self.last + 1) * block_size).min(image_size);
        (start, end)
    }
}

impl std::fmt::Display for BlockRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "block {}", self.first)
        } else {
            write!(f, "blocks {}-{}", self.first, self.last)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedRange {
    pub blocks: BlockRange,
    /// Lower-case hex sha256 of the range's bytes; bmap 1.x maps may have none.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub block_size: u64,
    pub ranges: Vec<MappedRange>,
}

impl Bmap {
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.blocks.blocks()).sum()
    }

    /// Bytes of the image inside mapped ranges (the short last block counted as it is).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (start, end) = r.blocks.byte_span(self.block_size, self.image_size);
                end - start
            })
            .sum()
    }

    /// Byte spans of the image the map leaves out (holes), in order.
    pub fn unmapped_spans(&self) -> Vec<(u64, u64)> {
        let mut spans = Vec::new();
        let mut next = 0;
        for range in &self.ranges {
            let (start, end) = range.blocks.byte_span(self.block_size, self.image_size);
            if start > next {
                spans.push((next, start));
            }
            next = end;
        }
        if next < self.image_size {
            spans.push((next, self.image_size));
        }
        spans
    }
}

/// Turns byte extents holding data (from SEEK_DATA/SEEK_HOLE, in order) into block ranges:
/// each extent widened to whole blocks, touching or overlapping ranges merged.
pub fn block_ranges_from_extents(
    extents: &[(u64, u64)],
    image_size: u64,
    block_size: u64,
) -> Vec<BlockRange> {
    let mut ranges: Vec<BlockRange> = Vec::new();
    for &(start, end) in extents {
        let end = end.min(image_size);
        if end <= start {
            continue;
        }
        let first = start / block_size;
        let last = (end - 1) / block_size;
        match ranges.last_mut() {
            Some(prev) if first <= prev.last + 1 => prev.last = prev.last.max(last),
            _ => ranges.push(BlockRange { first, last }),
        }
    }
    ranges
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

const HEADER_COMMENT: &str =
    "<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->";

/// Renders the map as bmaptool 3.x does (same layout, version 2.0), with its own checksum filled in.
pub fn render(map: &Bmap) -> String {
    let blocks = map.blocks_count();
    let mapped = map.mapped_blocks();
    let percent = if blocks == 0 {
        0.0
    } else {
        mapped as f64 * 100.0 / blocks as f64
    };
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" ?>\n");
    xml.push_str(HEADER_COMMENT);
    xml.push_str("\n\n<bmap version=\"2.0\">\n");
    xml.push_str(&format!(
        "    <!-- Image size in bytes: {} -->\n    <ImageSize> {} </ImageSize>\n\n",
        human_size(map.image_size),
        map.image_size
    ));
    xml.push_str(&format!(
        "    <!-- Size of a block in bytes -->\n    <BlockSize> {} </BlockSize>\n\n",
        map.block_size
    ));
    xml.push_str(&format!(
        "    <!-- Count of blocks in the image file -->\n    <BlocksCount> {blocks} </BlocksCount>\n\n"
    ));
    xml.push_str(&format!(
        "    <!-- Count of mapped blocks: {} or {percent:.1}% -->\n    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n\n",
        human_size(mapped * map.block_size)
    ));
    xml.push_str("    <!-- Type of checksum used in this file -->\n    <ChecksumType> sha256 </ChecksumType>\n\n");
    xml.push_str(
        "    <!-- The checksum of this bmap file. When it is calculated, the value of\n         the checksum has be zero (all ASCII \"0\" symbols).  -->\n",
    );
    xml.push_str(&format!(
        "    <BmapFileChecksum> {ZERO_CHECKSUM} </BmapFileChecksum>\n\n"
    ));
    xml.push_str(
        "    <!-- The block map which consists of elements which may either be a\n         range of blocks or a single block. The 'chksum' attribute\n         (if present) is the checksum of this blocks range. -->\n    <BlockMap>\n",
    );
    for range in &map.ranges {
        let text = if range.blocks.first == range.blocks.last {
            range.blocks.first.to_string()
        } else {
            format!("{}-{}", range.blocks.first, range.blocks.last)
        };
        match &range.sha256 {
            Some(sum) => xml.push_str(&format!(
                "        <Range chksum=\"{sum}\"> {text} </Range>\n"
            )),
            None => xml.push_str(&format!("        <Range> {text} </Range>\n")),
        }
    }
    xml.push_str("    </BlockMap>\n</bmap>\n");
    let checksum = sha256_hex(xml.as_bytes());
    xml.replacen(ZERO_CHECKSUM, &checksum, 1)
}

/// The map's own checksum as bmaptool computes it: sha256 of the file with the stored value's
/// first occurrence replaced by ASCII zeros.
pub fn map_file_checksum(text: &str, stored: &str) -> String {
    sha256_hex(
        text.replacen(stored, &"0".repeat(stored.len()), 1)
            .as_bytes(),
    )
}

fn parse_number(field: &str, text: &str) -> Result<u64> {
    text.trim()
        .parse()
        .with_context(|| format!("<{field}> holds {:?}, which is not a number", text.trim()))
}

fn parse_range(text: &str) -> Result<BlockRange> {
    let text = text.trim();
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text, text),
    };
    let first: u64 = first
        .parse()
        .with_context(|| format!("range {text:?} is not `N` or `N-M`"))?;
    let last: u64 = last
        .parse()
        .with_context(|| format!("range {text:?} is not `N` or `N-M`"))?;
    ensure!(first <= last, "range {text:?} ends before it starts");
    Ok(BlockRange { first, last })
}

/// Parses a bmap (v1.4 or v2.x with sha256, as Berth and bmaptool write it) and checks it is
/// self-consistent: its own checksum, block counts and ordered, in-bounds ranges.
pub fn parse(text: &str) -> Result<Bmap> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut fields: std::collections::HashMap<String, String> = Default::default();
    let mut version = None;
    let mut ranges = Vec::new();
    let mut range_sum: Option<String> = None;
    loop {
        match reader
            .read_event()
            .context("the block map is not well-formed XML")?
        {
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                if name == "bmap" {
                    let attr = e
                        .try_get_attribute("version")?
                        .context("<bmap> has no version")?;
                    version = Some(attr.value.to_string());
                }
                if name == "Range" {
                    range_sum = e
                        .try_get_attribute("chksum")?
                        .map(|a| a.value.trim().to_ascii_lowercase());
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let content = t.as_ref().to_string();
                match path.as_slice() {
                    [root, field] if root == "bmap" => {
                        fields.entry(field.clone()).or_default().push_str(&content);
                    }
                    [root, map, range]
                        if root == "bmap" && map == "BlockMap" && range == "Range" =>
                    {
                        ranges.push(MappedRange {
                            blocks: parse_range(&content)?,
                            sha256: range_sum.take(),
                        });
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let version =
        version.context("the file has no <bmap version=…> element, so it is not a block map")?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("bmap version {version:?} is not `major.minor`"))?;
    ensure!(
        major == 2 || version.trim() == "1.4",
        "bmap version {version} is not supported (Berth reads 1.4 and 2.x, the versions with sha256 checksums)"
    );
    let field = |name: &str| -> Result<&str> {
        fields
            .get(name)
            .map(|s| s.trim())
            .with_context(|| format!("the block map has no <{name}>"))
    };
    let checksum_type = field("ChecksumType")?;
    ensure!(
        checksum_type == "sha256",
        "the block map uses {checksum_type} checksums; Berth checks sha256 maps only"
    );
    let stored = field("BmapFileChecksum")?.to_ascii_lowercase();
    ensure!(
        stored.len() == CHECKSUM_LEN && stored.bytes().all(|b| b.is_ascii_hexdigit()),
        "<BmapFileChecksum> {stored:?} is not a sha256"
    );
    let actual = map_file_checksum(text, field("BmapFileChecksum")?);
    ensure!(
        actual == stored,
        "the block map is corrupt or was edited: its BmapFileChecksum says {stored} but the file hashes to {actual}"
    );
    let map = Bmap {
        image_size: parse_number("ImageSize", field("ImageSize")?)?,
        block_size: parse_number("BlockSize", field("BlockSize")?)?,
        ranges,
    };
    ensure!(
        map.block_size > 0 && map.block_size.is_multiple_of(512),
        "block size {} is not a multiple of 512",
        map.block_size
    );
    let blocks = parse_number("BlocksCount", field("BlocksCount")?)?;
    ensure!(
        blocks == map.blocks_count(),
        "the block map says {blocks} blocks, but {} bytes in {}-byte blocks is {}",
        map.image_size,
        map.block_size,
        map.blocks_count()
    );
    let mapped = parse_number("MappedBlocksCount", field("MappedBlocksCount")?)?;
    ensure!(
        mapped == map.mapped_blocks(),
        "the block map says {mapped} mapped blocks but its ranges hold {}",
        map.mapped_blocks()
    );
    let mut next = 0;
    for range in &map.ranges {
        ensure!(
            range.blocks.first >= next,
            "{} overlaps or precedes the range before it",
            range.blocks
        );
        ensure!(
            range.blocks.last < blocks,
            "{} lies beyond the image's {blocks} blocks",
            range.blocks
        );
        if let Some(sum) = &range.sha256 {
            ensure!(
                sum.len() == CHECKSUM_LEN,
                "{} has checksum {sum:?}, not a sha256",
                range.blocks
            );
        }
        next = range.blocks.last + 1;
    }
    Ok(map)
}

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

/// Maps an image: its data extents as block ranges, each with its sha256.
pub fn create(image: &Path) -> Result<Bmap> {
    let file =
        File::open(image).with_context(|| format!("could not open image {}", image.display()))?;
    let image_size = file
        .metadata()
        .with_context(|| format!("could not stat {}", image.display()))?
        .len();
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
    let file =
        File::open(image).with_context(|| format!("could not open image {}", image.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("could not stat {}", image.display()))?
        .len();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> BlockRange {
        BlockRange { first, last }
    }

    #[test]
    fn extents_widen_to_blocks_and_merge() {
        let extents = [
            (0, 100),
            (4096, 8192),
            (12288 + 1, 12288 + 2),
            (40000, 40960),
        ];
        assert_eq!(
            block_ranges_from_extents(&extents, 1 << 20, 4096),
            vec![r(0, 1), r(3, 3), r(9, 9)]
        );
    }

    #[test]
    fn extents_clip_to_image_size() {
        assert_eq!(
            block_ranges_from_extents(&[(8192, 1 << 30)], 10000, 4096),
            vec![r(2, 2)]
        );
        assert_eq!(
            block_ranges_from_extents(&[(20000, 30000)], 10000, 4096),
            vec![]
        );
    }

    #[test]
    fn short_last_block_span() {
        assert_eq!(r(2, 2).byte_span(4096, 10000), (8192, 10000));
        assert_eq!(r(0, 1).byte_span(4096, 10000), (0, 8192));
    }

    fn sample() -> Bmap {
        Bmap {
            image_size: 10485761,
            block_size: 4096,
            ranges: vec![
                MappedRange {
                    blocks: r(1, 2),
                    sha256: Some("a".repeat(64)),
                },
                MappedRange {
                    blocks: r(1220, 1220),
                    sha256: Some("b".repeat(64)),
                },
                MappedRange {
                    blocks: r(2560, 2560),
                    sha256: Some("c".repeat(64)),
                },
            ],
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let map = sample();
        let text = render(&map);
        assert!(text.contains("<Range chksum=\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"> 1220 </Range>"));
        assert!(text.contains("<BlocksCount> 2561 </BlocksCount>"));
        assert_eq!(parse(&text).unwrap(), map);
    }

    #[test]
    fn unmapped_spans_are_the_complement() {
        assert_eq!(
            sample().unmapped_spans(),
            vec![(0, 4096), (12288, 1220 * 4096), (1221 * 4096, 2560 * 4096)]
        );
    }

    #[test]
    fn edited_map_is_rejected_by_its_own_checksum() {
        let text = render(&sample()).replace("> 1220 <", "> 1221 <");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("BmapFileChecksum"), "{err}");
    }

    /// Made by Debian's bmaptool 3.6 (`bmaptool create`) for a 10 MiB + 1 byte image.
    const BMAPTOOL_MAP: &str = include_str!("../tests/fixtures/bmaptool-3.6.bmap");

    #[test]
    fn reads_bmaptool_map() {
        let map = parse(BMAPTOOL_MAP).unwrap();
        assert_eq!(map.image_size, 10485761);
        assert_eq!(
            map.ranges.iter().map(|r| r.blocks).collect::<Vec<_>>(),
            vec![r(1, 2), r(1220, 1220), r(2560, 2560)]
        );
        assert_eq!(
            map.ranges[2].sha256.as_deref(),
            Some("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
        );
    }

    #[test]
    fn renders_like_bmaptool_apart_from_padding() {
        // bmaptool pads the mapped-count line; Berth does not. Everything else is byte-identical.
        let ours = render(&parse(BMAPTOOL_MAP).unwrap());
        let normalise = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("BmapFileChecksum>") && !l.contains("Count of mapped"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        };
        assert_eq!(normalise(&ours), normalise(BMAPTOOL_MAP));
    }

    #[test]
    fn inconsistent_counts_are_rejected() {
        let text = render(&sample()).replace("<BlocksCount> 2561 ", "<BlocksCount> 2562 ");
        let fixed = text.replacen(
            &text[text.find("<BmapFileChecksum> ").unwrap() + 19..][..64],
            ZERO_CHECKSUM,
            1,
        );
        let sum = sha256_hex(fixed.as_bytes());
        let err = parse(&fixed.replacen(ZERO_CHECKSUM, &sum, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2562 blocks"), "{err}");
    }

    #[test]
    fn single_and_span_ranges_parse() {
        assert_eq!(parse_range(" 7 ").unwrap(), r(7, 7));
        assert_eq!(parse_range("3-9").unwrap(), r(3, 9));
        assert!(parse_range("9-3").is_err());
        assert!(parse_range("x").is_err());
    }
}
