//! `cargo xtask diff`: compare two build outputs file by file, and the filesystems inside the
//! images (partitions of an MBR disk image, ext2/3/4 through [`Ext4Image::rdump`], vfat through
//! mtools), so a difference is named down to the file that causes it. Runs diffoscope on the
//! differing files when it is installed. Fails when anything differs, so CI can gate on it.
//!
//! Everything runs unprivileged: no loop devices, no mounts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::rootfs::Ext4Image;
use crate::util;

#[derive(Args)]
pub struct DiffArgs {
    /// First build output: a Buildroot output folder (with images/) or an images folder.
    pub a: PathBuf,
    /// Second build output, same kind.
    pub b: PathBuf,
    /// Do not run diffoscope on differing files, even when it is installed.
    #[arg(long)]
    pub no_diffoscope: bool,
}

pub fn run(args: DiffArgs) -> Result<()> {
    let a = images_dir(&args.a)?;
    let b = images_dir(&args.b)?;
    let sh = Shell::new().context("could not start a shell")?;
    let scratch = tempfile::Builder::new()
        .prefix("berth-diff-")
        .tempdir()
        .context("could not create a scratch folder for the filesystem dumps")?;
    let differences = compare_outputs(&sh, &a, &b, scratch.path(), !args.no_diffoscope)?;
    if differences.is_empty() {
        println!("{} and {} are identical", a.display(), b.display());
        return Ok(());
    }
    println!(
        "{} difference(s) between {} and {}:",
        differences.len(),
        a.display(),
        b.display()
    );
    for d in &differences {
        println!("  {d}");
    }
    bail!(
        "the two builds differ in {} place(s); the first is {}",
        differences.len(),
        differences[0]
    )
}

/// `<output>/images` when it exists, else the folder itself.
fn images_dir(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{} does not exist or cannot be read", path.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a folder (give a build output or its images folder)",
            path.display()
        );
    }
    let images = path.join("images");
    Ok(if images.is_dir() {
        images
    } else {
        path.to_path_buf()
    })
}

/// What is at one path of a tree, as far as comparing builds goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mode: u32,
        owner: (u32, u32),
    },
    File {
        size: u64,
        sha256: String,
        mode: u32,
        owner: (u32, u32),
    },
    Symlink {
        target: String,
    },
    Other {
        kind: String,
    },
}

/// A difference, named by where it is (`sdcard.img[p2]:/etc/hostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Compare two snapshots; `prefix` names the tree in the result. Pure.
pub fn compare_trees(
    prefix: &str,
    a: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let name = |p: &str| format!("{prefix}{p}");
    for (path, ea) in a {
        match b.get(path) {
            None => out.push(Difference {
                path: name(path),
                what: "only in A".into(),
            }),
            Some(eb) if ea == eb => {}
            Some(eb) => out.push(Difference {
                path: name(path),
                what: describe(ea, eb),
            }),
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(Difference {
            path: name(path),
            what: "only in B".into(),
        });
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

fn describe(a: &Entry, b: &Entry) -> String {
    match (a, b) {
        (
            Entry::File {
                size: sa,
                sha256: ha,
                mode: ma,
                owner: oa,
            },
            Entry::File {
                size: sb,
                sha256: hb,
                mode: mb,
                owner: ob,
            },
        ) => {
            let mut parts = Vec::new();
            if ha != hb {
                parts.push(if sa == sb {
                    format!("content differs ({sa} bytes each)")
                } else {
                    format!("content differs ({sa} vs {sb} bytes)")
                });
            }
            if ma != mb {
                parts.push(format!("mode {ma:o} vs {mb:o}"));
            }
            if oa != ob {
                parts.push(format!("owner {}:{} vs {}:{}", oa.0, oa.1, ob.0, ob.1));
            }
            parts.join(", ")
        }
        (
            Entry::Dir {
                mode: ma,
                owner: oa,
            },
            Entry::Dir {
                mode: mb,
                owner: ob,
            },
        ) => {
            if ma != mb {
                format!("directory mode {ma:o} vs {mb:o}")
            } else {
                format!("directory owner {}:{} vs {}:{}", oa.0, oa.1, ob.0, ob.1)
            }
        }
        (Entry::Symlink { target: ta }, Entry::Symlink { target: tb }) => {
            format!("symlink to {ta} vs {tb}")
        }
        _ => format!("{} vs {}", kind_name(a), kind_name(b)),
    }
}

fn kind_name(e: &Entry) -> String {
    match e {
        Entry::Dir { .. } => "directory".into(),
        Entry::File { .. } => "file".into(),
        Entry::Symlink { .. } => "symlink".into(),
        Entry::Other { kind } => kind.clone(),
    }
}

/// Every path under `root` (relative, starting with `/`), with what is there. `with_owners`
/// records mode and owner (inside filesystems they matter; in an output folder they do not).
pub fn snapshot(root: &Path, with_owners: bool) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    walk(root, root, with_owners, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    with_owners: bool,
    out: &mut BTreeMap<String, Entry>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("could not list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("could not stat {}", path.display()))?;
        let rel = format!(
            "/{}",
            path.strip_prefix(root)
                .expect("walk stays under root")
                .display()
        );
        let (mode, owner) = if with_owners {
            (meta.mode() & 0o7777, (meta.uid(), meta.gid()))
        } else {
            (0, (0, 0))
        };
        let ft = meta.file_type();
        let e = if ft.is_dir() {
            walk(root, &path, with_owners, out)?;
            Entry::Dir { mode, owner }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("could not read the link {}", path.display()))?;
            Entry::Symlink {
                target: target.display().to_string(),
            }
        } else if ft.is_file() {
            Entry::File {
                size: meta.len(),
                sha256: util::sha256_file(&path)?,
                mode,
                owner,
            }
        } else {
            Entry::Other {
                kind: format!("special file (mode {:o})", meta.mode()),
            }
        };
        out.insert(rel, e);
    }
    Ok(())
}

/// What a file holds, judged from its first sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Ext,
    Fat,
    Disk,
    Other,
}

/// Classify from at least the first 2 KiB. Pure.
pub fn classify(head: &[u8]) -> Content {
    if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF {
        return Content::Ext;
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

fn read_head(path: &Path) -> Result<Vec<u8>> {
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

/// Compare the two images folders; returns every difference found, deepest names first
/// within each file.
pub fn compare_outputs(
    sh: &Shell,
    a: &Path,
    b: &Path,
    scratch: &Path,
    diffoscope: bool,
) -> Result<Vec<Difference>> {
    let snap_a = snapshot(a, false)?;
    let snap_b = snapshot(b, false)?;
    let top = compare_trees("", &snap_a, &snap_b);
    let have_diffoscope = diffoscope && on_path("diffoscope");
    let mut out = Vec::new();
    for (n, d) in top.into_iter().enumerate() {
        let rel = d.path.trim_start_matches('/').to_string();
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let both_files = matches!(snap_a.get(&d.path), Some(Entry::File { .. }))
            && matches!(snap_b.get(&d.path), Some(Entry::File { .. }));
        out.push(Difference {
            path: rel.clone(),
            what: d.what,
        });
        if !both_files {
            continue;
        }
        let work = scratch.join(format!("{n}"));
        let inner = look_inside(sh, &rel, &pa, &pb, &work)
            .with_context(|| format!("could not compare the inside of {rel}"))?;
        let looked = inner.is_some();
        if let Some(inner) = inner {
            out.extend(inner.iter().cloned());
            if have_diffoscope {
                for d in inner.iter().filter(|d| d.what.starts_with("content")) {
                    if let Some((fa, fb)) = dumped_pair(&work, &d.path) {
                        run_diffoscope(sh, &d.path, &fa, &fb);
                    }
                }
            }
        }
        if have_diffoscope && !looked {
            run_diffoscope(sh, &rel, &pa, &pb);
        }
    }
    Ok(out)
}

/// For a filesystem or disk image present on both sides, the differences inside it; `None`
/// when the file is neither. Dumps land under `work/{a,b}/<label>`.
fn look_inside(
    sh: &Shell,
    name: &str,
    a: &Path,
    b: &Path,
    work: &Path,
) -> Result<Option<Vec<Difference>>> {
    let (ka, kb) = (classify(&read_head(a)?), classify(&read_head(b)?));
    if ka != kb || ka == Content::Other {
        return Ok(None);
    }
    let mut out = Vec::new();
    match ka {
        Content::Ext | Content::Fat => {
            out.extend(compare_filesystems(sh, ka, name, a, b, work, "fs")?);
        }
        Content::Disk => {
            let (pa, pb) = (parse_mbr(&read_head(a)?), parse_mbr(&read_head(b)?));
            if pa != pb {
                out.push(Difference {
                    path: format!("{name}[partition table]"),
                    what: "partition tables differ".into(),
                });
            }
            let first_start = pa.iter().map(|p| p.start).min().unwrap_or(512);
            if digest_range(a, 0, first_start)? != digest_range(b, 0, first_start)? {
                out.push(Difference {
                    path: format!("{name}[bytes 0..{first_start}]"),
                    what: "MBR or bootloader area (BL1, BL2, U-Boot, TZSW) differs".into(),
                });
            }
            for part in pa.iter().filter(|p| pb.contains(p)) {
                if digest_range(a, part.start, part.size)?
                    == digest_range(b, part.start, part.size)?
                {
                    continue;
                }
                let label = format!("{name}[p{}]", part.number);
                let dir = work.join(format!("p{}", part.number));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("could not create {}", dir.display()))?;
                let (ia, ib) = (dir.join("a.img"), dir.join("b.img"));
                extract(a, part, &ia)?;
                extract(b, part, &ib)?;
                let kind = classify(&read_head(&ia)?);
                let found = if matches!(kind, Content::Ext | Content::Fat)
                    && kind == classify(&read_head(&ib)?)
                {
                    compare_filesystems(sh, kind, &label, &ia, &ib, &dir, "fs")?
                } else {
                    Vec::new()
                };
                if found.is_empty() {
                    out.push(Difference {
                        path: label,
                        what: "partition bytes differ but no file in it does (metadata: times, ids, layout)".into(),
                    });
                } else {
                    out.extend(found);
                }
                let _ = std::fs::remove_file(&ia);
                let _ = std::fs::remove_file(&ib);
            }
        }
        Content::Other => unreachable!(),
    }
    Ok(Some(out))
}

fn compare_filesystems(
    sh: &Shell,
    kind: Content,
    label: &str,
    a: &Path,
    b: &Path,
    work: &Path,
    leaf: &str,
) -> Result<Vec<Difference>> {
    let (da, db) = (work.join("a").join(leaf), work.join("b").join(leaf));
    dump(sh, kind, a, &da)?;
    dump(sh, kind, b, &db)?;
    let found = compare_trees(
        &format!("{label}:"),
        &snapshot(&da, true)?,
        &snapshot(&db, true)?,
    );
    if found.is_empty() {
        return Ok(vec![Difference {
            path: label.to_string(),
            what: "filesystem bytes differ but no file in it does (metadata: times, ids, layout)"
                .into(),
        }]);
    }
    Ok(found)
}

/// Unpack a filesystem image into `dest` without mounting it.
fn dump(sh: &Shell, kind: Content, image: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)
        .with_context(|| format!("could not create {}", dest.display()))?;
    match kind {
        Content::Ext => Ext4Image::open(image)?.rdump(dest),
        Content::Fat => {
            let dest_arg = format!("{}/", dest.display());
            cmd!(sh, "mcopy -s -p -n -i {image} ::/ {dest_arg}")
                .env("MTOOLS_SKIP_CHECK", "1")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .or_else(|err| {
                    // An empty FAT has nothing to copy, which mcopy reports as failure.
                    let empty = cmd!(sh, "mdir -b -i {image} ::/")
                        .env("MTOOLS_SKIP_CHECK", "1")
                        .quiet()
                        .read();
                    match empty {
                        Ok(listing) if listing.trim().is_empty() => Ok(()),
                        _ => Err(err),
                    }
                })
                .with_context(|| {
                    format!(
                        "mtools could not dump {} (apt-get install mtools)",
                        image.display()
                    )
                })
        }
        _ => bail!("{} is not a filesystem image", image.display()),
    }
}

/// For `sdcard.img[p2]:/etc/x`, the two dumped copies under the work folder.
fn dumped_pair(work: &Path, path: &str) -> Option<(PathBuf, PathBuf)> {
    let (label, inner) = path.split_once(':')?;
    let base = match label.rsplit_once("[p") {
        Some((_, num)) => work.join(format!("p{}", num.trim_end_matches(']'))),
        None => work.to_path_buf(),
    };
    let inner = inner.trim_start_matches('/');
    let (fa, fb) = (base.join("a/fs").join(inner), base.join("b/fs").join(inner));
    (fa.is_file() && fb.is_file()).then_some((fa, fb))
}

fn extract(image: &Path, part: &Partition, dest: &Path) -> Result<()> {
    let mut src =
        File::open(image).with_context(|| format!("could not open {}", image.display()))?;
    src.seek(SeekFrom::Start(part.start)).with_context(|| {
        format!(
            "{} is shorter than its partition table says",
            image.display()
        )
    })?;
    let mut out =
        File::create(dest).with_context(|| format!("could not create {}", dest.display()))?;
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
        if buf[..n].iter().all(|&x| x == 0) {
            out.seek(SeekFrom::Current(n as i64))
                .context("could not seek in a scratch file")?;
        } else {
            out.write_all(&buf[..n])
                .with_context(|| format!("could not write {}", dest.display()))?;
        }
        left -= n as u64;
    }
    out.set_len(part.size)
        .context("could not size a scratch file")?;
    Ok(())
}

/// sha256 of `len` bytes at `start` (bytes past the end count as missing, so a short file differs).
fn digest_range(path: &Path, start: u64, len: u64) -> Result<String> {
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

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// diffoscope's view of one difference; informative only, so its failure does not stop us.
fn run_diffoscope(sh: &Shell, name: &str, a: &Path, b: &Path) {
    println!("--- diffoscope {name}");
    // diffoscope exits 1 when the files differ, which they do.
    let _ = cmd!(sh, "diffoscope --no-progress --text - {a} {b}")
        .quiet()
        .ignore_status()
        .run();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str, size: u64) -> Entry {
        Entry::File {
            size,
            sha256: sha.into(),
            mode: 0o644,
            owner: (0, 0),
        }
    }

    #[test]
    fn lists_added_removed_and_changed_paths() {
        let a = BTreeMap::from([
            ("/same".to_string(), file("1", 1)),
            ("/changed".to_string(), file("1", 1)),
            ("/gone".to_string(), file("1", 1)),
            ("/link".to_string(), Entry::Symlink { target: "x".into() }),
        ]);
        let mut b = a.clone();
        b.insert("/changed".into(), file("2", 3));
        b.remove("/gone");
        b.insert(
            "/new".into(),
            Entry::Dir {
                mode: 0o755,
                owner: (0, 0),
            },
        );
        b.insert("/link".into(), Entry::Symlink { target: "y".into() });
        let d = compare_trees("img:", &a, &b);
        let got: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "img:/changed: content differs (1 vs 3 bytes)",
                "img:/gone: only in A",
                "img:/link: symlink to x vs y",
                "img:/new: only in B",
            ]
        );
        assert!(compare_trees("", &a, &a).is_empty());
    }

    #[test]
    fn names_mode_and_owner_changes() {
        let a = BTreeMap::from([("/f".to_string(), file("1", 1))]);
        let b = BTreeMap::from([(
            "/f".to_string(),
            Entry::File {
                size: 1,
                sha256: "1".into(),
                mode: 0o600,
                owner: (0, 1000),
            },
        )]);
        assert_eq!(
            compare_trees("", &a, &b)[0].what,
            "mode 644 vs 600, owner 0:0 vs 0:1000"
        );
    }

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
        let mut ext = vec![0u8; 2048];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        assert_eq!(classify(&ext), Content::Ext);
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

    #[test]
    fn finds_the_dumped_copies_of_an_inner_file() {
        let work = tempfile::tempdir().unwrap();
        for side in ["a", "b"] {
            let d = work.path().join("p2").join(side).join("fs/etc");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("hostname"), side).unwrap();
        }
        let (fa, fb) = dumped_pair(work.path(), "sdcard.img[p2]:/etc/hostname").unwrap();
        assert!(fa.ends_with("p2/a/fs/etc/hostname") && fb.ends_with("p2/b/fs/etc/hostname"));
        assert!(dumped_pair(work.path(), "sdcard.img[p1]:/etc/hostname").is_none());
    }
}
