//! Read-back verification: the target opened a second time past the page cache, each range read
//! back (chunk by chunk, as soon as the writer is past it) and its sha256 compared with the
//! image's, on a thread of its own.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;

use super::hashing::{hash_ranges, AlignedBuf, Feed, Stopped};
use super::interrupt::check_interrupted;
use super::policy::{ALIGN, CHUNK};
use super::target::open_direct;
use crate::bmap::Bmap;

/// The target opened a second time, for reading back what was written past the page cache.
pub struct ReadBack {
    file: File,
    path: PathBuf,
    /// O_DIRECT; otherwise (a file system without it) each range is flushed and its cached pages
    /// dropped before it is read.
    direct: bool,
}

impl ReadBack {
    pub fn open(path: &Path) -> Result<ReadBack> {
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

    /// Flushes and drops the cached pages of a span, so the read that follows reaches the device.
    fn uncache(&self, pos: u64, len: usize) -> Result<()> {
        let path = self.path.display();
        rustix::fs::fdatasync(self.file.as_fd())
            .with_context(|| format!("could not flush {path}"))?;
        rustix::fs::fadvise(
            self.file.as_fd(),
            pos,
            std::num::NonZeroU64::new(len as u64),
            rustix::fs::Advice::DontNeed,
        )
        .with_context(|| format!("could not drop cached pages of {path}"))
    }

    /// Reads range `index` back into the feed, each chunk once the writer is past it.
    fn read_range(
        &self,
        map: &Bmap,
        index: usize,
        written: &WrittenUpTo,
        feed: &Feed,
        progress: &ProgressBar,
    ) -> Result<()> {
        let range = &map.ranges[index];
        let path = self.path.display();
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        let mut pos = start;
        while pos < end {
            check_interrupted()?;
            let want = ((end - pos) as usize).min(CHUNK);
            written.wait_for(pos + want as u64)?;
            if !self.direct {
                self.uncache(pos, want)?;
            }
            let mut buf = feed.buffer()?;
            let got = self
                .file
                .read_at(buf.slice(want.next_multiple_of(ALIGN)), pos)
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
    }

    /// Reads range `index` back and returns its sha256; reading and hashing overlap here too.
    fn range_digest(
        &self,
        map: &Bmap,
        index: usize,
        written: &WrittenUpTo,
        pool: &mut Vec<AlignedBuf>,
        progress: &ProgressBar,
    ) -> Result<String> {
        let read = |feed: &Feed| self.read_range(map, index, written, feed, progress);
        let mut digests = hash_ranges(pool, read, |_, _| Ok(()))?;
        digests
            .pop()
            .context("internal error: a range read back without a digest")
    }

    /// Range `index` read back as `actual` must hash like the image's `expected`.
    fn compare(&self, map: &Bmap, index: usize, actual: &str, expected: &str) -> Result<()> {
        let range = &map.ranges[index];
        let (start, end) = range.blocks.byte_span(map.block_size, map.image_size);
        let path = self.path.display();
        ensure!(
            actual == expected,
            "verification failed: {} (bytes {start}..{end}) read back from {path} hash to {actual}, but the image has {expected}: {path} does not hold the image",
            range.blocks
        );
        Ok(())
    }
}

/// What the writer tells the verifier.
enum Step {
    /// Range `index` is being (or has been) written: read it back as the writer goes.
    Range(usize),
    /// Answer once every range sent before this one has read back right.
    Barrier,
}

/// The verifying thread, as the writer sees it.
pub struct Verifier<'scope> {
    steps: Sender<Step>,
    checked: Receiver<()>,
    thread: ScopedJoinHandle<'scope, Result<()>>,
}

impl<'scope> Verifier<'scope> {
    /// Starts verifying on a thread of `scope`; `digests` brings the image's range digests in
    /// order as the hasher has them.
    pub fn spawn<'env>(
        scope: &'scope Scope<'scope, 'env>,
        reader: ReadBack,
        map: &'env Bmap,
        written: &'env WrittenUpTo,
        digests: Receiver<String>,
        progress: &'env ProgressBar,
    ) -> Self {
        let (steps, step_rx) = channel();
        let (checked_tx, checked) = channel();
        let thread = scope.spawn(move || {
            verify_ranges(
                &reader, map, step_rx, digests, checked_tx, written, progress,
            )
        });
        Verifier {
            steps,
            checked,
            thread,
        }
    }

    /// Range `index` is on its way to the target: read it back as it arrives.
    pub fn range_written(&self, index: usize) -> Result<()> {
        self.steps
            .send(Step::Range(index))
            .map_err(|_| Stopped::Verifier.into())
    }

    /// Waits until every range announced so far has read back right.
    pub fn all_checked(&self) -> Result<()> {
        self.steps
            .send(Step::Barrier)
            .map_err(|_| anyhow::Error::from(Stopped::Verifier))?;
        self.checked.recv().map_err(|_| Stopped::Verifier.into())
    }

    /// No more ranges: the verifier's own result once it has checked what it was sent.
    pub fn finish(self) -> Result<()> {
        drop(self.steps);
        self.thread
            .join()
            .expect("the verifying thread does not panic")
    }
}

/// The verifying thread's loop.
fn verify_ranges(
    reader: &ReadBack,
    map: &Bmap,
    steps: Receiver<Step>,
    digests: Receiver<String>,
    checked: Sender<()>,
    written: &WrittenUpTo,
    progress: &ProgressBar,
) -> Result<()> {
    let mut expected = Vec::new();
    let mut pool = Vec::new();
    for step in steps {
        let Step::Range(index) = step else {
            let _ = checked.send(());
            continue;
        };
        let actual = reader.range_digest(map, index, written, &mut pool, progress)?;
        while expected.len() <= index {
            expected.push(digests.recv().map_err(|_| Stopped::Hasher)?);
        }
        reader.compare(map, index, &actual, &expected[index])?;
    }
    Ok(())
}

/// How far the writer has got through the image, for the verifier to follow chunk by chunk.
#[derive(Default)]
pub struct WrittenUpTo {
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl WrittenUpTo {
    fn set(&self, update: impl FnOnce(&mut (u64, bool))) {
        update(&mut self.state.lock().expect("the writer does not panic"));
        self.moved.notify_all();
    }

    pub fn advance(&self, to: u64) {
        self.set(|state| state.0 = to);
    }

    /// Everything is written: any range may be read.
    pub fn complete(&self) {
        self.set(|state| state.0 = u64::MAX);
    }

    /// Writing failed: a verifier waiting for more gives up.
    pub fn abort(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_waits_for_the_writer_and_gives_up_when_it_stops() {
        let written = WrittenUpTo::default();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| written.wait_for(100));
            written.advance(50);
            written.advance(100);
            assert!(waiter.join().unwrap().is_ok());
            let waiter = scope.spawn(|| written.wait_for(200));
            written.abort();
            let err = waiter.join().unwrap().unwrap_err();
            assert!(err.to_string().contains("before byte 200"), "{err}");
        });
    }
}
