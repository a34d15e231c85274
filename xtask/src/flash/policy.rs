//! The write policy, as pure arithmetic on the block map: the head (first MiB) is zeroed first
//! and written last, holes past the head are discarded in whole 4 KiB blocks, and what happened
//! to the unmapped blocks is reported. No I/O here, so every rule is unit-tested.

use crate::bmap::Bmap;
use indicatif::HumanBytes;

/// The partition table and BL1 live here; it is zeroed first and written last, so a card whose
/// write was cut short has no partition table and cannot half-boot.
pub const HEAD_BYTES: u64 = 1 << 20;
/// One buffer in flight: the unit of reading, writing, hashing and progress.
pub const CHUNK: usize = 4 << 20;
/// Page-cache writes are flushed this often so the progress bar tells the truth about the card.
pub const FLUSH_EVERY: u64 = 256 << 20;
/// Whole blocks as O_DIRECT and discards want them: start and length multiples of 4 KiB.
pub const ALIGN: usize = 4096;

/// How many bytes of the head this image has (a tiny image is all head).
pub fn head_len(map: &Bmap) -> u64 {
    HEAD_BYTES.min(map.image_size)
}

/// Whether range `index` starts inside the head: it is read back only after the head is written.
pub fn touches_head(map: &Bmap, index: usize) -> bool {
    let (start, _) = map.ranges[index]
        .blocks
        .byte_span(map.block_size, map.image_size);
    start < head_len(map)
}

/// Of a chunk of `len` bytes at `pos`, how many at its start fall in the head (kept back for the
/// end rather than written now).
pub fn bytes_in_head(pos: u64, len: usize, head_len: u64) -> usize {
    head_len.saturating_sub(pos).min(len as u64) as usize
}

/// Byte spans to discard: the map's holes past the head, trimmed to whole 4 KiB blocks.
pub fn discard_spans(map: &Bmap, head: u64) -> Vec<(u64, u64)> {
    let align = ALIGN as u64;
    map.unmapped_spans()
        .into_iter()
        .filter_map(|(start, end)| {
            let start = start.max(head).next_multiple_of(align);
            let end = end - end % align;
            (start < end).then_some((start, end))
        })
        .collect()
}

/// What a flash did, in bytes.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: u64,
    pub discarded: u64,
    /// Unmapped bytes the target could not discard: an earlier image's data may remain there.
    pub left_as_is: u64,
    /// sha256 of each range as read from the image (equal to the map's where it has one).
    pub range_sums: Vec<String>,
}

/// One line about what happened to the blocks the map leaves out.
pub fn describe_unmapped(outcome: &Outcome) -> Option<String> {
    match (outcome.discarded, outcome.left_as_is) {
        (0, 0) => None,
        (d, 0) => Some(format!("discarded {} the image does not use", HumanBytes(d))),
        (d, left) => Some(format!(
            "{} the image does not use could not be discarded and was left as it was ({} discarded): \
             data from an earlier image may remain there",
            HumanBytes(left),
            HumanBytes(d)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmap::{BlockRange, MappedRange};

    fn map_with(image_size: u64, ranges: &[(u64, u64)]) -> Bmap {
        Bmap {
            image_size,
            block_size: 4096,
            ranges: ranges
                .iter()
                .map(|&(first, last)| MappedRange {
                    blocks: BlockRange { first, last },
                    sha256: None,
                })
                .collect(),
        }
    }

    #[test]
    fn discards_skip_the_head_and_partial_blocks() {
        let map = map_with(3 * HEAD_BYTES + 100, &[(0, 0), (512, 512)]);
        // Hole 1: 4096..2 MiB, head part dropped. Hole 2: 2 MiB + 4096 .. end, short tail dropped.
        assert_eq!(
            discard_spans(&map, HEAD_BYTES),
            vec![
                (HEAD_BYTES, 2 * HEAD_BYTES),
                (2 * HEAD_BYTES + 4096, 3 * HEAD_BYTES)
            ]
        );
    }

    #[test]
    fn ranges_starting_in_the_head_wait_for_it() {
        let map = map_with(3 * HEAD_BYTES, &[(0, 3), (255, 300), (256, 260)]);
        let in_head: Vec<bool> = (0..3).map(|i| touches_head(&map, i)).collect();
        assert_eq!(in_head, [true, true, false]);
        // A 100 KiB image is all head.
        assert_eq!(head_len(&map_with(100 << 10, &[])), 100 << 10);
    }

    #[test]
    fn only_the_part_of_a_chunk_inside_the_head_is_kept_back() {
        assert_eq!(bytes_in_head(0, CHUNK, HEAD_BYTES), HEAD_BYTES as usize);
        assert_eq!(bytes_in_head(HEAD_BYTES - 10, 4096, HEAD_BYTES), 10);
        assert_eq!(bytes_in_head(HEAD_BYTES, 4096, HEAD_BYTES), 0);
        assert_eq!(bytes_in_head(5, 7, HEAD_BYTES), 7);
    }

    #[test]
    fn unmapped_report_names_stale_data() {
        let outcome = Outcome {
            discarded: 0,
            left_as_is: 5 << 20,
            ..Default::default()
        };
        assert!(describe_unmapped(&outcome)
            .unwrap()
            .contains("data from an earlier image may remain"));
        assert_eq!(describe_unmapped(&Outcome::default()), None);
    }
}
