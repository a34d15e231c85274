//! sha256 on a second thread: the thread doing I/O fills aligned buffers and hands them over,
//! the hashing thread digests them and gives them back, so reading, writing and hashing overlap
//! on two cores. Used for the image's ranges as they are written and for each range read back.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::policy::{ALIGN, CHUNK};
use crate::util::hex;

/// Buffers in flight between the I/O thread and the hashing thread: enough that neither waits on
/// the other while a chunk is being read, written or hashed.
const BUFFERS_IN_FLIGHT: usize = 4;

/// A buffer O_DIRECT accepts: start and length aligned to 4 KiB.
pub struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + ALIGN];
        let offset = storage.as_ptr().align_offset(ALIGN);
        AlignedBuf { storage, offset }
    }

    pub fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + len]
    }
}

enum Piece {
    Bytes(AlignedBuf, usize),
    EndOfRange,
}

/// A helper thread that stopped on an error of its own (a checksum mismatch); that error, not
/// this one, is the one to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Hasher,
    Verifier,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::Hasher => "the hashing thread stopped",
            Stopped::Verifier => "the verifying thread stopped",
        })
    }
}

impl std::error::Error for Stopped {}

/// Both results of work on this thread (`main`) and on a `helper` thread it fed. When `main`
/// failed only because the helper stopped, the helper's own error is the one that says why.
pub fn first_cause<T, U>(main: Result<T>, helper: Result<U>, which: Stopped) -> Result<(T, U)> {
    match (main, helper) {
        (Err(e), Err(cause)) if e.downcast_ref::<Stopped>() == Some(&which) => Err(cause),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(main), Ok(helper)) => Ok((main, helper)),
    }
}

/// The I/O side of [`hash_ranges`]: takes a free buffer, fills it, hands it over for hashing.
pub struct Feed<'a> {
    free: &'a Receiver<AlignedBuf>,
    full: SyncSender<Piece>,
}

impl Feed<'_> {
    pub fn buffer(&self) -> Result<AlignedBuf> {
        self.free.recv().map_err(|_| Stopped::Hasher.into())
    }

    pub fn hash(&self, buf: AlignedBuf, len: usize) -> Result<()> {
        self.send(Piece::Bytes(buf, len))
    }

    pub fn end_range(&self) -> Result<()> {
        self.send(Piece::EndOfRange)
    }

    fn send(&self, piece: Piece) -> Result<()> {
        self.full.send(piece).map_err(|_| Stopped::Hasher.into())
    }
}

/// The hashing thread's loop: digests pieces until the feed closes, a digest per range, each
/// shown to `check` as soon as it is known (its error stops the thread).
fn digest_pieces(
    pieces: Receiver<Piece>,
    free: SyncSender<AlignedBuf>,
    check: impl Fn(usize, &str) -> Result<()>,
) -> Result<Vec<String>> {
    let mut sums = Vec::new();
    let mut hasher = Sha256::new();
    for piece in pieces {
        match piece {
            Piece::Bytes(mut buf, len) => {
                hasher.update(&buf.slice(len)[..]);
                // The I/O side may have finished and dropped its end already.
                let _ = free.send(buf);
            }
            Piece::EndOfRange => {
                let sum = hex(&std::mem::take(&mut hasher).finalize());
                check(sums.len(), &sum)?;
                sums.push(sum);
            }
        }
    }
    Ok(sums)
}

/// Runs `io` on this thread and sha256 of what it produces on a second one. `io` hands over each
/// range's bytes in order, then ends the range; `check` sees each range's digest as soon as it is
/// known, and its error stops `io`. `pool` lends the buffers and gets them back, so a caller
/// hashing range after range does not allocate (and fault in) fresh ones each time.
pub fn hash_ranges(
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
        let hasher = scope.spawn(move || digest_pieces(full_rx, free_tx, check));
        let feed = Feed {
            free: &free_rx,
            full: full_tx,
        };
        let io_result = io(&feed);
        drop(feed);
        let hash_result = hasher.join().expect("the hashing thread does not panic");
        pool.extend(free_rx.try_iter());
        first_cause(io_result, hash_result, Stopped::Hasher).map(|((), sums)| sums)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn each_range_gets_its_digest_and_the_buffers_come_back() {
        let mut pool = Vec::new();
        let sums = hash_ranges(
            &mut pool,
            |feed| {
                for text in [&b"abc"[..], b""] {
                    let mut buf = feed.buffer()?;
                    buf.slice(text.len()).copy_from_slice(text);
                    feed.hash(buf, text.len())?;
                    feed.end_range()?;
                }
                Ok(())
            },
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(
            sums,
            [
                crate::util::sha256_hex(b"abc"),
                crate::util::sha256_hex(b"")
            ]
        );
        assert_eq!(pool.len(), BUFFERS_IN_FLIGHT);
    }

    #[test]
    fn a_failed_check_is_the_error_reported() {
        let err = hash_ranges(
            &mut Vec::new(),
            |feed| loop {
                feed.end_range()?;
            },
            |index, _| {
                if index == 2 {
                    bail!("range 2 is wrong");
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "range 2 is wrong");
    }
}
