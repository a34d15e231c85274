//! The block map as data: ranges of 4 KiB blocks with their sha256, and the arithmetic on them
//! (bytes covered, holes, ranges from data extents). No I/O.

/// bmaptool's block size; every map Berth writes uses it.
pub const BLOCK_SIZE: u64 = 4096;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn r(first: u64, last: u64) -> BlockRange {
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

    pub(crate) fn sample() -> Bmap {
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
    fn unmapped_spans_are_the_complement() {
        assert_eq!(
            sample().unmapped_spans(),
            vec![(0, 4096), (12288, 1220 * 4096), (1221 * 4096, 2560 * 4096)]
        );
    }
}
