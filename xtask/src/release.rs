//! What a finished build hands out, in `<output>/images/`: the one home of the artifact names
//! and of the code that writes and reads `manifest.toml` and `SHA256SUMS`. `cargo xtask image`
//! seals a folder with [`seal`]; `cargo xtask verify` reads it back with [`read_sums`] and
//! [`read_manifest`], so both always agree on names and formats.
//!
//! `SHA256SUMS` and `manifest.toml` are written last, each through a `.partial` file renamed into
//! place, so a folder that has them holds a finished image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::manifest::{Artifact, Manifest, SystemImageInfo};
use crate::project::{SYSTEM_IMAGE_BUDGET_BYTES, SYSTEM_SLOT_BYTES};
use crate::util;

/// The SD card image (also written to eMMC user area).
pub const SDCARD_IMAGE: &str = "sdcard.img";
/// The bootloader chain for the eMMC `boot0` hardware partition.
pub const EMMC_BOOT0_IMAGE: &str = "emmc-boot0.img";
/// A system slot's contents: the EROFS root (kernel and DTBs in its /boot) followed by its
/// dm-verity hash tree. The factory image holds it in slot A; an update writes it to a slot.
pub const SYSTEM_IMAGE: &str = "system.img";
/// The verity parameters and kernel command line of [`SYSTEM_IMAGE`], as U-Boot's `env import
/// -t` reads them (one `berth_<name>=<value>` a line); on the boot partition as `slot-<X>.env`.
pub const SYSTEM_ENV: &str = "system.env";
/// U-Boot for the QEMU twin (`cargo xtask qemu`), which boots [`SDCARD_IMAGE`] as its card;
/// installed by br2-external/package/berth-twin-uboot, whose .mk names it too.
pub const TWIN_UBOOT: &str = "u-boot-qemu-twin.bin";
/// What the twin needs beside the card, sealed with it so that it is known to be of this build.
pub const TWIN_ARTIFACTS: &[&str] = &[TWIN_UBOOT];
/// What the board's post-image script makes for a system slot, handed out beside the card.
pub const SLOT_ARTIFACTS: &[&str] = &[SYSTEM_IMAGE, SYSTEM_ENV];
/// Images the board's genimage configuration produces, each given a block map.
pub const IMAGES: &[&str] = &[SDCARD_IMAGE, EMMC_BOOT0_IMAGE];
/// `sha256sum` output over every artifact and the manifest.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// The build manifest ([`Manifest`]).
pub const MANIFEST_FILE: &str = "manifest.toml";
/// The CycloneDX SBOM.
pub const SBOM_FILE: &str = "sbom.cdx.json";
/// The `make legal-info` bundle.
pub const LEGAL_INFO_FILE: &str = "legal-info.tar.gz";
/// The certificate update bundles are signed with, as the image's RAUC keyring holds it.
pub const KEYRING_FILE: &str = "rauc-keyring.pem";
/// Buildroot's `make graph-size` statistics of the root filesystem: one row a file, with its
/// package and size, and one row a package.
pub const FILE_SIZE_STATS: &str = "file-size-stats.csv";
pub const PACKAGE_SIZE_STATS: &str = "package-size-stats.csv";
/// What every RAUC update bundle's name ends with.
pub const BUNDLE_SUFFIX: &str = ".raucb";

/// The version a build gives its update bundle: the commit it was built from (12 hex digits),
/// with `-dirty` when tracked files differed, as the manifest's `[berth]` records them.
pub fn version(commit: &str, dirty: bool) -> String {
    let short = &commit[..commit.len().min(12)];
    if dirty {
        format!("{short}-dirty")
    } else {
        short.to_string()
    }
}

/// The update bundle's name, `berth-<version>-<board>.raucb`.
pub fn bundle_name(version: &str, board: &str) -> String {
    format!("berth-{version}-{board}{BUNDLE_SUFFIX}")
}

/// What a block map's name adds to its image's (bmaptool finds `<image>.bmap` by itself).
pub const BMAP_SUFFIX: &str = ".bmap";

/// The block map's name for `image`.
pub fn bmap_name(image: &str) -> String {
    format!("{image}{BMAP_SUFFIX}")
}

/// Files that mark a folder as finished or were derived from its images: removed before a build
/// so none can lie beside an image it does not describe.
pub fn finished_and_derived() -> Vec<String> {
    [
        SUMS_FILE,
        MANIFEST_FILE,
        SBOM_FILE,
        LEGAL_INFO_FILE,
        FILE_SIZE_STATS,
        PACKAGE_SIZE_STATS,
    ]
    .map(String::from)
    .into_iter()
    .chain(IMAGES.iter().map(|image| bmap_name(image)))
    .collect()
}

/// The system image of an images folder held to [`SYSTEM_IMAGE_BUDGET_BYTES`]: what the manifest
/// records of it, or why it is refused.
pub fn measure_system_image(images: &Path) -> Result<SystemImageInfo> {
    let path = images.join(SYSTEM_IMAGE);
    let size = std::fs::metadata(&path)
        .with_context(|| {
            format!(
                "the build finished but did not produce {} (check the board's post-image script)",
                path.display()
            )
        })?
        .len();
    within_budget(size, SYSTEM_IMAGE_BUDGET_BYTES)
}

/// A system image of `size` bytes against `budget`: refused, with what to do, when bigger. Pure.
pub fn within_budget(size: u64, budget: u64) -> Result<SystemImageInfo> {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    ensure!(
        size <= budget,
        "{SYSTEM_IMAGE} is {size} bytes ({:.1} MiB), over its budget of {budget} bytes ({:.0} MiB, \
         SYSTEM_IMAGE_BUDGET_BYTES in xtask/src/project.rs) by {:.1} MiB: leave packages or apps \
         out of the image, or raise the budget while it stays below the {:.0} MiB slot that \
         cards already flashed have",
        mib(size),
        mib(budget),
        mib(size - budget),
        mib(SYSTEM_SLOT_BYTES)
    );
    Ok(SystemImageInfo {
        size,
        budget,
        slot: SYSTEM_SLOT_BYTES,
    })
}

/// One line of SHA256SUMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumEntry {
    pub sha256: String,
    pub name: String,
}

/// SHA256SUMS in `sha256sum` format (`<hex>  <name>`), sorted by name so it is reproducible.
pub fn render_sums(entries: &[SumEntry]) -> String {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|e| format!("{}  {}\n", e.sha256, e.name))
        .collect()
}

/// Parse `sha256sum` output: `<64 hex>  <name>` (or `<hex> *<name>` for binary mode).
pub fn parse_sums(text: &str) -> Result<Vec<SumEntry>> {
    let mut entries: Vec<SumEntry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let lineno = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed =
            || format!("line {lineno} of {SUMS_FILE} is not `<sha256>  <name>`: {line:?}");
        let (digest, rest) = line.split_once(' ').with_context(malformed)?;
        let name = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .with_context(malformed)?;
        ensure!(
            is_sha256_hex(digest),
            "line {lineno} of {SUMS_FILE} does not start with a 64-digit lower-case hex sha256: {line:?}"
        );
        check_artifact_name(name).with_context(|| format!("line {lineno} of {SUMS_FILE}"))?;
        ensure!(
            !entries.iter().any(|e| e.name == name),
            "{SUMS_FILE} lists {name} twice (line {lineno})"
        );
        entries.push(SumEntry {
            sha256: digest.to_string(),
            name: name.to_string(),
        });
    }
    ensure!(!entries.is_empty(), "{SUMS_FILE} lists no files");
    Ok(entries)
}

/// The SHA256SUMS of an artifact folder.
pub fn read_sums(dir: &Path) -> Result<Vec<SumEntry>> {
    let text = std::fs::read_to_string(dir.join(SUMS_FILE))
        .with_context(|| format!("{SUMS_FILE} is missing or unreadable in {}", dir.display()))?;
    parse_sums(&text)
}

/// The manifest of an artifact folder, read whole with [`Manifest::load`], whose artifacts must
/// be plain names with valid digests, each listed once.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    ensure!(
        path.is_file(),
        "{MANIFEST_FILE} is missing in {}",
        dir.display()
    );
    let manifest = Manifest::load(&path)?;
    check_manifest_artifacts(&manifest.artifacts)?;
    Ok(manifest)
}

/// What [`read_manifest`] demands of the `[[artifact]]` tables. Pure.
pub fn check_manifest_artifacts(artifacts: &[Artifact]) -> Result<()> {
    ensure!(
        !artifacts.is_empty(),
        "{MANIFEST_FILE} lists no [[artifact]]"
    );
    let mut seen = BTreeSet::new();
    for a in artifacts {
        check_artifact_name(&a.name)
            .with_context(|| format!("an [[artifact]] in {MANIFEST_FILE}"))?;
        ensure!(
            is_sha256_hex(&a.sha256),
            "{MANIFEST_FILE} gives {} an invalid sha256 {:?}",
            a.name,
            a.sha256
        );
        ensure!(
            seen.insert(a.name.as_str()),
            "{MANIFEST_FILE} lists {} twice",
            a.name
        );
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Artifacts are plain names inside the folder: nothing may point outside it.
fn check_artifact_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "an empty file name is listed");
    ensure!(
        !name.contains('/') && !name.contains('\\') && name != "." && name != "..",
        "{name:?} is not a plain file name inside the artifact folder"
    );
    Ok(())
}

/// The last step of a build: digest the artifacts into the manifest, write it, then SHA256SUMS
/// over the artifacts and the manifest. Returns SHA256SUMS's entries.
pub fn seal(images: &Path, mut manifest: Manifest, artifacts: &[String]) -> Result<Vec<SumEntry>> {
    manifest.artifacts = describe(images, artifacts)?;
    write_atomically(&images.join(MANIFEST_FILE), manifest.to_toml()?.as_bytes())?;
    let mut sums: Vec<SumEntry> = manifest
        .artifacts
        .iter()
        .map(|a| SumEntry {
            name: a.name.clone(),
            sha256: a.sha256.clone(),
        })
        .collect();
    sums.push(SumEntry {
        name: MANIFEST_FILE.into(),
        sha256: util::sha256_file(&images.join(MANIFEST_FILE))?,
    });
    write_atomically(&images.join(SUMS_FILE), render_sums(&sums).as_bytes())?;
    Ok(sums)
}

fn describe(images: &Path, names: &[String]) -> Result<Vec<Artifact>> {
    names
        .iter()
        .map(|name| {
            let path = images.join(name);
            let size = std::fs::metadata(&path)
                .with_context(|| format!("could not read {}", path.display()))?
                .len();
            Ok(Artifact {
                name: name.clone(),
                size,
                sha256: util::sha256_file(&path)?,
            })
        })
        .collect()
}

/// Where [`write_atomically`] writes before the rename.
pub fn partial_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", path.display()))
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(path);
    std::fs::write(&partial, bytes)
        .with_context(|| format!("could not write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("could not move {} into place", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample as sample_manifest;

    const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn a_system_image_over_its_budget_is_refused_with_its_sizes() {
        let info = within_budget(300 << 20, 512 << 20).unwrap();
        assert_eq!(
            (info.size, info.budget, info.slot),
            (300 << 20, 512 << 20, SYSTEM_SLOT_BYTES)
        );
        within_budget(512 << 20, 512 << 20).unwrap();
        let err = format!(
            "{:#}",
            within_budget((512 << 20) + (3 << 19), 512 << 20).unwrap_err()
        );
        assert!(
            err.contains("system.img is 538443776 bytes (513.5 MiB), over its budget of 536870912")
                && err.contains("by 1.5 MiB")
                && err.contains("SYSTEM_IMAGE_BUDGET_BYTES"),
            "{err}"
        );
    }

    #[test]
    fn the_images_folders_system_image_is_measured_against_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", measure_system_image(dir.path()).unwrap_err());
        assert!(
            err.contains("did not produce") && err.contains("system.img"),
            "{err}"
        );
        // Sparse: the size is what counts, and costs no disk.
        let image = std::fs::File::create(dir.path().join(SYSTEM_IMAGE)).unwrap();
        image.set_len(SYSTEM_IMAGE_BUDGET_BYTES).unwrap();
        let info = measure_system_image(dir.path()).unwrap();
        assert_eq!(info.size, SYSTEM_IMAGE_BUDGET_BYTES);
        image.set_len(SYSTEM_IMAGE_BUDGET_BYTES + 4096).unwrap();
        let err = format!("{:#}", measure_system_image(dir.path()).unwrap_err());
        assert!(err.contains("over its budget"), "{err}");
    }

    #[test]
    fn parses_sha256sum_output() {
        let text = format!("{A}  sdcard.img\n{A} *manifest.toml\n\n");
        let sums = parse_sums(&text).unwrap();
        assert_eq!(sums.len(), 2);
        assert_eq!(
            sums[0],
            SumEntry {
                sha256: A.into(),
                name: "sdcard.img".into()
            }
        );
        assert_eq!(sums[1].name, "manifest.toml");
        assert_eq!(util::sha256_hex(b"abc"), A);
    }

    #[test]
    fn rejects_malformed_sums() {
        let bad = [
            format!("{A} sdcard.img"),          // one space, no binary marker
            format!("{}  x", &A[..63]),         // short digest
            format!("{}  x", A.to_uppercase()), // sha256sum writes lower case
            format!("{A}  ../etc/passwd"),
            format!("{A}  /abs"),
            format!("{A}  x\n{A}  x"),
            String::new(),
        ];
        for text in bad {
            assert!(parse_sums(&text).is_err(), "accepted {text:?}");
        }
        let err = format!(
            "{:#}",
            parse_sums(&format!("{A}  a\nnonsense\n")).unwrap_err()
        );
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn rendered_sums_are_sorted_and_parse_back() {
        let entries = [
            SumEntry {
                name: "sdcard.img".into(),
                sha256: "1".repeat(64),
            },
            SumEntry {
                name: "emmc-boot0.img".into(),
                sha256: "2".repeat(64),
            },
        ];
        let text = render_sums(&entries);
        assert_eq!(
            text,
            format!(
                "{}  emmc-boot0.img\n{}  sdcard.img\n",
                "2".repeat(64),
                "1".repeat(64)
            )
        );
        assert_eq!(
            parse_sums(&text).unwrap(),
            [entries[1].clone(), entries[0].clone()]
        );
    }

    #[test]
    fn manifest_artifacts_must_be_plain_unique_and_digested() {
        let artifact = |name: &str, sha256: &str| Artifact {
            name: name.into(),
            size: 1,
            sha256: sha256.into(),
        };
        check_manifest_artifacts(&[artifact("sdcard.img", A)]).unwrap();
        assert!(check_manifest_artifacts(&[]).is_err());
        assert!(check_manifest_artifacts(&[artifact("x", "zz")]).is_err());
        assert!(check_manifest_artifacts(&[artifact("../x", A)]).is_err());
        assert!(check_manifest_artifacts(&[artifact("x", A), artifact("x", A)]).is_err());
    }

    #[test]
    fn bundle_names_carry_the_commit_and_board() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            bundle_name(&version(commit, false), "odroid-xu4"),
            "berth-0123456789ab-odroid-xu4.raucb"
        );
        assert_eq!(version(commit, true), "0123456789ab-dirty");
    }

    #[test]
    fn finished_markers_include_every_block_map() {
        let names = finished_and_derived();
        for image in IMAGES {
            assert!(names.contains(&bmap_name(image)), "{names:?}");
        }
        assert!(names.contains(&SUMS_FILE.to_string()) && names.contains(&MANIFEST_FILE.into()));
    }

    #[test]
    fn seal_writes_a_manifest_and_sums_that_verify_and_sha256sum_accept() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        let names = ["sdcard.img", "sdcard.img.bmap", "sbom.cdx.json"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(images.join(name), vec![b'x'; 1000 * (i + 1)]).unwrap();
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let sums = seal(images, sample_manifest(), &names).unwrap();
        assert_eq!(sums.len(), 4);
        let written = read_manifest(images).unwrap();
        assert_eq!(written.artifacts[2].name, "sbom.cdx.json");
        assert_eq!(written.artifacts[2].size, 3000);
        assert_eq!(
            written.artifacts[0].sha256,
            util::sha256_file(&images.join("sdcard.img")).unwrap()
        );
        let mut read = read_sums(images).unwrap();
        read.sort_by(|a, b| a.name.cmp(&b.name));
        let mut sealed = sums.clone();
        sealed.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read, sealed);
        assert!(!partial_path(&images.join(SUMS_FILE)).exists());
        let check = std::process::Command::new("sha256sum")
            .args(["--check", "--strict", SUMS_FILE])
            .current_dir(images)
            .output();
        if let Ok(out) = check {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert!(seal(images, written, &["missing.img".to_string()]).is_err());
    }

    #[test]
    fn read_manifest_refuses_what_the_manifest_type_does_not_describe() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = sample_manifest();
        manifest.artifacts = vec![Artifact {
            name: "sdcard.img".into(),
            size: 1,
            sha256: A.into(),
        }];
        let text = manifest.to_toml().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_manifest(dir.path()).unwrap(), manifest);
        // Only the artifacts, as the old verifier accepted: not a Berth manifest.
        let artifacts_only = &text[text.find("[[artifact]]").unwrap()..];
        std::fs::write(&path, artifacts_only).unwrap();
        let err = format!("{:#}", read_manifest(dir.path()).unwrap_err());
        assert!(err.contains("not a valid Berth build manifest"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", read_manifest(dir.path()).unwrap_err());
        assert!(err.contains("manifest.toml is missing"), "{err}");
    }
}
