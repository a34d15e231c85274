//! The block map file: rendered exactly as bmaptool 3.x writes it (so the two tools' maps differ
//! only in padding), and read back with serde into the model, checked to be self-consistent.

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

use super::model::{BlockRange, Bmap, MappedRange};
use crate::util::sha256_hex;

const CHECKSUM_LEN: usize = 64;
const ZERO_CHECKSUM: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A size as bmaptool writes it in the map's comments (`10.0 MiB`, `16.0 KiB`, `100 bytes`): the
/// maps must stay byte-identical to bmaptool's, so this is not indicatif's format.
fn bmaptool_size(bytes: u64) -> String {
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
        bmaptool_size(map.image_size),
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
        bmaptool_size(mapped * map.block_size)
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

/// `<bmap>` as bmaptool writes it; every field optional so a missing one gets a clear error.
#[derive(Deserialize)]
struct Document {
    #[serde(rename = "@version")]
    version: Option<String>,
    #[serde(rename = "ImageSize")]
    image_size: Option<String>,
    #[serde(rename = "BlockSize")]
    block_size: Option<String>,
    #[serde(rename = "BlocksCount")]
    blocks_count: Option<String>,
    #[serde(rename = "MappedBlocksCount")]
    mapped_blocks_count: Option<String>,
    #[serde(rename = "ChecksumType")]
    checksum_type: Option<String>,
    #[serde(rename = "BmapFileChecksum")]
    checksum: Option<String>,
    #[serde(rename = "BlockMap", default)]
    block_map: BlockMap,
}

#[derive(Deserialize, Default)]
struct BlockMap {
    #[serde(rename = "Range", default)]
    ranges: Vec<Range>,
}

/// `<Range chksum="…"> first-last </Range>`
#[derive(Deserialize)]
struct Range {
    #[serde(rename = "@chksum")]
    chksum: Option<String>,
    #[serde(rename = "$text")]
    text: String,
}

/// A field's trimmed text, or an error naming it.
fn field<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str> {
    value
        .as_deref()
        .map(str::trim)
        .with_context(|| format!("the block map has no <{name}>"))
}

fn number(value: &Option<String>, name: &str) -> Result<u64> {
    let text = field(value, name)?;
    text.parse()
        .with_context(|| format!("<{name}> holds {text:?}, which is not a number"))
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

/// The version must be one with sha256 checksums: 1.4 or 2.x.
fn check_version(version: Option<&str>) -> Result<()> {
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
    Ok(())
}

/// The map's own checksum must match the file it is in.
fn check_file_checksum(text: &str, doc: &Document) -> Result<()> {
    let checksum_type = field(&doc.checksum_type, "ChecksumType")?;
    ensure!(
        checksum_type == "sha256",
        "the block map uses {checksum_type} checksums; Berth checks sha256 maps only"
    );
    let written = field(&doc.checksum, "BmapFileChecksum")?;
    let stored = written.to_ascii_lowercase();
    ensure!(
        stored.len() == CHECKSUM_LEN && stored.bytes().all(|b| b.is_ascii_hexdigit()),
        "<BmapFileChecksum> {stored:?} is not a sha256"
    );
    let actual = map_file_checksum(text, written);
    ensure!(
        actual == stored,
        "the block map is corrupt or was edited: its BmapFileChecksum says {stored} but the file hashes to {actual}"
    );
    Ok(())
}

/// Counts that agree with the ranges, and ranges in order, inside the image, with sha256 sums.
fn check_consistent(map: &Bmap, doc: &Document) -> Result<()> {
    ensure!(
        map.block_size > 0 && map.block_size.is_multiple_of(512),
        "block size {} is not a multiple of 512",
        map.block_size
    );
    let blocks = number(&doc.blocks_count, "BlocksCount")?;
    ensure!(
        blocks == map.blocks_count(),
        "the block map says {blocks} blocks, but {} bytes in {}-byte blocks is {}",
        map.image_size,
        map.block_size,
        map.blocks_count()
    );
    let mapped = number(&doc.mapped_blocks_count, "MappedBlocksCount")?;
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
    Ok(())
}

/// Parses a bmap (v1.4 or v2.x with sha256, as Berth and bmaptool write it) and checks it is
/// self-consistent: its own checksum, block counts and ordered, in-bounds ranges.
pub fn parse(text: &str) -> Result<Bmap> {
    let doc: Document =
        quick_xml::de::from_str(text).context("the block map is not well-formed XML")?;
    check_version(doc.version.as_deref())?;
    check_file_checksum(text, &doc)?;
    let ranges = doc
        .block_map
        .ranges
        .iter()
        .map(|range| {
            Ok(MappedRange {
                blocks: parse_range(&range.text)?,
                sha256: range.chksum.as_ref().map(|s| s.trim().to_ascii_lowercase()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let map = Bmap {
        image_size: number(&doc.image_size, "ImageSize")?,
        block_size: number(&doc.block_size, "BlockSize")?,
        ranges,
    };
    check_consistent(&map, &doc)?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmap::model::tests::{r, sample};

    #[test]
    fn render_parse_round_trip() {
        let map = sample();
        let text = render(&map);
        assert!(text.contains("<Range chksum=\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"> 1220 </Range>"));
        assert!(text.contains("<BlocksCount> 2561 </BlocksCount>"));
        assert_eq!(parse(&text).unwrap(), map);
    }

    #[test]
    fn edited_map_is_rejected_by_its_own_checksum() {
        let text = render(&sample()).replace("> 1220 <", "> 1221 <");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("BmapFileChecksum"), "{err}");
    }

    /// Made by Debian's bmaptool 3.6 (`bmaptool create`) for a 10 MiB + 1 byte image.
    const BMAPTOOL_MAP: &str = include_str!("../../tests/fixtures/bmaptool-3.6.bmap");

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

    #[test]
    fn missing_fields_and_foreign_files_get_clear_errors() {
        let err = parse("<html><body/></html>").unwrap_err().to_string();
        assert!(err.contains("not a block map"), "{err}");
        let without_type = render(&sample()).replace("<ChecksumType> sha256 </ChecksumType>", "");
        let err = parse(&without_type).unwrap_err().to_string();
        assert!(err.contains("has no <ChecksumType>"), "{err}");
        assert!(parse("<bmap version=\"2.0\"><ImageSize>").is_err());
    }
}
