//! Writing an image onto a target, in named stages: clear the head, discard the holes, stream
//! the mapped ranges (hashed on a second thread and, with verification, read back on a third),
//! then write the head once everything else has read back right.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{channel, Sender};

use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;

use super::hashing::{first_cause, hash_ranges, Feed, Stopped};
use super::interrupt::check_interrupted;
use super::policy::{self, Outcome, CHUNK, FLUSH_EVERY};
use super::readback::{ReadBack, Verifier, WrittenUpTo};
use super::source::Source;
use super::target::Target;
use crate::bmap::Bmap;

/// Writes the image's mapped ranges to the target, head last; checks each range's sha256 (when
/// the map has one) as it streams, and the stream's total length.
///
/// Hashing runs on a second thread. With `verify`, a third reads every range back from that path
/// past the page cache and compares its sha256 with the image's, following the writer chunk by
/// chunk (an uncached read of bytes still in the page cache makes the kernel write them out
/// first). The head is written only once every other range has read back right, so a mismatch
/// leaves the target without a partition table; ranges inside the head are read back after it
/// is written and flushed.
pub fn write_image(
    source: &mut Source,
    target: &Target,
    map: &Bmap,
    verify: Option<&Path>,
    progress: &ProgressBar,
) -> Result<Outcome> {
    let head_len = policy::head_len(map);
    clear_head(target, head_len)?;
    let mut outcome = discard_unmapped(target, map, head_len)?;
    let reader = verify.map(ReadBack::open).transpose()?;
    let written_upto = WrittenUpTo::default();
    let (written, range_sums) = std::thread::scope(|scope| {
        let (digest_tx, digest_rx) = channel();
        let verifier = reader
            .map(|reader| Verifier::spawn(scope, reader, map, &written_upto, digest_rx, progress));
        let mut streamer = Streamer {
            source,
            target,
            map,
            head: vec![0u8; head_len as usize],
            written_upto: &written_upto,
            verifier: verifier.as_ref(),
            progress,
            unflushed: 0,
            written: 0,
        };
        // The digest sender moves into the check, so the verifier stops waiting once the hasher
        // is gone.
        let hashed = hash_ranges(
            &mut Vec::new(),
            |feed| streamer.write_ranges(feed),
            move |index, sum| matches_map(map, index, sum, &digest_tx),
        );
        match &hashed {
            Ok(_) => written_upto.complete(),
            Err(_) => written_upto.abort(),
        }
        let finished = hashed.and_then(|sums| streamer.write_head().map(|written| (written, sums)));
        let verified = verifier.map_or(Ok(()), Verifier::finish);
        first_cause(finished, verified, Stopped::Verifier).map(|(done, ())| done)
    })?;
    outcome.written = written;
    outcome.range_sums = range_sums;
    Ok(outcome)
}

/// First act on a target: zero the head, so from here on it has no partition table.
fn clear_head(target: &Target, head_len: u64) -> Result<()> {
    target
        .file
        .write_all_at(&vec![0u8; head_len as usize], 0)
        .with_context(|| format!("could not clear the first MiB of {}", target.path.display()))?;
    target.sync()
}

/// Discards the holes; once the target refuses, the rest is left as it is (and counted).
fn discard_unmapped(target: &Target, map: &Bmap, head_len: u64) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut can_discard = true;
    for (start, end) in policy::discard_spans(map, head_len) {
        if can_discard && target.discard(start, end - start)? {
            outcome.discarded += end - start;
        } else {
            can_discard = false;
            outcome.left_as_is += end - start;
        }
    }
    Ok(outcome)
}

/// The hasher's check of range `index`: its sum against the map's, then on to the verifier.
fn matches_map(map: &Bmap, index: usize, sum: &str, verifier: &Sender<String>) -> Result<()> {
    let range = &map.ranges[index];
    if let Some(expected) = &range.sha256 {
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        ensure!(
            sum == expected,
            "{} of the image (bytes {start}..{end}) hash to {sum}, but the block map says {expected}: the image is corrupt",
            range.blocks
        );
    }
    // Without a verifier nobody listens, which is fine.
    let _ = verifier.send(sum.to_string());
    Ok(())
}

/// The writing side: image bytes from the source to the target, the head kept back.
struct Streamer<'a> {
    source: &'a mut Source,
    target: &'a Target,
    map: &'a Bmap,
    /// The image's head, collected as it streams past and written last.
    head: Vec<u8>,
    written_upto: &'a WrittenUpTo,
    verifier: Option<&'a Verifier<'a>>,
    progress: &'a ProgressBar,
    /// Bytes written through the page cache since the last flush.
    unflushed: u64,
    written: u64,
}

impl Streamer<'_> {
    /// Every mapped range in order into the feed (for hashing) and onto the target; then, for a
    /// compressed image, the rest of the stream, whose length must be the map's.
    fn write_ranges(&mut self, feed: &Feed) -> Result<()> {
        // Scratch for the bytes a stream decodes between ranges (a plain file seeks instead).
        let mut skipped = if self.source.is_stream() {
            vec![0u8; CHUNK]
        } else {
            Vec::new()
        };
        let map = self.map;
        for (index, range) in map.ranges.iter().enumerate() {
            let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
            self.source.skip_to(start, &mut skipped)?;
            if let Some(verifier) = self.verifier {
                if !policy::touches_head(map, index) {
                    verifier.range_written(index)?;
                }
            }
            self.write_range(feed, start, end)?;
            feed.end_range()?;
            self.written += end - start;
        }
        if self.source.is_stream() {
            let total = self.source.finish(&mut skipped)?;
            ensure!(
                total == map.image_size,
                "the decompressed image is {total} bytes but its block map says {}",
                map.image_size
            );
        }
        Ok(())
    }

    /// Bytes `start..end` of the image, chunk by chunk.
    fn write_range(&mut self, feed: &Feed, start: u64, end: u64) -> Result<()> {
        let mut pos = start;
        while pos < end {
            check_interrupted()?;
            let n = ((end - pos) as usize).min(CHUNK);
            let mut buf = feed.buffer()?;
            let chunk = buf.slice(n);
            self.source.read_exact(chunk)?;
            self.write_chunk(chunk, pos)?;
            feed.hash(buf, n)?;
            pos += n as u64;
            self.written_upto.advance(pos);
            self.progress.inc(n as u64);
        }
        Ok(())
    }

    /// One chunk at `pos`: its part in the head kept back, the rest written (and flushed every
    /// [`FLUSH_EVERY`] bytes that went through the page cache).
    fn write_chunk(&mut self, chunk: &[u8], pos: u64) -> Result<()> {
        let in_head = policy::bytes_in_head(pos, chunk.len(), self.head.len() as u64);
        if in_head > 0 {
            self.head[pos as usize..pos as usize + in_head].copy_from_slice(&chunk[..in_head]);
        }
        let went_direct = in_head < chunk.len()
            && self
                .target
                .write_at(&chunk[in_head..], pos + in_head as u64)?;
        if !went_direct {
            self.unflushed += chunk.len() as u64;
        }
        if self.unflushed >= FLUSH_EVERY {
            self.target.sync()?;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Last stage: flush; with a verifier, wait until the rest reads back right (a card that
    /// fails verification keeps no partition table and cannot boot a bad image); then write and
    /// flush the head and have the ranges inside it read back. Returns the bytes written.
    fn write_head(self) -> Result<u64> {
        check_interrupted()?;
        self.target.sync()?;
        if let Some(verifier) = self.verifier {
            verifier.all_checked()?;
        }
        check_interrupted()?;
        self.target
            .file
            .write_all_at(&self.head, 0)
            .with_context(|| {
                format!(
                    "could not write the first MiB of {}",
                    self.target.path.display()
                )
            })?;
        self.target.sync()?;
        if let Some(verifier) = self.verifier {
            for index in (0..self.map.ranges.len()).filter(|&i| policy::touches_head(self.map, i)) {
                verifier.range_written(index)?;
            }
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmap::{BlockRange, MappedRange};
    use crate::flash::policy::HEAD_BYTES;
    use crate::flash::source::Compression;
    use std::path::PathBuf;

    fn range(first: u64, last: u64) -> MappedRange {
        MappedRange {
            blocks: BlockRange { first, last },
            sha256: None,
        }
    }

    /// A 3 MiB image with data in its first MiB (the head) and its last MiB, and its map.
    fn two_range_image(dir: &Path) -> (PathBuf, Bmap) {
        let image = dir.join("image.img");
        let bytes: Vec<u8> = (0..3 * HEAD_BYTES).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&image, bytes).unwrap();
        let map = Bmap {
            image_size: 3 * HEAD_BYTES,
            block_size: 4096,
            ranges: vec![range(0, 255), range(512, 767)],
        };
        (image, map)
    }

    /// Writes [`two_range_image`] to `target.img` in `dir`, reading back from `read_back` (or
    /// the target itself).
    fn write_two_ranges(
        dir: &Path,
        read_back: Option<&Path>,
    ) -> (PathBuf, PathBuf, Result<Outcome>) {
        let (image, map) = two_range_image(dir);
        let target_path = dir.join("target.img");
        let target = Target::open_file(&target_path, map.image_size).unwrap();
        let mut source = Source::open(&image, Compression::None).unwrap();
        let verify = read_back.unwrap_or(&target_path);
        let outcome = write_image(
            &mut source,
            &target,
            &map,
            Some(verify),
            &ProgressBar::hidden(),
        );
        (image, target_path, outcome)
    }

    #[test]
    fn written_ranges_are_read_back_and_match() {
        let dir = tempfile::tempdir().unwrap();
        let (image, target_path, outcome) = write_two_ranges(dir.path(), None);
        let outcome = outcome.unwrap();
        assert_eq!(outcome.written, 2 * HEAD_BYTES);
        assert_eq!(outcome.range_sums.len(), 2);
        let (want, got) = (
            std::fs::read(&image).unwrap(),
            std::fs::read(&target_path).unwrap(),
        );
        assert!(want[..HEAD_BYTES as usize] == got[..HEAD_BYTES as usize]);
        assert!(want[2 * HEAD_BYTES as usize..] == got[2 * HEAD_BYTES as usize..]);
    }

    #[test]
    fn a_read_back_mismatch_names_the_range_and_the_head_stays_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        // Reading back from a file that does not hold what was written stands in for a card
        // that lost or changed it.
        let wrong = dir.path().join("wrong.img");
        std::fs::write(&wrong, vec![0x5au8; 3 * HEAD_BYTES as usize]).unwrap();
        let (_, target_path, outcome) = write_two_ranges(dir.path(), Some(&wrong));
        let err = outcome.unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("verification failed: blocks 512-767"), "{err}");
        let head = std::fs::read(&target_path).unwrap();
        assert!(
            head[..HEAD_BYTES as usize].iter().all(|&b| b == 0),
            "the head was written"
        );
    }

    /// A compressed image whose map has no mapped block (all zeros) is still read to its end,
    /// and its length checked against the map's.
    #[test]
    fn a_compressed_image_with_nothing_mapped_is_measured_whole() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("zeros.img.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&image).unwrap(),
            Default::default(),
        );
        encoder.write_all(&vec![0u8; 2 << 20]).unwrap();
        encoder.finish().unwrap();
        let map = Bmap {
            image_size: 2 << 20,
            block_size: 4096,
            ranges: vec![],
        };
        let target_path = dir.path().join("target.img");
        let target = Target::open_file(&target_path, map.image_size).unwrap();
        let mut source = Source::open(&image, Compression::Gzip).unwrap();
        let bar = ProgressBar::hidden();
        let outcome = write_image(&mut source, &target, &map, Some(&target_path), &bar).unwrap();
        assert_eq!(outcome.written, 0);
        // And a map claiming another length is caught.
        let longer = Bmap {
            image_size: 3 << 20,
            ..map
        };
        let mut source = Source::open(&image, Compression::Gzip).unwrap();
        let err = write_image(&mut source, &target, &longer, None, &bar).unwrap_err();
        assert!(
            err.to_string()
                .contains("decompressed image is 2097152 bytes"),
            "{err:#}"
        );
    }
}
