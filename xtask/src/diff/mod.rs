//! `cargo xtask diff`: compare two build outputs file by file, and the filesystems inside the
//! images (partitions of an MBR disk image: the system slots' EROFS through [`ErofsImage`], which
//! stops where its superblock says and so ignores the verity tree after it; vfat through mtools),
//! so a difference is named down to the file that causes it. Runs diffoscope on the
//! differing files when it is installed. Fails when anything differs, so CI can gate on it.
//!
//! Everything runs unprivileged: no loop devices, no mounts.

mod compare;
pub mod disk;
pub mod signed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

pub use compare::{compare_trees, Difference};
pub use disk::{classify, parse_mbr, Content, Partition};

use crate::erofs::ErofsImage;
use crate::project::Repo;
use crate::tree::{snapshot, Entry};
use disk::{digest_range, extract, read_head};

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

/// Compare the two outputs; the checkout plays no part, but every verb takes it.
pub fn run(_repo: &Repo, args: DiffArgs) -> Result<()> {
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
    let have_diffoscope = diffoscope && which::which("diffoscope").is_ok();
    let mut out = Vec::new();
    for (n, d) in top.into_iter().enumerate() {
        let rel = d.path.trim_start_matches('/').to_string();
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let both_files = matches!(snap_a.get(&d.path), Some(Entry::File { .. }))
            && matches!(snap_b.get(&d.path), Some(Entry::File { .. }));
        if both_files && differs_only_by_signature(&rel, &pa, &pb)? {
            println!("{rel}: differs only by the bundle's signature, as every signing does");
            continue;
        }
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

/// A bundle whose signed squashfs is the same on both sides, or SHA256SUMS / manifest.toml
/// equal once the bundles' rows are left out ([`signed`]).
fn differs_only_by_signature(name: &str, a: &Path, b: &Path) -> Result<bool> {
    if signed::is_bundle(name) {
        return signed::same_signed_content(a, b);
    }
    if !signed::lists_bundles(name) {
        return Ok(false);
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("could not read {}", p.display()))
    };
    let (Some(ta), Some(tb)) = (
        signed::without_bundle_rows(name, &read(a)?),
        signed::without_bundle_rows(name, &read(b)?),
    ) else {
        return Ok(false);
    };
    Ok(ta? == tb?)
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
        Content::Erofs | Content::Fat => {
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
                let found = if matches!(kind, Content::Erofs | Content::Fat)
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
    let found = compare_trees(
        &format!("{label}:"),
        &dump(sh, kind, a, &da)?,
        &dump(sh, kind, b, &db)?,
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

/// Unpack a filesystem image into `dest` (which must not exist) without mounting it; what it
/// holds, path by path.
fn dump(sh: &Shell, kind: Content, image: &Path, dest: &Path) -> Result<BTreeMap<String, Entry>> {
    match kind {
        // Owners and modes from the image itself: the extraction cannot keep both.
        Content::Erofs => {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("could not create {}", parent.display()))?;
            }
            ErofsImage::open(image)?.snapshot(dest)
        }
        Content::Fat => {
            std::fs::create_dir_all(dest)
                .with_context(|| format!("could not create {}", dest.display()))?;
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
                })?;
            snapshot(dest, true)
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
