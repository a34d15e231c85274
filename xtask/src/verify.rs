//! `cargo xtask verify`: check an artifact folder (SHA256SUMS, manifest, block maps) before
//! flashing, and name the first file that disagrees.
//!
//! A build folder holds `sdcard.img`; a downloaded release holds `sdcard.img.xz` instead. The
//! digests in SHA256SUMS, the manifest and the block map are always those of the uncompressed
//! image (what gets written to the card), so a listed file that is missing but has an `.xz`
//! beside it is decompressed (to a sparse scratch file next to it, removed afterwards) and
//! checked as the image. A digest of the `.xz` itself, when SHA256SUMS has one, is checked too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::manifest::Artifact;
use crate::project::Repo;
use crate::release::{self, SumEntry, MANIFEST_FILE, SUMS_FILE};
use crate::sparse::SparseFile;
use crate::util;

#[derive(Args)]
pub struct VerifyArgs {
    /// Artifact folder (e.g. output/odroid-xu4/images), or a downloaded `sdcard.img.xz` lying
    /// beside its SHA256SUMS, manifest.toml and block map.
    pub path: PathBuf,
}

/// Check the folder or release `args` names; the checkout plays no part, but every verb takes it.
pub fn run(_repo: &Repo, args: VerifyArgs) -> Result<()> {
    let (dir, wanted) = locate(&args.path)?;
    let checked = verify_folder(&dir, wanted.as_deref())?;
    println!("{}: all {checked} checks passed", dir.display());
    Ok(())
}

/// The folder to check and, for an `.xz` argument, the file the user cares about.
fn locate(path: &Path) -> Result<(PathBuf, Option<String>)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{} does not exist or cannot be read", path.display()))?;
    if meta.is_dir() {
        return Ok((path.to_path_buf(), None));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    if !name.ends_with(".xz") {
        bail!(
            "{} is a file but not an .xz release; give the artifact folder or the downloaded .xz image",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, Some(name.to_string())))
}

/// Every manifest artifact must be in SHA256SUMS with the same digest; the first that is not
/// is named.
pub fn cross_check(sums: &[SumEntry], manifest: &[Artifact]) -> Result<()> {
    for artifact in manifest {
        match sums.iter().find(|s| s.name == artifact.name) {
            None => bail!(
                "{}: listed in {MANIFEST_FILE} but not in {SUMS_FILE}",
                artifact.name
            ),
            Some(s) if s.sha256 != artifact.sha256 => bail!(
                "{}: {MANIFEST_FILE} says sha256 {}, {SUMS_FILE} says {}",
                artifact.name,
                artifact.sha256,
                s.sha256
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// A listed file as found on disk: itself, or its `.xz` decompressed to a scratch file.
enum Found {
    Plain(PathBuf),
    Decompressed { xz: PathBuf, scratch: Scratch },
}

impl Found {
    fn path(&self) -> &Path {
        match self {
            Found::Plain(p) => p,
            Found::Decompressed { scratch, .. } => &scratch.0,
        }
    }
}

/// A file removed when dropped, so an interrupted check leaves nothing behind.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Check the folder; returns how many checks passed, or the first disagreement.
pub fn verify_folder(dir: &Path, wanted_xz: Option<&str>) -> Result<usize> {
    let sums = release::read_sums(dir)?;
    let build = release::read_manifest(dir)?;
    let manifest = &build.artifacts;

    if let Some(xz) = wanted_xz {
        let image = xz.strip_suffix(".xz").unwrap_or(xz);
        ensure!(
            sums.iter().any(|s| s.name == xz || s.name == image),
            "{SUMS_FILE} in {} lists neither {xz} nor {image}, so the download cannot be checked",
            dir.display()
        );
    }
    cross_check(&sums, manifest)?;

    let mut checked = 1; // the cross check
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for entry in &sums {
        let file = find(dir, &entry.name)?;
        let actual = match &file {
            Found::Plain(p) => util::sha256_file(p)?,
            Found::Decompressed { scratch, .. } => util::sha256_file(&scratch.0)?,
        };
        if actual != entry.sha256 {
            let what = match &file {
                Found::Plain(_) => entry.name.clone(),
                Found::Decompressed { xz, .. } => {
                    format!("{} (decompressed from {})", entry.name, xz.display())
                }
            };
            bail!(
                "{what}: sha256 is {actual}, but {SUMS_FILE} says {}",
                entry.sha256
            );
        }
        println!("ok  {}", entry.name);
        checked += 1;
        found.insert(entry.name.clone(), file);
    }

    for artifact in manifest {
        let file = found
            .get(&artifact.name)
            .expect("cross_check put every artifact in SHA256SUMS");
        let size = std::fs::metadata(file.path())
            .with_context(|| format!("could not read the size of {}", file.path().display()))?
            .len();
        ensure!(
            size == artifact.size,
            "{}: {size} bytes, but {MANIFEST_FILE} says {}",
            artifact.name,
            artifact.size
        );
        checked += 1;
    }

    for bmap_name in block_maps(dir, &sums)? {
        let image_name = bmap_name
            .strip_suffix(release::BMAP_SUFFIX)
            .expect("block_maps returns *.bmap");
        let image = match found.remove(image_name) {
            Some(f) => f,
            None => {
                find(dir, image_name).with_context(|| format!("{bmap_name} maps {image_name}"))?
            }
        };
        crate::bmap::check_image_against_bmap(image.path(), &dir.join(&bmap_name))
            .with_context(|| format!("{image_name} does not match its block map {bmap_name}"))?;
        println!("ok  {image_name} against {bmap_name}");
        checked += 1;
    }

    checked += crate::rauc::verify_bundle(dir, &build)?;

    let unlisted = unlisted_files(dir, &sums)?;
    if !unlisted.is_empty() {
        eprintln!(
            "note: not covered by {SUMS_FILE} (not checked): {}",
            unlisted.join(", ")
        );
    }
    Ok(checked)
}

/// `dir/name`, or `dir/name.xz` decompressed, or an error naming the missing file.
fn find(dir: &Path, name: &str) -> Result<Found> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(Found::Plain(plain));
    }
    let xz = dir.join(format!("{name}.xz"));
    if xz.is_file() {
        let scratch = Scratch(dir.join(format!(".{name}.verify-{}", std::process::id())));
        decompress_sparse(&xz, &scratch.0)?;
        return Ok(Found::Decompressed { xz, scratch });
    }
    bail!(
        "{name}: listed in {SUMS_FILE} but missing from {} (no {name}.xz either)",
        dir.display()
    )
}

/// Block maps to check: every `*.bmap` in the folder (listed or not: a stray map that does not
/// fit its image is worth knowing about).
fn block_maps(dir: &Path, sums: &[SumEntry]) -> Result<Vec<String>> {
    let mut maps: BTreeSet<String> = sums
        .iter()
        .filter(|s| s.name.ends_with(release::BMAP_SUFFIX))
        .map(|s| s.name.clone())
        .collect();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.ends_with(release::BMAP_SUFFIX) && name.len() > release::BMAP_SUFFIX.len() {
                maps.insert(name.to_string());
            }
        }
    }
    Ok(maps.into_iter().collect())
}

fn unlisted_files(dir: &Path, sums: &[SumEntry]) -> Result<Vec<String>> {
    let listed: BTreeSet<&str> = sums.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let covered = listed.contains(name.as_str())
            || name == SUMS_FILE
            || name.starts_with('.')
            || name
                .strip_suffix(".xz")
                .is_some_and(|base| listed.contains(base));
        if !covered && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Decompress `xz` into `dest`, leaving runs of zero blocks as holes so a mostly empty image
/// costs little disk. Decoded like `cargo xtask flash` decodes, with liblzma.
fn decompress_sparse(xz: &Path, dest: &Path) -> Result<()> {
    const BLOCK: usize = 64 * 1024;
    let file =
        File::open(xz).with_context(|| format!("could not open the release {}", xz.display()))?;
    let mut stream = liblzma::read::XzDecoder::new_multi_decoder(std::io::BufReader::new(file));
    let mut out = SparseFile::create(dest)?;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = read_full(&mut stream, &mut buf).with_context(|| {
            format!(
                "{} is not a valid .xz file (truncated or corrupt)",
                xz.display()
            )
        })?;
        if n == 0 {
            break;
        }
        out.append(&buf[..n])?;
    }
    out.finish()
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn cross_check_names_the_disagreeing_artifact() {
        let sums = vec![SumEntry {
            sha256: A.into(),
            name: "sdcard.img".into(),
        }];
        let same = vec![Artifact {
            name: "sdcard.img".into(),
            size: 1,
            sha256: A.into(),
        }];
        cross_check(&sums, &same).unwrap();
        let other = vec![Artifact {
            name: "sdcard.img".into(),
            size: 1,
            sha256: "0".repeat(64),
        }];
        let err = format!("{:#}", cross_check(&sums, &other).unwrap_err());
        assert!(err.starts_with("sdcard.img:"), "{err}");
        let absent = vec![Artifact {
            name: "emmc-boot0.img".into(),
            size: 1,
            sha256: A.into(),
        }];
        let err = format!("{:#}", cross_check(&sums, &absent).unwrap_err());
        assert!(
            err.contains("emmc-boot0.img") && err.contains("not in SHA256SUMS"),
            "{err}"
        );
    }

    #[test]
    fn locates_folder_and_xz() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            locate(dir.path()).unwrap(),
            (dir.path().to_path_buf(), None)
        );
        let xz = dir.path().join("sdcard.img.xz");
        std::fs::write(&xz, b"x").unwrap();
        assert_eq!(
            locate(&xz).unwrap(),
            (dir.path().to_path_buf(), Some("sdcard.img.xz".into()))
        );
        let other = dir.path().join("sdcard.img");
        std::fs::write(&other, b"x").unwrap();
        assert!(locate(&other).is_err());
        assert!(locate(&dir.path().join("absent")).is_err());
    }
}
