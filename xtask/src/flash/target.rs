//! The device or file an image goes to: opened exclusively (and a second time O_DIRECT where the
//! kernel allows it), sized, written, flushed, discarded and told to re-read its partition table
//! through the block-device ioctls.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::policy::ALIGN;

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
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<bool> {
        let aligned = offset.is_multiple_of(ALIGN as u64)
            && data.len().is_multiple_of(ALIGN)
            && data.as_ptr().align_offset(ALIGN) == 0;
        let (file, direct) = match &self.direct {
            Some(direct) if aligned => (direct, true),
            _ => (&self.file, false),
        };
        file.write_all_at(data, offset)
            .with_context(|| format!("could not write {} at byte {offset}", self.path.display()))?;
        Ok(direct)
    }

    pub fn sync(&self) -> Result<()> {
        rustix::fs::fdatasync(self.file.as_fd())
            .with_context(|| format!("could not flush {}", self.path.display()))
    }

    /// Tells the device (or file system) a span holds nothing: BLKDISCARD, or a punched hole.
    /// `Ok(false)` when it cannot.
    pub fn discard(&self, start: u64, len: u64) -> Result<bool> {
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
pub fn open_direct(path: &Path, write: bool) -> Result<Option<File>> {
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
