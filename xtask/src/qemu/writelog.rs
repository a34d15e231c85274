//! Write logs for the stricter power-cut model: QEMU's `blklogwrites` filter records every write
//! and flush the guest sends its disk, in Linux's dm-log-writes format, and a test replays only a
//! prefix of that stream onto a copy of the disk as it was when logging began. The copy is then
//! the disk "after a power cut at entry N": everything later is lost, flushed or not, which a
//! SIGKILLed QEMU (whose writes already sit in the host's page cache) cannot simulate.
//!
//! The format, as QEMU 10's `block/blklogwrites.c` writes it and Linux's
//! `drivers/md/dm-log-writes.c` defines it (all fields little-endian):
//! - log sector 0, the super block: magic `0x6a736677736872` (u64), version 1 (u64), nr_entries
//!   (u64), sectorsize (u32), zero-padded to one log sector;
//! - from log sector 1, for each entry: a header of sector, nr_sectors, flags, data_len (u64
//!   each), zero-padded to one log sector, then `nr_sectors` log sectors of data unless the
//!   entry is a discard. `sector` and `nr_sectors` count log sectors (QEMU: `offset >>
//!   sectorbits`), not 512-byte ones; QEMU's `log-sector-size` defaults to 512.
//! - QEMU writes no mark: the first entry is the guest's first write or flush. It leaves
//!   `data_len` 0 (Linux only uses it for a mark's text, stored inline after the header), logs a
//!   write-zeroes as a plain write whose data is zeros, a flush as flags FLUSH with no sectors,
//!   a discard as flags DISCARD with no data, and never sets FUA (the block layer turns a FUA
//!   write into a write and a flush).
//! - QEMU rewrites the super block only on a flush and every `log-super-update-interval` (4096)
//!   entries, so after a kill the file holds more entries than `nr_entries` counts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};

pub const MAGIC: u64 = 0x6a736677736872;
pub const VERSION: u64 = 1;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;
pub const METADATA: u64 = 16;
const KNOWN_FLAGS: u64 = FLUSH | FUA | DISCARD | MARK | METADATA;
const SUPER_LEN: usize = 28;
const HEADER_LEN: usize = 32;
/// The log sector size [`blockdev_args`] asks for (QEMU's default), and the one assumed for a
/// log whose super block QEMU has not written yet.
pub const LOG_SECTOR_SIZE: u64 = 512;
const CHUNK: usize = 1 << 20;

/// One logged request. `sector` and `sectors` count the log's sectors ([`Log::sector_size`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sector: u64,
    pub sectors: u64,
    pub flags: u64,
    /// Where the entry's payload starts in the log file: the written data, or a mark's text.
    pub data_offset: u64,
    /// The payload's length: `sectors * sector_size` for a write, the text's length for a mark,
    /// 0 for a flush or a discard. (The header's own data_len field, which QEMU leaves 0.)
    pub data_len: u64,
}

impl Entry {
    /// Whether any of `flags` is set.
    pub fn has(&self, flags: u64) -> bool {
        self.flags & flags != 0
    }
}

/// A write log's readable entries, in the order QEMU logged them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub sector_size: u64,
    /// The entries the super block counted when QEMU last rewrote it (at a flush, or every 4096
    /// entries); `entries` may hold more, logged since.
    pub super_entries: u64,
    pub entries: Vec<Entry>,
}

/// Reads the log at `path`. The entries the super block counts must all be whole, except the
/// last one (QEMU may die mid-write; it fails otherwise, as a log cut short); after them come the entries logged since the super
/// block's last rewrite, read up to the end of the file, a torn entry, or a header that is all
/// zeros (a hole: QEMU writes entries concurrently, so one in flight at the kill may be
/// missing while a later one landed; nothing after a hole can be placed). An empty log, or one
/// whose super block is still all zeros (the guest never flushed), is read with
/// [`LOG_SECTOR_SIZE`] sectors.
pub fn read(path: &Path) -> Result<Log> {
    let what = || format!("could not read the write log {}", path.display());
    let file = File::open(path).with_context(what)?;
    let len = file.metadata().with_context(what)?.len();
    read_from(&file, len).with_context(what)
}

fn read_from(file: &File, len: u64) -> Result<Log> {
    let mut sb = [0u8; SUPER_LEN];
    let have = len.min(SUPER_LEN as u64) as usize;
    let read = file.read_exact_at(&mut sb[..have], 0);
    read.context("could not read the super block")?;
    let (sector_size, super_entries) = if sb.iter().all(|&b| b == 0) {
        (LOG_SECTOR_SIZE, 0)
    } else {
        ensure!(have == SUPER_LEN, "the super block is torn");
        let magic = le64(&sb);
        ensure!(magic == MAGIC, "bad magic {magic:#x}: not a write log");
        let version = le64(&sb[8..]);
        ensure!(version == VERSION, "unsupported log version {version}");
        let size = u64::from(u32::from_le_bytes(sb[24..28].try_into().expect("4 bytes")));
        let valid = size.is_power_of_two() && size >= HEADER_LEN as u64 && size < 1 << 24;
        ensure!(valid, "invalid log sector size {size}");
        (size, le64(&sb[16..]))
    };
    let mut entries = Vec::new();
    let mut pos = sector_size;
    // Stops at the end, a torn header or torn data, or (past the counted entries) a hole.
    while pos + HEADER_LEN as u64 <= len {
        let idx = entries.len() as u64;
        let mut h = [0u8; HEADER_LEN];
        let read = file.read_exact_at(&mut h, pos);
        read.with_context(|| format!("could not read entry {idx}"))?;
        let counted = idx < super_entries;
        if !counted && h.iter().all(|&b| b == 0) {
            break;
        }
        let (entry, next) = match parse_entry(&h, pos, sector_size) {
            Ok(parsed) => parsed,
            Err(e) if counted => return Err(e.context(format!("entry {idx} is invalid"))),
            Err(_) => break, // garbage after the counted entries
        };
        if next > len {
            break;
        }
        entries.push(entry);
        pos = next;
    }
    let whole = entries.len() as u64;
    ensure!(
        whole + 1 >= super_entries,
        "the log is truncated: its super block counts {super_entries} entries, {whole} are whole"
    );
    Ok(Log {
        sector_size,
        super_entries,
        entries,
    })
}

/// The entry whose header `h` is at `pos` in a log of `ss`-byte sectors, and where the next
/// header starts.
fn parse_entry(h: &[u8; HEADER_LEN], pos: u64, ss: u64) -> Result<(Entry, u64)> {
    let (sector, sectors, flags) = (le64(h), le64(&h[8..]), le64(&h[16..]));
    ensure!(flags & !KNOWN_FLAGS == 0, "unknown flags {flags:#x}");
    let end = sector.checked_add(sectors).and_then(|s| s.checked_mul(ss));
    ensure!(end.is_some(), "sectors {sector}+{sectors} overflow");
    let payload = if flags & DISCARD != 0 {
        0
    } else {
        sectors * ss
    };
    let next = (pos + ss)
        .checked_add(payload)
        .context("its data overflows")?;
    let (data_offset, data_len) = if flags & MARK != 0 {
        let text = le64(&h[24..]);
        ensure!(text <= ss - HEADER_LEN as u64, "a mark's text overflows");
        (pos + HEADER_LEN as u64, text)
    } else {
        (pos + ss, payload)
    };
    let entry = Entry {
        sector,
        sectors,
        flags,
        data_offset,
        data_len,
    };
    Ok((entry, next))
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// What [`replay`] applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Entries whose data was written.
    pub writes: usize,
    /// Discards, applied as zeros.
    pub discards: usize,
    /// Bytes written onto the disk, discards' zeros included.
    pub bytes: u64,
    /// Entries with FLUSH or FUA.
    pub flushes: usize,
}

/// Applies entries `[0, upto)` of `log` (read from `log_path`) in order onto the raw image
/// `disk`, which must be the disk as it was when logging started. Writes put their data at
/// `sector * sector_size`; a discard writes zeros over its range (a discard on QEMU's raw file
/// punches a hole); flushes and marks change nothing. A request past the end of `disk` fails:
/// that is the wrong image. The image is not fsynced: QEMU reads it through the same page cache.
pub fn replay(log_path: &Path, log: &Log, upto: usize, disk: &Path) -> Result<ReplayStats> {
    let count = log.entries.len();
    ensure!(upto <= count, "cannot replay {upto} entries of {count}");
    let src = File::open(log_path)
        .with_context(|| format!("could not open the write log {}", log_path.display()))?;
    let dst = OpenOptions::new().read(true).write(true).open(disk);
    let dst = dst.with_context(|| format!("could not open the disk {}", disk.display()))?;
    let disk_len = dst.metadata().context("could not stat the disk")?.len();
    let mut stats = ReplayStats::default();
    let mut buf = vec![0u8; CHUNK];
    for (i, e) in log.entries[..upto].iter().enumerate() {
        stats.flushes += usize::from(e.has(FLUSH | FUA));
        if e.has(MARK) || e.sectors == 0 {
            continue;
        }
        let (at, len) = (e.sector * log.sector_size, e.sectors * log.sector_size);
        let end = at + len;
        ensure!(
            end <= disk_len,
            "entry {i} writes up to byte {end} of a {disk_len}-byte disk"
        );
        let discard = e.has(DISCARD);
        if discard {
            buf.fill(0);
        }
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            if !discard {
                let read = src.read_exact_at(&mut buf[..n], e.data_offset + done);
                read.with_context(|| format!("could not read entry {i}'s data"))?;
            }
            let write = dst.write_all_at(&buf[..n], at + done);
            write.with_context(|| format!("could not write entry {i} onto {}", disk.display()))?;
            done += n as u64;
        }
        stats.discards += usize::from(discard);
        stats.writes += usize::from(!discard);
        stats.bytes += len;
    }
    Ok(stats)
}

/// The cut points just after each flush (or FUA write): replaying up to one gives the disk as
/// the guest had last made it durable, all it synced there and nothing after.
pub fn flush_points(log: &Log) -> Vec<usize> {
    let after = |(i, e): (usize, &Entry)| e.has(FLUSH | FUA).then_some(i + 1);
    log.entries.iter().enumerate().filter_map(after).collect()
}

/// QEMU arguments (the `-blockdev` flags included) for a raw image `base_image` under a
/// `blklogwrites` node named `node` that logs to `log_file`; the guest gets it with `-device
/// virtio-blk-device,drive=<node>` (a device's `drive=` takes a node name). Nodes `<node>-base`
/// and `<node>-log` are the two files.
///
/// `log_file` must exist (QEMU's `file` driver does not create it) and should be empty: QEMU
/// grows it as it logs, and with `log-append=off` starts over at log sector 1 without
/// truncating, so an old log's tail would read as new entries. Its super block is written at the
/// first flush, not at start. Checked with QEMU 10.0: the device's cache mode is writeback, so
/// the guest's flushes are logged as flush entries rather than every write being made durable;
/// guest discards are ignored (no `discard=unmap`), hence never logged.
pub fn blockdev_args(base_image: &Path, log_file: &Path, node: &str) -> Vec<String> {
    // QEMU's option syntax doubles a comma inside a value.
    let path = |p: &Path| p.to_string_lossy().replace(',', ",,");
    let (base, log) = (path(base_image), path(log_file));
    let filter = format!("driver=blklogwrites,node-name={node},file={node}-base,log={node}-log");
    vec![
        "-blockdev".into(),
        format!("driver=file,node-name={node}-base,filename={base}"),
        "-blockdev".into(),
        format!("driver=file,node-name={node}-log,filename={log}"),
        "-blockdev".into(),
        format!("{filter},log-sector-size={LOG_SECTOR_SIZE},log-append=off"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;

    type Req = (u64, u64, u64, Vec<u8>);

    /// A test-only writer of the format: requests as (sector, sectors, flags, payload), a
    /// write's payload being its data and a mark's its text; the super block counts `counted`.
    fn synth(ss: usize, counted: u64, reqs: &[Req]) -> Vec<u8> {
        let put = |at: &mut [u8], fields: [u64; 4]| {
            let bytes: Vec<u8> = fields.iter().flat_map(|v| v.to_le_bytes()).collect();
            at[..32].copy_from_slice(&bytes);
        };
        let mut out = vec![0u8; ss];
        put(&mut out, [MAGIC, VERSION, counted, ss as u64]); // sectorsize: a u32, then zeros
        for (sector, sectors, flags, payload) in reqs {
            let mark = flags & MARK != 0;
            let text = if mark { payload.clone() } else { vec![] };
            let mut h = vec![0u8; ss];
            put(&mut h, [*sector, *sectors, *flags, text.len() as u64]);
            h[HEADER_LEN..HEADER_LEN + text.len()].copy_from_slice(&text);
            out.extend(h);
            out.extend(if mark { &[][..] } else { payload });
        }
        out
    }

    fn fill(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    fn error(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("an error"))
    }

    #[test]
    fn reads_and_replays_prefixes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (log_path, disk) = (dir.path().join("log"), dir.path().join("disk"));
        let reqs = [
            (2, 2, 0, fill(0xaa, 1024)),
            (0, 0, FLUSH, vec![]),
            (3, 1, 0, fill(0xbb, 512)),
            (0, 2, DISCARD, vec![]),
            (0, 0, MARK, b"cut".to_vec()),
            (0, 0, FLUSH, vec![]),
        ];
        fs::write(&log_path, synth(512, 6, &reqs))?;
        let log = read(&log_path)?;
        assert_eq!((log.sector_size, log.super_entries), (512, 6));
        let placed = |e: &Entry| {
            format!(
                "{}+{}@{}:{}",
                e.sector, e.sectors, e.data_offset, e.data_len
            )
        };
        let placed: Vec<_> = log.entries.iter().map(placed).collect();
        let want = "2+2@1024:1024 0+0@2560:0 3+1@3072:512 0+2@4096:0 0+0@4128:3 0+0@5120:0";
        assert_eq!(placed.join(" "), want);
        assert_eq!(flush_points(&log), [2, 6]);
        // The 5-sector disk's first four sectors after 0, 2, 3 and 6 entries.
        let after = [
            (0, [0x11; 4]),
            (2, [0x11, 0x11, 0xaa, 0xaa]),
            (3, [0x11, 0x11, 0xaa, 0xbb]),
        ];
        for (upto, sectors) in after.into_iter().chain([(6, [0, 0, 0xaa, 0xbb])]) {
            fs::write(&disk, fill(0x11, 2560))?;
            replay(&log_path, &log, upto, &disk)?;
            let want: Vec<u8> = sectors
                .iter()
                .chain(&[0x11])
                .flat_map(|&b| fill(b, 512))
                .collect();
            assert!(fs::read(&disk)? == want, "replay of {upto}");
        }
        let stats = replay(&log_path, &log, 6, &disk)?;
        assert_eq!([stats.writes, stats.discards, stats.flushes], [2, 1, 2]);
        assert_eq!(stats.bytes, 2560);
        assert!(error(replay(&log_path, &log, 7, &disk)).contains("cannot replay 7"));
        // A log of 4096-byte sectors counts them: sector 1 is at byte 4096 of the disk.
        let reqs = [(1, 1, 0, fill(0xcc, 4096)), (3, 1, 0, fill(0xdd, 4096))];
        fs::write(&log_path, synth(4096, 2, &reqs))?;
        let log = read(&log_path)?;
        assert_eq!((log.sector_size, log.entries[1].data_offset), (4096, 16384));
        fs::write(&disk, fill(0, 3 * 4096))?;
        replay(&log_path, &log, 1, &disk)?;
        let want = [fill(0, 4096), fill(0xcc, 4096), fill(0, 4096)].concat();
        assert!(fs::read(&disk)? == want, "4096-byte sectors");
        assert!(error(replay(&log_path, &log, 2, &disk)).contains("of a 12288-byte disk"));
        Ok(())
    }

    #[test]
    fn a_torn_last_entry_is_dropped_and_a_hole_ends_the_uncounted_tail() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("log");
        let reqs: Vec<Req> = (0..3).map(|i| (i * 4, 4, 0, fill(i as u8, 2048))).collect();
        let whole = synth(512, 3, &reqs);
        // Cut in the last entry's data, then in its header: two entries remain.
        for cut in [whole.len() - 100, whole.len() - 2048 - 500] {
            fs::write(&log_path, &whole[..cut])?;
            assert_eq!(read(&log_path)?.entries.len(), 2, "cut at {cut}");
        }
        fs::write(&log_path, &whole[..4000])?; // in the second of three counted entries
        assert!(error(read(&log_path)).contains("counts 3 entries, 1 are whole"));
        // Counted 1; then a flush, a write, an entry still in flight at the kill, a write.
        let tail = [reqs[0].clone(), (0, 0, FLUSH, vec![]), reqs[1].clone()];
        let mut bytes = synth(512, 1, &tail);
        bytes.extend(fill(0, 512));
        bytes.extend(&synth(512, 0, &reqs[2..])[512..]);
        fs::write(&log_path, bytes)?;
        let log = read(&log_path)?;
        assert_eq!((log.super_entries, log.entries.len()), (1, 3));
        Ok(())
    }

    #[test]
    fn bad_magic_fails_and_an_unflushed_log_reads() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("log");
        let mut bytes = synth(512, 1, &[(0, 1, 0, fill(1, 512))]);
        bytes[0] ^= 0xff;
        fs::write(&log_path, &bytes)?;
        assert!(error(read(&log_path)).contains("bad magic"));
        fs::write(&log_path, b"")?;
        let empty = read(&log_path)?;
        assert_eq!((empty.sector_size, empty.entries.len()), (512, 0));
        bytes[..512].fill(0); // QEMU killed before the guest's first flush
        fs::write(&log_path, &bytes)?;
        assert_eq!(read(&log_path)?.entries.len(), 1);
        Ok(())
    }

    /// The proof of the reading: a log QEMU itself wrote, replayed onto the image as it was,
    /// gives the image QEMU left.
    #[test]
    fn replays_a_log_qemu_io_wrote() -> Result<()> {
        if Command::new("qemu-io").arg("--version").output().is_err() {
            let why = "qemu-io is not installed (apt-get install qemu-utils)";
            crate::util::skip("qemu::writelog::tests::replays_a_log_qemu_io_wrote", why);
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let at = |name: &str| dir.path().join(name);
        let (disk, whole, prefix, log_path) = (at("disk"), at("whole"), at("prefix"), at("log"));
        fs::write(&disk, fill(0x11, 256 << 10))?;
        fs::copy(&disk, &whole)?;
        fs::copy(&disk, &prefix)?;
        File::create(&log_path)?;
        let (d, l) = (disk.display(), log_path.display());
        let opts = "driver=blklogwrites,discard=unmap,file.driver=file,log.driver=file";
        let opts = format!("{opts},file.filename={d},log.filename={l}");
        let mut qemu_io = Command::new("qemu-io");
        qemu_io.args(["--image-opts", &opts]);
        let ops = "write -P 0xab 0 4k|flush|write -P 0xcd 8k 1k|write -z 16k 2k|discard 32k 4k";
        for op in ops.split('|').chain(["write -P 0xef 64k 128k"]) {
            qemu_io.args(["-c", op]);
        }
        let out = qemu_io.output().context("could not run qemu-io")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "qemu-io: {stderr}");

        let log = read(&log_path)?;
        let req = |e: &Entry| format!("{}+{}:{}", e.sector, e.sectors, e.flags);
        let reqs: Vec<_> = log.entries.iter().map(req).collect();
        assert_eq!(reqs[..2], ["0+8:0", "0+0:1"], "{reqs:?}");
        let writes: Vec<_> = reqs.iter().filter(|r| *r != "0+0:1").cloned().collect();
        let want = "0+8:0 16+2:0 32+4:0 64+8:4 128+256:0";
        assert_eq!(writes.join(" "), want, "{reqs:?}");
        let data = |e: &Entry| e.data_len == if e.has(DISCARD) { 0 } else { e.sectors * 512 };
        assert!(log.entries.iter().all(data), "{:?}", log.entries);
        // qemu-io flushes as it closes the image, which rewrites the super block.
        assert_eq!(log.super_entries, log.entries.len() as u64);
        let stats = replay(&log_path, &log, log.entries.len(), &whole)?;
        assert_eq!((stats.writes, stats.discards), (4, 1));
        assert!(fs::read(&whole)? == fs::read(&disk)?, "whole replay");
        replay(&log_path, &log, flush_points(&log)[0], &prefix)?;
        let want = [fill(0xab, 4096), fill(0x11, (256 << 10) - 4096)].concat();
        assert!(fs::read(&prefix)? == want, "replay to the first flush");
        Ok(())
    }

    /// QEMU's system emulator takes [`blockdev_args`] (commas in a path doubled) and a virtio
    /// disk on the node; its monitor then reads `quit`.
    #[test]
    fn qemu_system_arm_takes_the_blockdev_args() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let at = |name: &str| dir.path().join(name);
        let (base, log_path, quit) = (at("a,b.img"), at("log"), at("quit"));
        fs::write(&base, fill(0, 1 << 20))?;
        File::create(&log_path)?;
        fs::write(&quit, "quit\n")?;
        let mut qemu = Command::new("qemu-system-arm");
        let machine = "-M virt -nodefaults -S -display none -monitor stdio";
        qemu.args(machine.split(' '))
            .args(blockdev_args(&base, &log_path, "d0"));
        qemu.args(["-device", "virtio-blk-device,drive=d0"]);
        let out = match qemu.stdin(File::open(&quit)?).output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let test = "qemu::writelog::tests::qemu_system_arm_takes_the_blockdev_args";
                crate::util::skip(
                    test,
                    "qemu-system-arm is not installed (apt-get install qemu-system-arm)",
                );
                return Ok(());
            }
            ran => ran.context("could not run qemu-system-arm")?,
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "qemu-system-arm: {stderr}");
        Ok(())
    }
}
