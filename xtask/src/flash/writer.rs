//! Streaming an image onto a target: decompression, mapped-range writes with the first MiB last,
//! discards for unmapped ranges, and read-back verification that bypasses the page cache.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, ensure, Context, Result};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::bmap::{human_size, Bmap};
use crate::util::hex;

/// The partition table and BL1 live here; it is zeroed first and written last, so a card whose
/// write was cut short has no partition table and cannot half-boot.
pub const HEAD_BYTES: u64 = 1 << 20;
const CHUNK: usize = 4 << 20;
/// Page-cache writes are flushed this often so the progress bar tells the truth about the card.
const FLUSH_EVERY: u64 = 256 << 20;
const DIRECT_ALIGN: usize = 4096;

/// Set by the Ctrl-C handler; the writer stops at the next chunk.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Gzip,
}

/// Recognises xz and gzip by their magic bytes, whatever the file is called.
pub fn compression_of(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else {
        Compression::None
    }
}

pub fn detect_compression(path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 6];
    let mut file =
        File::open(path).with_context(|| format!("could not open image {}", path.display()))?;
    let n = file
        .read(&mut magic)
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(compression_of(&magic[..n]))
}

/// The image's bytes in order: read in place for a plain file, decoded on the fly otherwise.
pub struct Source {
    plain: Option<File>,
    stream: Option<Box<dyn Read>>,
    pos: u64,
    path: PathBuf,
}

impl Source {
    pub fn open(path: &Path, compression: Compression) -> Result<Source> {
        let file =
            File::open(path).with_context(|| format!("could not open image {}", path.display()))?;
        let (plain, stream): (Option<File>, Option<Box<dyn Read>>) = match compression {
            Compression::None => (Some(file), None),
            Compression::Xz => (
                None,
                Some(Box::new(liblzma::read::XzDecoder::new_multi_decoder(
                    BufReader::new(file),
                ))),
            ),
            Compression::Gzip => (
                None,
                Some(Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(
                    file,
                )))),
            ),
        };
        Ok(Source {
            plain,
            stream,
            pos: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Fills `buf` from the current position; an early end of the image is an error.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let result = match (&self.plain, &mut self.stream) {
            (Some(file), _) => file.read_exact_at(buf, self.pos),
            (None, Some(stream)) => stream.read_exact(buf),
            (None, None) => unreachable!("a source is either plain or a stream"),
        };
        result.with_context(|| {
            format!(
                "could not read {} at byte {} (is it truncated or corrupt?)",
                self.path.display(),
                self.pos
            )
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Moves forward to `target`, decoding and dropping the bytes between for a stream.
    pub fn skip_to(&mut self, target: u64, buf: &mut [u8]) -> Result<()> {
        ensure!(target >= self.pos, "internal error: ranges out of order");
        if self.plain.is_some() {
            self.pos = target;
            return Ok(());
        }
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(buf.len());
            self.read_exact(&mut buf[..n])?;
        }
        Ok(())
    }

    /// Reads a stream to its end (so the format's own integrity check runs) and returns its length.
    pub fn finish(&mut self, buf: &mut [u8]) -> Result<u64> {
        if let Some(stream) = &mut self.stream {
            loop {
                check_interrupted()?;
                let n = stream.read(buf).with_context(|| {
                    format!(
                        "{} is truncated or corrupt after byte {}",
                        self.path.display(),
                        self.pos
                    )
                })?;
                if n == 0 {
                    break;
                }
                self.pos += n as u64;
            }
        }
        Ok(self.pos)
    }
}

/// Decompresses a whole image once, for its length and sha256 (compressed image without a map).
pub fn measure(path: &Path, compression: Compression) -> Result<(u64, String)> {
    let mut source = Source::open(path, compression)?;
    let stream = source
        .stream
        .as_mut()
        .context("internal error: measuring a plain file")?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = stream.read(&mut buf).with_context(|| {
            format!(
                "{} is truncated or corrupt after byte {len}",
                path.display()
            )
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex(&hasher.finalize())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    BlockDevice,
    RegularFile,
}

pub struct Target {
    pub file: File,
    pub path: PathBuf,
    pub kind: TargetKind,
}

mod ioctls {
    use rustix::ioctl::{opcode, Opcode};
    pub const BLKGETSIZE64: Opcode = opcode::read::<u64>(0x12, 114);
    pub const BLKDISCARD: Opcode = opcode::none(0x12, 119);
    pub const BLKRRPART: Opcode = opcode::none(0x12, 95);
}

impl Target {
    /// Opens a block device for writing, exclusively: the kernel refuses if anything has it open
    /// exclusively (a mounted file system, swap, a mapping), as bmaptool relies on too.
    pub fn open_device(path: &Path) -> Result<Target> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::EXCL.bits() as i32)
            .open(path)
            .with_context(|| {
                format!(
                    "could not open {} exclusively (is it mounted or in use by another program?)",
                    path.display()
                )
            })?;
        Ok(Target {
            file,
            path: path.to_path_buf(),
            kind: TargetKind::BlockDevice,
        })
    }

    /// A regular file as target (tests, benchmarks), grown to the image size as a sparse file.
    pub fn open_file(path: &Path, image_size: u64) -> Result<Target> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("could not open target file {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("could not stat {}", path.display()))?
            .len();
        if len < image_size {
            file.set_len(image_size)
                .with_context(|| format!("could not grow {}", path.display()))?;
        }
        Ok(Target {
            file,
            path: path.to_path_buf(),
            kind: TargetKind::RegularFile,
        })
    }

    pub fn size(&self) -> Result<u64> {
        match self.kind {
            TargetKind::RegularFile => Ok(self.file.metadata()?.len()),
            TargetKind::BlockDevice => {
                // SAFETY: BLKGETSIZE64 writes one u64.
                let getter =
                    unsafe { rustix::ioctl::Getter::<{ ioctls::BLKGETSIZE64 }, u64>::new() };
                // SAFETY: the fd is an open block device and the getter matches the opcode.
                unsafe { rustix::ioctl::ioctl(self.file.as_fd(), getter) }
                    .with_context(|| format!("could not read the size of {}", self.path.display()))
            }
        }
    }

    fn sync(&self) -> Result<()> {
        rustix::fs::fdatasync(self.file.as_fd())
            .with_context(|| format!("could not flush {}", self.path.display()))
    }

    /// Tells the device (or file system) a span holds nothing: BLKDISCARD, or a punched hole.
    /// `Ok(false)` when it cannot.
    fn discard(&self, start: u64, len: u64) -> Result<bool> {
        let result = match self.kind {
            TargetKind::BlockDevice => {
                // SAFETY: BLKDISCARD reads a [start, length] pair of u64.
                let setter = unsafe {
                    rustix::ioctl::Setter::<{ ioctls::BLKDISCARD }, [u64; 2]>::new([start, len])
                };
                // SAFETY: the fd is an open block device and the setter matches the opcode.
                unsafe { rustix::ioctl::ioctl(self.file.as_fd(), setter) }
            }
            TargetKind::RegularFile => rustix::fs::fallocate(
                self.file.as_fd(),
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                start,
                len,
            ),
        };
        match result {
            Ok(()) => Ok(true),
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL,
            ) => Ok(false),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "could not discard bytes {start}.. of {}",
                    self.path.display()
                )
            }),
        }
    }

    /// Asks the kernel to re-read the partition table; a warning, not an error, if it cannot.
    pub fn reread_partitions(&self) -> Option<String> {
        if self.kind != TargetKind::BlockDevice {
            return None;
        }
        // SAFETY: BLKRRPART takes no argument.
        let call = unsafe { rustix::ioctl::NoArg::<{ ioctls::BLKRRPART }>::new() };
        // SAFETY: the fd is an open block device.
        match unsafe { rustix::ioctl::ioctl(self.file.as_fd(), call) } {
            Ok(()) => None,
            Err(e) => Some(format!(
                "the kernel could not re-read the partition table of {} ({e}); unplug and replug the card to see the new partitions",
                self.path.display()
            )),
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub written: u64,
    pub discarded: u64,
    /// Unmapped bytes the target could not discard: an earlier image's data may remain there.
    pub left_as_is: u64,
    /// sha256 of each range as read from the image (equal to the map's where it has one).
    pub range_sums: Vec<String>,
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted by Ctrl-C");
    }
    Ok(())
}

/// Byte spans to discard: the map's holes past the head, trimmed to whole 4 KiB blocks.
pub fn discard_spans(map: &Bmap, head: u64) -> Vec<(u64, u64)> {
    map.unmapped_spans()
        .into_iter()
        .filter_map(|(start, end)| {
            let start = start.max(head).next_multiple_of(DIRECT_ALIGN as u64);
            let end = end - end % DIRECT_ALIGN as u64;
            (start < end).then_some((start, end))
        })
        .collect()
}

/// Writes the image's mapped ranges to the target, head last; checks each range's sha256 (when
/// the map has one) as it streams, and the stream's total length.
pub fn write_image(
    source: &mut Source,
    target: &Target,
    map: &Bmap,
    progress: &ProgressBar,
) -> Result<Outcome> {
    let head_len = HEAD_BYTES.min(map.image_size);
    let mut head = vec![0u8; head_len as usize];
    target
        .file
        .write_all_at(&head, 0)
        .with_context(|| format!("could not clear the first MiB of {}", target.path.display()))?;
    target.sync()?;

    let mut outcome = Outcome::default();
    let mut can_discard = true;
    for (start, end) in discard_spans(map, head_len) {
        if can_discard && target.discard(start, end - start)? {
            outcome.discarded += end - start;
        } else {
            can_discard = false;
            outcome.left_as_is += end - start;
        }
    }

    let mut buf = vec![0u8; CHUNK];
    let mut since_flush = 0u64;
    for range in &map.ranges {
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        source.skip_to(start, &mut buf)?;
        let mut hasher = Sha256::new();
        let mut pos = start;
        while pos < end {
            check_interrupted()?;
            let n = ((end - pos) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            source.read_exact(chunk)?;
            hasher.update(&*chunk);
            let in_head = head_len.saturating_sub(pos).min(n as u64) as usize;
            if in_head > 0 {
                head[pos as usize..pos as usize + in_head].copy_from_slice(&chunk[..in_head]);
            }
            if in_head < n {
                target
                    .file
                    .write_all_at(&chunk[in_head..], pos + in_head as u64)
                    .with_context(|| {
                        format!("could not write {} at byte {}", target.path.display(), pos)
                    })?;
            }
            pos += n as u64;
            since_flush += n as u64;
            if since_flush >= FLUSH_EVERY {
                target.sync()?;
                since_flush = 0;
            }
            progress.inc(n as u64);
        }
        let sum = hex(&hasher.finalize());
        if let Some(expected) = &range.sha256 {
            ensure!(
                &sum == expected,
                "{} of the image (bytes {start}..{end}) hash to {sum}, but the block map says {expected}: the image is corrupt",
                range.blocks
            );
        }
        outcome.range_sums.push(sum);
        outcome.written += end - start;
    }
    if source.is_stream() {
        let total = source.finish(&mut buf)?;
        ensure!(
            total == map.image_size,
            "the decompressed image is {total} bytes but its block map says {}",
            map.image_size
        );
    }
    check_interrupted()?;
    target.sync()?;
    target
        .file
        .write_all_at(&head, 0)
        .with_context(|| format!("could not write the first MiB of {}", target.path.display()))?;
    target.sync()?;
    Ok(outcome)
}

/// A buffer O_DIRECT accepts: start and length aligned to 4 KiB.
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let offset = storage.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { storage, offset }
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + len]
    }
}

/// Opens the target for reading past the page cache: O_DIRECT, or where the file system refuses
/// that, a normal open after dropping the (already flushed) cached pages.
fn open_uncached(path: &Path) -> Result<File> {
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path);
    match direct {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            let file = File::open(path)
                .with_context(|| format!("could not open {} to verify it", path.display()))?;
            rustix::fs::fadvise(file.as_fd(), 0, None, rustix::fs::Advice::DontNeed)
                .with_context(|| format!("could not drop cached pages of {}", path.display()))?;
            Ok(file)
        }
        Err(e) => Err(e).with_context(|| format!("could not open {} to verify it", path.display())),
    }
}

/// Reads every written range back from the target, bypassing the page cache, and compares its
/// sha256 with the image's; the first difference is an error naming the range.
pub fn verify(
    path: &Path,
    map: &Bmap,
    range_sums: &[String],
    progress: &ProgressBar,
) -> Result<()> {
    let file = open_uncached(path)?;
    let mut buf = AlignedBuf::new(CHUNK);
    for (range, expected) in map.ranges.iter().zip(range_sums) {
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        let mut hasher = Sha256::new();
        let mut pos = start;
        while pos < end {
            check_interrupted()?;
            let want = ((end - pos) as usize).min(CHUNK);
            let aligned = want.next_multiple_of(DIRECT_ALIGN);
            let chunk = buf.slice(aligned);
            let got = file
                .read_at(chunk, pos)
                .with_context(|| format!("could not read {} back at byte {pos}", path.display()))?;
            ensure!(
                got > 0,
                "{} ends at byte {pos}, inside {} of the image",
                path.display(),
                range.blocks
            );
            let used = got.min(want);
            hasher.update(&chunk[..used]);
            pos += used as u64;
            progress.inc(used as u64);
        }
        let actual = hex(&hasher.finalize());
        ensure!(
            &actual == expected,
            "verification failed: {} (bytes {start}..{end}) read back from {} hash to {actual}, but the image has {expected}",
            range.blocks,
            path.display()
        );
    }
    Ok(())
}

/// One line about what happened to the blocks the map leaves out.
pub fn describe_unmapped(outcome: &Outcome) -> Option<String> {
    match (outcome.discarded, outcome.left_as_is) {
        (0, 0) => None,
        (d, 0) => Some(format!("discarded {} the image does not use", human_size(d))),
        (d, left) => Some(format!(
            "{} the image does not use could not be discarded and was left as it was ({} discarded): \
             data from an earlier image may remain there",
            human_size(left),
            human_size(d)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmap::{BlockRange, MappedRange};

    #[test]
    fn magic_bytes_pick_the_decoder() {
        assert_eq!(
            compression_of(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(compression_of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(compression_of(&[0x55, 0xaa]), Compression::None);
        assert_eq!(compression_of(&[]), Compression::None);
    }

    #[test]
    fn discards_skip_the_head_and_partial_blocks() {
        let map = Bmap {
            image_size: 3 * HEAD_BYTES + 100,
            block_size: 4096,
            ranges: vec![
                MappedRange {
                    blocks: BlockRange { first: 0, last: 0 },
                    sha256: None,
                },
                MappedRange {
                    blocks: BlockRange {
                        first: 512,
                        last: 512,
                    },
                    sha256: None,
                },
            ],
        };
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
