//! Reading disk images without mounting them: what a file holds (EROFS, FAT, MBR disk), its
//! primary partitions, and byte ranges copied out or digested.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::sparse::SparseFile;
use crate::util;

/// What a file holds, judged from its first sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// An EROFS filesystem, alone or followed by more (a system slot's verity tree).
    Erofs,
    Fat,
    Disk,
    Other,
}

/// Classify from at least the first 2 KiB. Pure.
pub fn classify(head: &[u8]) -> Content {
    if crate::erofs::format::is_erofs(head) {
        return Content::Erofs;
    }
    if head.len() < 512 || head[510] != 0x55 || head[511] != 0xAA {
        return Content::Other;
    }
    let fat_boot = matches!(head[0], 0xEB | 0xE9)
        && (head.get(54..57) == Some(b"FAT".as_slice())
            || head.get(82..87) == Some(b"FAT32".as_slice()));
    if fat_boot {
        return Content::Fat;
    }
    if !parse_mbr(head).is_empty() {
        return Content::Disk;
    }
    Content::Other
}

/// A primary MBR partition, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: usize,
    pub kind: u8,
    pub start: u64,
    pub size: u64,
}

/// The primary partitions of an MBR (first sector). Pure.
pub fn parse_mbr(sector: &[u8]) -> Vec<Partition> {
    if sector.len() < 512 || sector[510] != 0x55 || sector[511] != 0xAA {
        return Vec::new();
    }
    (0..4)
        .filter_map(|i| {
            let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
            let kind = e[4];
            let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
            let count = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
            (kind != 0 && count != 0 && lba != 0).then_some(Partition {
                number: i + 1,
                kind,
                start: lba * 512,
                size: count * 512,
            })
        })
        .collect()
}

/// The first 4 KiB of a file (less when it is shorter), for [`classify`].
pub fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        match f
            .read(&mut head[n..])
            .with_context(|| format!("could not read {}", path.display()))?
        {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    Ok(head)
}

/// Copy one partition out of a disk image into `dest`, sparsely.
pub fn extract(image: &Path, part: &Partition, dest: &Path) -> Result<()> {
    let mut src =
        File::open(image).with_context(|| format!("could not open {}", image.display()))?;
    src.seek(SeekFrom::Start(part.start)).with_context(|| {
        format!(
            "{} is shorter than its partition table says",
            image.display()
        )
    })?;
    let mut out = SparseFile::create(dest)?;
    let mut left = part.size;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = src
            .read(&mut buf[..want])
            .with_context(|| format!("could not read {}", image.display()))?;
        if n == 0 {
            bail!("{} ends inside partition {}", image.display(), part.number);
        }
        out.append(&buf[..n])?;
        left -= n as u64;
    }
    out.finish()
}

/// sha256 of `len` bytes at `start` (bytes past the end count as missing, so a short file differs).
pub fn digest_range(path: &Path, start: u64, len: u64) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    f.seek(SeekFrom::Start(start))
        .with_context(|| format!("could not seek in {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut take = f.take(len);
    std::io::copy(&mut take, &mut hasher)
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(util::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(parts: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        for (i, (kind, lba, count)) in parts.iter().enumerate() {
            let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
            e[4] = *kind;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&count.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn reads_primary_partitions() {
        let s = mbr(&[(0x0c, 8192, 65536), (0x83, 73728, 131072)]);
        assert_eq!(
            parse_mbr(&s),
            vec![
                Partition {
                    number: 1,
                    kind: 0x0c,
                    start: 8192 * 512,
                    size: 65536 * 512
                },
                Partition {
                    number: 2,
                    kind: 0x83,
                    start: 73728 * 512,
                    size: 131072 * 512
                },
            ]
        );
        let mut unsigned = s.clone();
        unsigned[511] = 0;
        assert!(parse_mbr(&unsigned).is_empty());
        assert_eq!(classify(&s), Content::Disk);
    }

    #[test]
    fn classifies_filesystems() {
        let mut erofs = vec![0u8; 2048];
        erofs[1024..1028].copy_from_slice(&0xE0F5_E1E2u32.to_le_bytes());
        assert_eq!(classify(&erofs), Content::Erofs);
        let mut ext = vec![0u8; 2048];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        assert_eq!(
            classify(&ext),
            Content::Other,
            "no Berth image holds ext4 any more, so diff does not look into it"
        );
        let mut fat = mbr(&[]);
        fat[0] = 0xEB;
        fat[54..57].copy_from_slice(b"FAT");
        assert_eq!(classify(&fat), Content::Fat);
        assert_eq!(
            classify(&mbr(&[])),
            Content::Other,
            "a signature without partitions is no disk"
        );
        assert_eq!(classify(b"hello"), Content::Other);
    }
}
