//! An EROFS root filesystem image read without mounting it and without root, for
//! `cargo xtask audit` and `cargo xtask diff`.
//!
//! Ownership, permission bits, names and link targets come from the image's own metadata
//! ([`format`](mod@format)), because erofs-utils 1.5 (Debian 12) loses setuid and setgid bits on
//! both of its ways out: `dump.erofs` prints only the low nine bits, and `fsck.erofs --extract`
//! chowns after chmod, which clears them. File contents that are compressed come from
//! `fsck.erofs --extract`, run once into a scratch folder on first need: it also proves the whole
//! image decompresses. The image may be followed by other data (a system slot's verity tree):
//! the superblock says where the filesystem ends.

pub mod format;

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::rootfs::{child_path, Listing, RootFs, Stat};
use crate::tree::Entry;
use format::{Inode, Superblock};

/// One folder entry: its name, inode number and inode.
type Child = (String, u64, Inode);

/// An EROFS image (or a file that starts with one), opened for reading.
pub struct ErofsImage {
    path: PathBuf,
    file: File,
    superblock: Superblock,
    /// Folder listings by real path; `None` when the path is no folder.
    dirs: RefCell<HashMap<String, Option<Vec<Child>>>>,
    /// `fsck.erofs --extract` of the whole image, made on the first compressed read: the
    /// scratch folder and the image's root in it.
    extracted: OnceCell<(tempfile::TempDir, PathBuf)>,
    /// The `fsck.erofs` that extracts: the host's, or the one a Buildroot build made.
    fsck: PathBuf,
}

impl ErofsImage {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| {
            format!(
                "could not open the root filesystem image {}",
                path.display()
            )
        })?;
        let mut head = vec![0u8; format::SUPERBLOCK_OFFSET + 128];
        let n = read_at_most(&file, &mut head, 0)
            .with_context(|| format!("could not read {}", path.display()))?;
        head.truncate(n);
        let superblock = format::parse_superblock(&head)
            .with_context(|| format!("{} is not an EROFS image", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("could not stat {}", path.display()))?
            .len();
        anyhow::ensure!(
            len >= superblock.bytes(),
            "{} is cut short: its EROFS superblock counts {} bytes, the file has {len}",
            path.display(),
            superblock.bytes()
        );
        Ok(ErofsImage {
            path: path.to_path_buf(),
            file,
            superblock,
            dirs: RefCell::default(),
            extracted: OnceCell::new(),
            fsck: PathBuf::from("fsck.erofs"),
        })
    }

    fn inode(&self, nid: u64) -> Result<Inode> {
        let offset = self.superblock.inode_offset(nid);
        let mut raw = [0u8; Inode::MAX_HEADER];
        let n = read_at_most(&self.file, &mut raw, offset)?;
        format::parse_inode(&raw[..n])
            .with_context(|| format!("inode {nid} of {}", self.path.display()))
    }

    /// The uncompressed data of inode `nid` (a folder, a link, a file stored as is).
    fn flat_data(&self, nid: u64, inode: &Inode) -> Result<Vec<u8>> {
        let offset = self.superblock.inode_offset(nid);
        let mut data = Vec::with_capacity(inode.size as usize);
        for (at, len) in inode.data_ranges(&self.superblock, offset)? {
            let mut part = vec![0u8; len as usize];
            self.file.read_exact_at(&mut part, at).with_context(|| {
                format!(
                    "inode {nid}'s data lies past the end of {}",
                    self.path.display()
                )
            })?;
            data.extend(part);
        }
        Ok(data)
    }

    /// The entries of the folder at `real` (a path without links), cached.
    fn children(&self, real: &str) -> Result<Option<Vec<Child>>> {
        if let Some(cached) = self.dirs.borrow().get(real) {
            return Ok(cached.clone());
        }
        let listing = match self.lookup(real)? {
            Some((nid, inode)) if inode.file_type() == format::S_IFDIR => {
                let data = self.flat_data(nid, &inode)?;
                let mut children = Vec::new();
                for d in format::parse_dir(&data, self.superblock.block_size)
                    .with_context(|| format!("in the folder {real} of {}", self.path.display()))?
                {
                    let inode = self.inode(d.nid)?;
                    children.push((d.name, d.nid, inode));
                }
                Some(children)
            }
            _ => None,
        };
        self.dirs
            .borrow_mut()
            .insert(real.to_string(), listing.clone());
        Ok(listing)
    }

    /// The inode at a real path; `None` when nothing is there.
    fn lookup(&self, real: &str) -> Result<Option<(u64, Inode)>> {
        anyhow::ensure!(real.starts_with('/'), "{real} is not an absolute path");
        let Some((parent, name)) = real.trim_end_matches('/').rsplit_once('/') else {
            let root = self.superblock.root_nid;
            return Ok(Some((root, self.inode(root)?)));
        };
        let parent = if parent.is_empty() { "/" } else { parent };
        Ok(self.children(parent)?.and_then(|c| {
            c.into_iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, nid, inode)| (nid, inode))
        }))
    }

    /// Every path in the image (relative to its root, starting with `/`) with its ownership.
    pub fn walk(&self) -> Result<BTreeMap<String, Stat>> {
        let mut out = BTreeMap::new();
        let mut pending = vec!["/".to_string()];
        while let Some(dir) = pending.pop() {
            for (name, _, inode) in self.children(&dir)?.unwrap_or_default() {
                let path = child_path(&dir, &name);
                let stat = stat_of(&inode);
                if stat.is_dir {
                    pending.push(path.clone());
                }
                out.insert(path, stat);
            }
        }
        Ok(out)
    }

    /// Extract with the `fsck.erofs` in `bin` when there is one, e.g. the one Buildroot built
    /// for the image (`<output>/host/bin`), so auditing a build needs no erofs-utils on the host.
    pub fn with_tools_from(mut self, bin: &Path) -> Self {
        let fsck = bin.join("fsck.erofs");
        if fsck.is_file() {
            self.fsck = fsck;
        }
        self
    }

    /// The folder `fsck.erofs --extract` unpacked the image into, made on first call.
    fn extracted(&self) -> Result<&Path> {
        if self.extracted.get().is_none() {
            let scratch = tempfile::Builder::new()
                .prefix("berth-erofs-")
                .tempdir()
                .context("could not create a scratch folder to extract the EROFS image into")?;
            let root = scratch.path().join("root");
            self.extract(&root)?;
            let _ = self.extracted.set((scratch, root));
        }
        Ok(&self.extracted.get().expect("set above").1)
    }

    /// Unpack the whole image into `dest` (which must not exist yet) with `fsck.erofs`:
    /// contents, links and permission bits (without setuid and setgid when run as root, see the
    /// module's documentation); owners are the caller's.
    pub fn extract(&self, dest: &Path) -> Result<()> {
        let sh = Shell::new().context("could not start a shell for fsck.erofs")?;
        let (image, target) = (&self.path, format!("--extract={}", dest.display()));
        let fsck = &self.fsck;
        let out = cmd!(
            sh,
            "{fsck} {target} --no-preserve-owner --preserve-perms {image}"
        )
        .quiet()
        .ignore_status()
        .output()
        .context("could not run fsck.erofs (apt-get install erofs-utils)")?;
        if !out.status.success() {
            bail!(
                "fsck.erofs could not extract {} into {}: {}",
                image.display(),
                dest.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// What [`crate::tree::snapshot`] records of the image, owners and permission bits read
    /// from the image itself; the contents are extracted into `dest` (which must not exist).
    pub fn snapshot(&self, dest: &Path) -> Result<BTreeMap<String, Entry>> {
        self.extract(dest)?;
        let mut snap = crate::tree::snapshot(dest, true)?;
        apply_ownership(&mut snap, &self.walk()?);
        Ok(snap)
    }
}

/// Replace the mode and owner the extraction left with those the image records. Pure.
pub fn apply_ownership(snap: &mut BTreeMap<String, Entry>, stats: &BTreeMap<String, Stat>) {
    for (path, entry) in snap.iter_mut() {
        let Some(stat) = stats.get(path) else {
            continue;
        };
        if let Entry::Dir { mode, owner } | Entry::File { mode, owner, .. } = entry {
            *mode = stat.mode;
            *owner = (stat.uid, stat.gid);
        }
    }
}

fn stat_of(inode: &Inode) -> Stat {
    Stat {
        mode: inode.permissions(),
        uid: inode.uid,
        gid: inode.gid,
        is_dir: inode.file_type() == format::S_IFDIR,
        is_symlink: inode.file_type() == format::S_IFLNK,
    }
}

/// Fill as much of `buf` as the file has from `offset`; the count read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl RootFs for ErofsImage {
    fn raw_entries(&self, real_dir: &str) -> Result<Listing> {
        Ok(self.children(real_dir)?.map(|children| {
            children
                .into_iter()
                .map(|(name, _, inode)| (name, stat_of(&inode)))
                .collect()
        }))
    }

    fn raw_readlink(&self, real: &str) -> Result<String> {
        let Some((nid, inode)) = self.lookup(real)? else {
            bail!("no symbolic link {real} in {}", self.path.display());
        };
        let target = self.flat_data(nid, &inode)?;
        Ok(String::from_utf8_lossy(&target).into_owned())
    }

    fn raw_read(&self, real: &str) -> Result<Vec<u8>> {
        let Some((nid, inode)) = self.lookup(real)? else {
            bail!("no file {real} in {}", self.path.display());
        };
        if !matches!(inode.layout, format::Layout::Other(_)) {
            return self.flat_data(nid, &inode);
        }
        let copy = self.extracted()?.join(real.trim_start_matches('/'));
        std::fs::read(&copy).with_context(|| {
            format!(
                "could not read {real} as fsck.erofs extracted it from {}",
                self.path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests;
