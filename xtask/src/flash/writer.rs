//! Streaming an image onto a target: decompression, mapped-range writes with the first MiB last,
//! discards for unmapped ranges, and read-back verification that bypasses the page cache.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

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
    /// The same target opened O_DIRECT (None where the file system refuses it): whole aligned
    /// blocks go straight to the device, so the page cache holds no dirty copy to flush later
    /// and the read-back of a range never waits on its writeback.
    direct: Option<File>,
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
            direct: open_direct(path, true)?,
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
            direct: open_direct(path, true)?,
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

    /// Writes `data` at `offset`: O_DIRECT when both are whole 4 KiB blocks (and `data` is an
    /// aligned buffer's), through the page cache otherwise. Says whether it went direct.
    fn write_at(&self, data: &[u8], offset: u64) -> Result<bool> {
        let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64)
            && data.len().is_multiple_of(DIRECT_ALIGN)
            && data.as_ptr().align_offset(DIRECT_ALIGN) == 0;
        let (file, direct) = match &self.direct {
            Some(direct) if aligned => (direct, true),
            _ => (&self.file, false),
        };
        file.write_all_at(data, offset)
            .with_context(|| format!("could not write {} at byte {offset}", self.path.display()))?;
        Ok(direct)
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

/// Opens `path` O_DIRECT, for writing or reading; `None` where the file system does not allow it.
fn open_direct(path: &Path, write: bool) -> Result<Option<File>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path);
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not open {}", path.display())),
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

/// Buffers in flight between the I/O thread and the hashing thread: enough that neither waits on
/// the other while a chunk is being read, written or hashed.
const BUFFERS_IN_FLIGHT: usize = 4;

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

enum Piece {
    Bytes(AlignedBuf, usize),
    EndOfRange,
}

/// The I/O side of [`hash_ranges`]: takes a free buffer, fills it, hands it over for hashing.
struct Feed<'a> {
    free: &'a Receiver<AlignedBuf>,
    full: SyncSender<Piece>,
}

/// The hashing thread stopped (on a checksum mismatch); its error is the one reported.
#[derive(Debug)]
struct HasherStopped;

impl std::fmt::Display for HasherStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the hashing thread stopped")
    }
}

impl std::error::Error for HasherStopped {}

impl Feed<'_> {
    fn buffer(&self) -> Result<AlignedBuf> {
        self.free.recv().map_err(|_| HasherStopped.into())
    }

    fn hash(&self, buf: AlignedBuf, len: usize) -> Result<()> {
        self.full
            .send(Piece::Bytes(buf, len))
            .map_err(|_| HasherStopped.into())
    }

    fn end_range(&self) -> Result<()> {
        self.full
            .send(Piece::EndOfRange)
            .map_err(|_| HasherStopped.into())
    }
}

/// Runs `io` on this thread and sha256 of what it produces on a second one, so reading, writing
/// and hashing overlap on two cores. `io` hands over each range's bytes in order, then ends the
/// range; `check` sees each range's digest as soon as it is known, and its error stops `io`.
/// `pool` lends the buffers and gets them back, so a caller hashing range after range does not
/// allocate (and fault in) fresh ones each time.
fn hash_ranges(
    pool: &mut Vec<AlignedBuf>,
    io: impl FnOnce(&Feed) -> Result<()>,
    check: impl Fn(usize, &str) -> Result<()> + Send,
) -> Result<Vec<String>> {
    let (free_tx, free_rx) = sync_channel(BUFFERS_IN_FLIGHT);
    pool.resize_with(BUFFERS_IN_FLIGHT, || AlignedBuf::new(CHUNK));
    for buf in pool.drain(..) {
        free_tx.send(buf).expect("the channel holds every buffer");
    }
    let (full_tx, full_rx) = sync_channel::<Piece>(BUFFERS_IN_FLIGHT);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || -> Result<Vec<String>> {
            let mut sums = Vec::new();
            let mut hasher = Sha256::new();
            for piece in full_rx {
                match piece {
                    Piece::Bytes(mut buf, len) => {
                        hasher.update(&buf.slice(len)[..]);
                        // The I/O side may have finished and dropped its end already.
                        let _ = free_tx.send(buf);
                    }
                    Piece::EndOfRange => {
                        let sum = hex(&std::mem::take(&mut hasher).finalize());
                        check(sums.len(), &sum)?;
                        sums.push(sum);
                    }
                }
            }
            Ok(sums)
        });
        let feed = Feed {
            free: &free_rx,
            full: full_tx,
        };
        let io_result = io(&feed);
        drop(feed);
        let hash_result = hasher.join().expect("the hashing thread does not panic");
        pool.extend(free_rx.try_iter());
        match (io_result, hash_result) {
            (Err(e), Err(hash_error)) if e.is::<HasherStopped>() => Err(hash_error),
            (Err(e), _) => Err(e),
            (Ok(()), hashed) => hashed,
        }
    })
}

/// Writes the image's mapped ranges to the target, head last; checks each range's sha256 (when
/// the map has one) as it streams, and the stream's total length.
///
/// Hashing runs on a second thread. With `verify`, a third reads every range back from that path
/// past the page cache and compares its sha256 with the image's, following the writer chunk by
/// chunk (an uncached read of bytes still in the page cache makes the kernel write them out
/// first). The head is written only once every other range
/// has read back right, so a mismatch leaves the target without a partition table; ranges inside
/// the head are read back after it is written and flushed.
pub fn write_image(
    source: &mut Source,
    target: &Target,
    map: &Bmap,
    verify: Option<&Path>,
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
    let reader = verify.map(ReadBack::open).transpose()?;
    let touches_head = |index: usize| {
        let (start, _) = map.ranges[index]
            .blocks
            .byte_span(map.block_size, map.image_size);
        start < head_len
    };

    let written_upto = &WrittenUpTo::default();
    std::thread::scope(|scope| -> Result<()> {
        // Written ranges go to the verifier by index, their source digests as the hasher has them;
        // it answers on `checked` when it has checked every range sent before a `Barrier`.
        let (written_tx, written_rx) = channel::<ReadBackStep>();
        let (digest_tx, digest_rx) = channel::<String>();
        let (checked_tx, checked_rx) = channel::<()>();
        let verifier = reader.map(|reader| {
            scope.spawn(move || -> Result<()> {
                let mut digests = Vec::new();
                let mut pool = Vec::new();
                for step in written_rx {
                    let ReadBackStep::Range(index) = step else {
                        let _ = checked_tx.send(());
                        continue;
                    };
                    let actual = reader.range_digest(map, index, written_upto, &mut pool, progress)?;
                    while digests.len() <= index {
                        digests.push(digest_rx.recv().map_err(|_| HasherStopped)?);
                    }
                    let expected = &digests[index];
                    let range = &map.ranges[index];
                    let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
                    let path = reader.path.display();
                    ensure!(
                        &actual == expected,
                        "verification failed: {} (bytes {start}..{end}) read back from {path} hash to {actual}, but the image has {expected}: {path} does not hold the image",
                        range.blocks
                    );
                }
                Ok(())
            })
        });
        let verifier_stopped = || -> anyhow::Error { VerifierStopped.into() };

        let mut skipped = Vec::new();
        let write_ranges = |feed: &Feed| -> Result<()> {
            let mut since_flush = 0u64;
            for (index, range) in map.ranges.iter().enumerate() {
                let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
                if source.is_stream() && skipped.is_empty() {
                    skipped = vec![0u8; CHUNK];
                }
                source.skip_to(start, &mut skipped)?;
                if verify.is_some() && !touches_head(index) {
                    written_tx
                        .send(ReadBackStep::Range(index))
                        .map_err(|_| verifier_stopped())?;
                }
                let mut pos = start;
                while pos < end {
                    check_interrupted()?;
                    let n = ((end - pos) as usize).min(CHUNK);
                    let mut buf = feed.buffer()?;
                    let chunk = buf.slice(n);
                    source.read_exact(chunk)?;
                    let in_head = head_len.saturating_sub(pos).min(n as u64) as usize;
                    if in_head > 0 {
                        head[pos as usize..pos as usize + in_head]
                            .copy_from_slice(&chunk[..in_head]);
                    }
                    let went_direct =
                        in_head < n && target.write_at(&chunk[in_head..], pos + in_head as u64)?;
                    feed.hash(buf, n)?;
                    pos += n as u64;
                    if !went_direct {
                        since_flush += n as u64;
                    }
                    if since_flush >= FLUSH_EVERY {
                        target.sync()?;
                        since_flush = 0;
                    }
                    written_upto.advance(pos);
                    progress.inc(n as u64);
                }
                feed.end_range()?;
                outcome.written += end - start;
            }
            if source.is_stream() {
                let total = source.finish(&mut skipped)?;
                ensure!(
                    total == map.image_size,
                    "the decompressed image is {total} bytes but its block map says {}",
                    map.image_size
                );
            }
            Ok(())
        };
        // Moves the digest sender in, so the verifier stops waiting once the hasher is gone.
        let matches_map = move |index: usize, sum: &str| -> Result<()> {
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
            let _ = digest_tx.send(sum.to_string());
            Ok(())
        };
        let hashed = hash_ranges(&mut Vec::new(), write_ranges, matches_map);
        match &hashed {
            Ok(_) => written_upto.complete(),
            Err(_) => written_upto.abort(),
        }
        let written = hashed.and_then(|sums| {
            check_interrupted()?;
            target.sync()?;
            if verify.is_some() {
                // The head goes out only once the rest reads back right: a card that fails
                // verification keeps no partition table and cannot boot a bad image.
                written_tx
                    .send(ReadBackStep::Barrier)
                    .map_err(|_| verifier_stopped())?;
                checked_rx.recv().map_err(|_| verifier_stopped())?;
            }
            check_interrupted()?;
            target.file.write_all_at(&head, 0).with_context(|| {
                format!("could not write the first MiB of {}", target.path.display())
            })?;
            target.sync()?;
            for index in (0..map.ranges.len()).filter(|&i| touches_head(i)) {
                if verify.is_some() {
                    written_tx
                        .send(ReadBackStep::Range(index))
                        .map_err(|_| verifier_stopped())?;
                }
            }
            Ok(sums)
        });
        drop(written_tx);
        let verified = match verifier {
            Some(thread) => thread.join().expect("the verifying thread does not panic"),
            None => Ok(()),
        };
        match (written, verified) {
            (Err(e), Err(verify_error)) if e.is::<VerifierStopped>() => Err(verify_error),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(sums), Ok(())) => {
                outcome.range_sums = sums;
                Ok(())
            }
        }
    })?;
    Ok(outcome)
}

enum ReadBackStep {
    Range(usize),
    Barrier,
}

/// The verifying thread stopped (on a mismatch); its error is the one reported.
#[derive(Debug)]
struct VerifierStopped;

impl std::fmt::Display for VerifierStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the verifying thread stopped")
    }
}

impl std::error::Error for VerifierStopped {}

/// The target opened a second time, for reading back what was written past the page cache.
struct ReadBack {
    file: File,
    path: PathBuf,
    /// O_DIRECT; otherwise (a file system without it) each range is flushed and its cached pages
    /// dropped before it is read.
    direct: bool,
}

impl ReadBack {
    fn open(path: &Path) -> Result<ReadBack> {
        let (file, direct) = match open_direct(path, false)? {
            Some(file) => (file, true),
            None => (
                File::open(path)
                    .with_context(|| format!("could not open {} to verify it", path.display()))?,
                false,
            ),
        };
        Ok(ReadBack {
            file,
            path: path.to_path_buf(),
            direct,
        })
    }

    /// Reads range `index` back, each chunk once the writer is past it, and returns its sha256.
    fn range_digest(
        &self,
        map: &Bmap,
        index: usize,
        written: &WrittenUpTo,
        pool: &mut Vec<AlignedBuf>,
        progress: &ProgressBar,
    ) -> Result<String> {
        let range = &map.ranges[index];
        let path = self.path.display();
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        // Reading and hashing overlap here too, on a fourth thread.
        let read_range = |feed: &Feed| -> Result<()> {
            let mut pos = start;
            while pos < end {
                check_interrupted()?;
                let want = ((end - pos) as usize).min(CHUNK);
                written.wait_for(pos + want as u64)?;
                if !self.direct {
                    rustix::fs::fdatasync(self.file.as_fd())
                        .with_context(|| format!("could not flush {path}"))?;
                    rustix::fs::fadvise(
                        self.file.as_fd(),
                        pos,
                        std::num::NonZeroU64::new(want as u64),
                        rustix::fs::Advice::DontNeed,
                    )
                    .with_context(|| format!("could not drop cached pages of {path}"))?;
                }
                let mut buf = feed.buffer()?;
                let got = self
                    .file
                    .read_at(buf.slice(want.next_multiple_of(DIRECT_ALIGN)), pos)
                    .with_context(|| format!("could not read {path} back at byte {pos}"))?;
                ensure!(
                    got > 0,
                    "{path} ends at byte {pos}, inside {} of the image",
                    range.blocks
                );
                let used = got.min(want);
                feed.hash(buf, used)?;
                pos += used as u64;
                progress.inc(used as u64);
            }
            feed.end_range()
        };
        let mut digests = hash_ranges(pool, read_range, |_, _| Ok(()))?;
        digests
            .pop()
            .context("internal error: a range read back without a digest")
    }
}

/// How far the writer has got through the image, for the verifier to follow chunk by chunk.
#[derive(Default)]
struct WrittenUpTo {
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl WrittenUpTo {
    fn set(&self, update: impl FnOnce(&mut (u64, bool))) {
        update(&mut self.state.lock().expect("the writer does not panic"));
        self.moved.notify_all();
    }

    fn advance(&self, to: u64) {
        self.set(|state| state.0 = to);
    }

    /// Everything is written: any range may be read.
    fn complete(&self) {
        self.set(|state| state.0 = u64::MAX);
    }

    /// Writing failed: a verifier waiting for more gives up.
    fn abort(&self) {
        self.set(|state| state.1 = true);
    }

    fn wait_for(&self, end: u64) -> Result<()> {
        let mut state = self.state.lock().expect("the writer does not panic");
        while state.0 < end {
            ensure!(!state.1, "writing stopped before byte {end}");
            state = self.moved.wait(state).expect("the writer does not panic");
        }
        Ok(())
    }
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

    /// A 3 MiB image with data in its first MiB (the head) and its last MiB, and its map.
    fn two_range_image(dir: &Path) -> (PathBuf, Bmap) {
        let image = dir.join("image.img");
        let bytes: Vec<u8> = (0..3 * HEAD_BYTES).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&image, bytes).unwrap();
        let range = |first, last| MappedRange {
            blocks: BlockRange { first, last },
            sha256: None,
        };
        let map = Bmap {
            image_size: 3 * HEAD_BYTES,
            block_size: 4096,
            ranges: vec![range(0, 255), range(512, 767)],
        };
        (image, map)
    }

    #[test]
    fn written_ranges_are_read_back_and_match() {
        let dir = tempfile::tempdir().unwrap();
        let (image, map) = two_range_image(dir.path());
        let target_path = dir.path().join("target.img");
        let target = Target::open_file(&target_path, map.image_size).unwrap();
        let mut source = Source::open(&image, Compression::None).unwrap();
        let bar = ProgressBar::hidden();
        let outcome = write_image(&mut source, &target, &map, Some(&target_path), &bar).unwrap();
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
        let (image, map) = two_range_image(dir.path());
        let target_path = dir.path().join("target.img");
        let target = Target::open_file(&target_path, map.image_size).unwrap();
        // Reading back from a file that does not hold what was written stands in for a card
        // that lost or changed it.
        let wrong = dir.path().join("wrong.img");
        std::fs::write(&wrong, vec![0x5au8; 3 * HEAD_BYTES as usize]).unwrap();
        let mut source = Source::open(&image, Compression::None).unwrap();
        let err = write_image(
            &mut source,
            &target,
            &map,
            Some(&wrong),
            &ProgressBar::hidden(),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("verification failed: blocks 512-767"), "{err}");
        let head = std::fs::read(&target_path).unwrap();
        assert!(
            head[..HEAD_BYTES as usize].iter().all(|&b| b == 0),
            "the head was written"
        );
    }
}
