//! EROFS on-disk structures, as the Linux kernel's `fs/erofs/erofs_fs.h` lays them out: the
//! superblock, inodes (compact and extended) and directory blocks. Pure: each function reads a
//! byte slice, so the unit tests need no image and no tool.
//!
//! Only metadata is read here: ownership, permission bits (setuid, setgid and sticky included,
//! which erofs-utils 1.5's `dump.erofs` masks off and its `fsck.erofs --extract` loses when it
//! chowns after chmod), names, and the uncompressed data of folders and symbolic links.
//! Compressed file contents are left to `fsck.erofs` (see the parent module).

use anyhow::{bail, ensure, Context, Result};

/// Where the superblock starts in the image.
pub const SUPERBLOCK_OFFSET: usize = 1024;
/// The superblock's first field.
pub const MAGIC: u32 = 0xE0F5_E1E2;
/// Bytes the superblock fields read here take.
const SUPERBLOCK_BYTES: usize = 84;
/// Inode slots are 32 bytes: a nid counts them from the metadata area's start.
const INODE_SLOT: u64 = 32;
/// Incompatible features that move inodes or data where this reader does not look.
const UNSUPPORTED_INCOMPAT: &[(u32, &str)] = &[(0x80, "48-bit layout"), (0x100, "metabox")];

/// The fields of the superblock this reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub block_size: u64,
    pub root_nid: u64,
    /// Blocks the filesystem takes, from the image's start.
    pub blocks: u64,
    pub meta_blkaddr: u64,
}

impl Superblock {
    /// The filesystem's length in bytes (a system slot appends its verity tree after it).
    pub fn bytes(&self) -> u64 {
        self.blocks * self.block_size
    }

    /// Byte offset of the inode numbered `nid`.
    pub fn inode_offset(&self, nid: u64) -> u64 {
        self.meta_blkaddr * self.block_size + nid * INODE_SLOT
    }
}

/// True when `head` (at least the first 1028 bytes of a file) starts an EROFS image.
pub fn is_erofs(head: &[u8]) -> bool {
    head.len() >= SUPERBLOCK_OFFSET + 4 && le32(head, SUPERBLOCK_OFFSET) == MAGIC
}

/// Parse the superblock from the image's first bytes (at least 1108).
pub fn parse_superblock(head: &[u8]) -> Result<Superblock> {
    ensure!(
        head.len() >= SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES,
        "too short for an EROFS superblock ({} bytes)",
        head.len()
    );
    ensure!(
        is_erofs(head),
        "no EROFS superblock (magic {MAGIC:#x} at byte {SUPERBLOCK_OFFSET})"
    );
    let sb = &head[SUPERBLOCK_OFFSET..];
    let blkszbits = sb[12];
    ensure!(
        (9..=16).contains(&blkszbits),
        "EROFS block size 2^{blkszbits} is out of range"
    );
    let incompat = le32(sb, 80);
    for (bit, name) in UNSUPPORTED_INCOMPAT {
        ensure!(
            incompat & bit == 0,
            "the EROFS image uses the {name} feature, which this reader does not know"
        );
    }
    Ok(Superblock {
        block_size: 1 << blkszbits,
        root_nid: u64::from(le16(sb, 14)),
        blocks: u64::from(le32(sb, 36)),
        meta_blkaddr: u64::from(le32(sb, 40)),
    })
}

/// How an inode's data is stored (`i_format` bits 1..3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Whole blocks from `raw_blkaddr`.
    FlatPlain,
    /// Whole blocks from `raw_blkaddr`, the last block inline after the inode.
    FlatInline,
    /// Compressed or chunked: read through `fsck.erofs`.
    Other(u16),
}

/// The fields of one inode this reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub layout: Layout,
    pub raw_blkaddr: u64,
    /// Bytes from the inode's start to its inline data: the inode and its extended attributes.
    pub inline_offset: u64,
}

/// File type bits of `st_mode`.
const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;

impl Inode {
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Permission bits with setuid, setgid and sticky.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Bytes of the inode before its data (64 read is always enough: `inline_offset` says more).
    pub const MAX_HEADER: usize = 64;

    /// Where each byte range of the data lies, as (image offset, length), for an uncompressed
    /// inode at `offset`: whole blocks first, then (inline layout) the tail after the inode.
    pub fn data_ranges(&self, sb: &Superblock, offset: u64) -> Result<Vec<(u64, u64)>> {
        let blocks = self.size.div_ceil(sb.block_size);
        let (whole, inline) = match self.layout {
            Layout::FlatPlain => (blocks, false),
            Layout::FlatInline => (blocks.saturating_sub(1), blocks > 0),
            Layout::Other(n) => bail!("data layout {n} is compressed or chunked"),
        };
        let whole_bytes = (whole * sb.block_size).min(self.size);
        let mut ranges = Vec::new();
        if whole_bytes > 0 {
            ranges.push((self.raw_blkaddr * sb.block_size, whole_bytes));
        }
        if inline {
            ranges.push((offset + self.inline_offset, self.size - whole_bytes));
        }
        Ok(ranges)
    }
}

/// Parse the inode whose first bytes are `raw` (up to [`Inode::MAX_HEADER`]).
pub fn parse_inode(raw: &[u8]) -> Result<Inode> {
    ensure!(raw.len() >= 32, "an EROFS inode is cut short");
    let format = le16(raw, 0);
    let xattr_count = u64::from(le16(raw, 2));
    let mode = u32::from(le16(raw, 4));
    let extended = format & 1 == 1;
    let layout = match (format >> 1) & 0x7 {
        0 => Layout::FlatPlain,
        2 => Layout::FlatInline,
        n => Layout::Other(n),
    };
    let xattr_bytes = if xattr_count == 0 {
        0
    } else {
        12 + 4 * (xattr_count - 1)
    };
    let (size, uid, gid, header) = if extended {
        ensure!(raw.len() >= 64, "an extended EROFS inode is cut short");
        (le64(raw, 8), le32(raw, 24), le32(raw, 28), 64)
    } else {
        (
            u64::from(le32(raw, 8)),
            u32::from(le16(raw, 24)),
            u32::from(le16(raw, 26)),
            32,
        )
    };
    Ok(Inode {
        mode,
        uid,
        gid,
        size,
        layout,
        raw_blkaddr: u64::from(le32(raw, 16)),
        inline_offset: header + xattr_bytes,
    })
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub nid: u64,
    pub name: String,
}

/// Bytes of one dirent record; the first record's name offset divided by it counts them.
const DIRENT_BYTES: usize = 12;

/// The entries of a folder whose data is `data`, block by block, `.` and `..` left out.
pub fn parse_dir(data: &[u8], block_size: u64) -> Result<Vec<Dirent>> {
    let mut out = Vec::new();
    for block in data.chunks(block_size as usize) {
        ensure!(block.len() >= DIRENT_BYTES, "a folder block is cut short");
        let count = usize::from(le16(block, 8)) / DIRENT_BYTES;
        ensure!(
            count > 0 && count * DIRENT_BYTES <= block.len(),
            "a folder block has a bad first name offset"
        );
        for i in 0..count {
            let at = i * DIRENT_BYTES;
            let start = usize::from(le16(block, at + 8));
            let end = if i + 1 < count {
                usize::from(le16(block, at + DIRENT_BYTES + 8))
            } else {
                block.len()
            };
            let raw = block
                .get(start..end)
                .context("a folder entry's name lies outside its block")?;
            // The last name runs to the block's end or its first NUL.
            let raw = raw.split(|b| *b == 0).next().unwrap_or(raw);
            let name = String::from_utf8_lossy(raw).into_owned();
            if name != "." && name != ".." {
                out.push(Dirent {
                    nid: le64(block, at),
                    name,
                });
            }
        }
    }
    Ok(out)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(blkszbits: u8, incompat: u32) -> Vec<u8> {
        let mut head = vec![0u8; 2048];
        let sb = &mut head[SUPERBLOCK_OFFSET..];
        sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        sb[12] = blkszbits;
        sb[14..16].copy_from_slice(&36u16.to_le_bytes());
        sb[36..40].copy_from_slice(&3u32.to_le_bytes());
        sb[80..84].copy_from_slice(&incompat.to_le_bytes());
        head
    }

    #[test]
    fn reads_the_superblock_and_refuses_what_it_cannot_read() {
        let sb = parse_superblock(&superblock(12, 0x3)).unwrap();
        assert_eq!(
            sb,
            Superblock {
                block_size: 4096,
                root_nid: 36,
                blocks: 3,
                meta_blkaddr: 0
            }
        );
        assert_eq!(sb.bytes(), 3 * 4096);
        assert_eq!(sb.inode_offset(36), 36 * 32);
        let err = |head: &[u8]| format!("{:#}", parse_superblock(head).unwrap_err());
        assert!(err(&superblock(12, 0x80)).contains("48-bit"));
        assert!(err(&superblock(30, 0)).contains("block size"));
        assert!(err(&vec![0u8; 2048]).contains("no EROFS superblock"));
        assert!(err(&[0u8; 100]).contains("too short"));
        assert!(!is_erofs(&[0u8; 100]));
    }

    #[test]
    fn reads_compact_and_extended_inodes_with_their_special_bits() {
        let mut compact = [0u8; 32];
        compact[0..2].copy_from_slice(&(2u16 << 1).to_le_bytes()); // flat inline
        compact[2..4].copy_from_slice(&3u16.to_le_bytes()); // 3 xattr slots: 12 + 8 bytes
        compact[4..6].copy_from_slice(&0o104_755u16.to_le_bytes());
        compact[8..12].copy_from_slice(&5000u32.to_le_bytes());
        compact[16..20].copy_from_slice(&7u32.to_le_bytes());
        compact[24..26].copy_from_slice(&5u16.to_le_bytes());
        compact[26..28].copy_from_slice(&7u16.to_le_bytes());
        let inode = parse_inode(&compact).unwrap();
        assert_eq!(inode.permissions(), 0o4755);
        assert_eq!(inode.file_type(), 0o100000);
        assert_eq!((inode.uid, inode.gid, inode.size), (5, 7, 5000));
        assert_eq!(inode.layout, Layout::FlatInline);
        assert_eq!(inode.inline_offset, 32 + 20);
        let sb = parse_superblock(&superblock(12, 0)).unwrap();
        // One whole block at block 7, the 904-byte tail after the inode and its attributes.
        assert_eq!(
            inode.data_ranges(&sb, 1152).unwrap(),
            [(7 * 4096, 4096), (1152 + 52, 904)]
        );

        let mut extended = [0u8; 64];
        extended[0..2].copy_from_slice(&1u16.to_le_bytes()); // extended, flat plain
        extended[4..6].copy_from_slice(&0o041_777u16.to_le_bytes());
        extended[8..16].copy_from_slice(&10u64.to_le_bytes());
        extended[16..20].copy_from_slice(&2u32.to_le_bytes());
        extended[24..28].copy_from_slice(&100_000u32.to_le_bytes());
        extended[28..32].copy_from_slice(&100_001u32.to_le_bytes());
        let inode = parse_inode(&extended).unwrap();
        assert_eq!((inode.file_type(), inode.permissions()), (S_IFDIR, 0o1777));
        assert_eq!((inode.uid, inode.gid), (100_000, 100_001));
        assert_eq!(inode.data_ranges(&sb, 0).unwrap(), [(2 * 4096, 10)]);
        assert!(parse_inode(&extended[..40]).is_err());

        let mut compressed = compact;
        compressed[0..2].copy_from_slice(&(3u16 << 1).to_le_bytes());
        assert!(parse_inode(&compressed)
            .unwrap()
            .data_ranges(&sb, 0)
            .is_err());
    }

    fn dir_block(entries: &[(u64, &str)], block_size: usize) -> Vec<u8> {
        let mut block = vec![0u8; DIRENT_BYTES * entries.len()];
        let mut names = Vec::new();
        for (i, (nid, name)) in entries.iter().enumerate() {
            let at = i * DIRENT_BYTES;
            block[at..at + 8].copy_from_slice(&nid.to_le_bytes());
            let off = (DIRENT_BYTES * entries.len() + names.len()) as u16;
            block[at + 8..at + 10].copy_from_slice(&off.to_le_bytes());
            names.extend_from_slice(name.as_bytes());
        }
        block.extend(names);
        block.resize(block_size.max(block.len()), 0);
        block
    }

    #[test]
    fn reads_folder_blocks_without_dot_entries() {
        let mut data = dir_block(&[(36, "."), (36, ".."), (40, "etc"), (41, "sp ace")], 64);
        data.extend(dir_block(&[(50, "usr")], 0));
        let entries = parse_dir(&data, 64).unwrap();
        let names: Vec<(u64, &str)> = entries.iter().map(|d| (d.nid, d.name.as_str())).collect();
        assert_eq!(names, [(40, "etc"), (41, "sp ace"), (50, "usr")]);
        assert!(parse_dir(&[0u8; 12], 64).is_err());
    }
}
