//! The build manifest written next to the image (`manifest.toml`): what determined the output
//! (Buildroot version and commit, this repo's commit and dirty flag, defconfig digest, a digest of
//! each repository folder the build reads (fragments, board files, packages, patches), host tool
//! versions, packages with versions and licenses, SOURCE_DATE_EPOCH, toolchain) and the digest of
//! every artifact.
//!
//! Building it is pure (inputs → [`Manifest`] → TOML) so it is tested without a build; `cargo xtask
//! verify` reads it back whole with [`Manifest::load`]. Its file name and the sealing of the
//! folder live in [`crate::release`].

mod show_info;

pub use show_info::{
    buildable_package_names, packages_from_show_info, toolchain_info, Package, ToolchainInfo,
};

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::tree::{self, Entry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub berth: BerthInfo,
    pub buildroot: BuildrootInfo,
    pub defconfig: DefconfigInfo,
    pub toolchain: ToolchainInfo,
    pub system_image: SystemImageInfo,
    /// Digest of each repository folder the build reads ([`INPUT_FOLDERS`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// First line of `--version` of the host tools whose work reaches the image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host: BTreeMap<String, String>,
    #[serde(rename = "package", default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    #[serde(rename = "artifact", default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Declared apps preloaded into the root filesystem (`cargo xtask image --apps`).
    #[serde(rename = "app", default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<crate::apps::AppRecord>,
    /// The vulnerability record (`configs/vulnerabilities.toml`) of the build's checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<crate::vulns::Record>,
}

/// This repository's state when the image was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BerthInfo {
    pub commit: String,
    /// True when tracked files differed from `commit`: the image is then not reproducible from it.
    pub dirty: bool,
    pub board: String,
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildrootInfo {
    pub version: String,
    /// The commit whose files the build used (a checkout's HEAD, or an export's proven tree).
    pub commit: String,
    /// Digest of Berth's patch series (`patches/buildroot`) applied on top; absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefconfigInfo {
    /// Relative to the repository root, e.g. `configs/berth_odroid_xu4_defconfig`.
    pub path: String,
    pub sha256: String,
}

/// How much of its slot the system image (`system.img`: root filesystem and hash tree) takes,
/// against the budget `cargo xtask image` held it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemImageInfo {
    /// Bytes of `system.img`.
    pub size: u64,
    /// The most it may weigh (`SYSTEM_IMAGE_BUDGET_BYTES`).
    pub budget: u64,
    /// The size of each system slot on the card (`SYSTEM_SLOT_BYTES`).
    pub slot: u64,
}

/// A file in `<output>/images/` listed in SHA256SUMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Path relative to `<output>/images/`.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The repository folders a build reads besides the defconfig: kernel and U-Boot fragments and
/// hardening rules (configs), genimage layout, scripts and overlay (board), packages
/// (br2-external) and patches.
pub const INPUT_FOLDERS: &[&str] = &["board", "br2-external", "configs", "patches"];

/// One digest for a folder's files: their paths, contents and symlink targets (not owners or
/// modes, which differ between checkouts of the same commit).
pub fn folder_digest(entries: &BTreeMap<String, Entry>) -> String {
    let listing: String = entries
        .iter()
        .map(|(path, entry)| match entry {
            Entry::Dir { .. } => format!("dir {path}\n"),
            Entry::File { sha256, .. } => format!("file {sha256} {path}\n"),
            Entry::Symlink { target } => format!("link {target} {path}\n"),
            Entry::Other { kind } => format!("other {kind} {path}\n"),
        })
        .collect();
    crate::util::sha256_hex(listing.as_bytes())
}

/// [`folder_digest`] of every [`INPUT_FOLDERS`] entry present in `repo`.
pub fn input_digests(repo: &Path) -> Result<BTreeMap<String, String>> {
    INPUT_FOLDERS
        .iter()
        .map(|folder| repo.join(folder))
        .filter(|dir| dir.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Ok((name, folder_digest(&tree::snapshot(&dir, false)?)))
        })
        .collect()
}

impl Manifest {
    pub fn to_toml(&self) -> Result<String> {
        let body =
            toml::to_string_pretty(self).context("could not render the build manifest as TOML")?;
        let mut text = String::from(
            "# Berth build manifest, written by `cargo xtask image`; every artifact is also in SHA256SUMS.\n",
        );
        // One blank line before each table header, for people reading it (toml's pretty output
        // already separates most tables, so only add one where it is missing).
        for line in body.lines() {
            if line.starts_with('[') && !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
        }
        Ok(text)
    }

    /// A manifest from its text; `name` says where it came from in the error.
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        toml::from_str(text).with_context(|| format!("{name} is not a valid Berth build manifest"))
    }

    /// The manifest at `path`, read back whole (`cargo xtask verify` does, through
    /// [`crate::release::read_manifest`]).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the build manifest {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use show_info::tests::{config, show_info};

    /// A filled-in manifest for the tests of the modules that write and read it.
    pub(crate) fn sample() -> Manifest {
        Manifest {
            berth: BerthInfo {
                commit: "a".repeat(40),
                dirty: false,
                board: "odroid-xu4".into(),
                source_date_epoch: 1_700_000_000,
            },
            buildroot: BuildrootInfo {
                version: "2026.02.3".into(),
                commit: "679b9ead7620bbf193620d1ebf56f53c1764d37a".into(),
                series_sha256: None,
            },
            defconfig: DefconfigInfo {
                path: "configs/berth_odroid_xu4_defconfig".into(),
                sha256: "b".repeat(64),
            },
            toolchain: toolchain_info(&config(), &show_info()).unwrap(),
            system_image: SystemImageInfo {
                size: 300 << 20,
                budget: crate::project::SYSTEM_IMAGE_BUDGET_BYTES,
                slot: crate::project::SYSTEM_SLOT_BYTES,
            },
            inputs: BTreeMap::from([("configs".into(), "c".repeat(64))]),
            host: BTreeMap::from([("make".into(), "GNU Make 4.3".into())]),
            packages: packages_from_show_info(&show_info()).unwrap(),
            artifacts: vec![Artifact {
                name: "sdcard.img".into(),
                size: 1 << 30,
                sha256: "c".repeat(64),
            }],
            apps: vec![crate::apps::AppRecord {
                name: "web".into(),
                image: format!("docker.io/library/busybox@sha256:{}", "d".repeat(64)),
                manifest_digest: format!("sha256:{}", "e".repeat(64)),
                image_id: format!("sha256:{}", "f".repeat(64)),
                archive: "/usr/share/berth/apps/web.tar".into(),
                archive_sha256: "1".repeat(64),
                archive_size: 4096,
            }],
            vulnerabilities: Some(
                crate::vulns::Record::load(&crate::vulns::record_in(
                    crate::project::Repo::checkout().root(),
                ))
                .unwrap(),
            ),
        }
    }

    #[test]
    fn manifest_uses_the_agreed_table_names_and_round_trips() {
        let m = sample();
        let text = m.to_toml().unwrap();
        for header in [
            "[berth]",
            "[buildroot]",
            "[defconfig]",
            "[toolchain]",
            "[system_image]",
            "[[package]]",
            "[[artifact]]",
            "[[app]]",
            "[[vulnerabilities.package]]",
            "[[vulnerabilities.cve]]",
        ] {
            assert!(
                text.contains(&format!("\n{header}\n")),
                "{header} missing in:\n{text}"
            );
        }
        assert!(text.contains("source_date_epoch = 1700000000"), "{text}");
        assert!(
            text.contains("commit = \"679b9ead7620bbf193620d1ebf56f53c1764d37a\""),
            "{text}"
        );
        assert_eq!(Manifest::parse(&text, "manifest.toml").unwrap(), m);
    }

    #[test]
    fn empty_lists_are_left_out_and_read_back_empty() {
        let mut m = sample();
        m.packages.clear();
        m.artifacts.clear();
        let text = m.to_toml().unwrap();
        assert!(
            !text.contains("[[package]]") && !text.contains("[[artifact]]"),
            "{text}"
        );
        assert!(!text.contains("= []"), "{text}");
        assert!(
            text.contains("\n\n[buildroot]\n"),
            "tables are separated by a blank line:\n{text}"
        );
        assert!(!text.contains("\n\n\n"), "by one blank line:\n{text}");
        assert_eq!(Manifest::parse(&text, "m").unwrap(), m);
    }

    #[test]
    fn load_rejects_unknown_or_missing_fields() {
        let text = sample().to_toml().unwrap();
        let bad = text.replace("dirty = false", "dirty = false\ncolour = \"blue\"");
        assert!(format!("{:#}", Manifest::parse(&bad, "m.toml").unwrap_err()).contains("m.toml"));
        let missing = text.replace("board = \"odroid-xu4\"\n", "");
        assert!(Manifest::parse(&missing, "m.toml").is_err());
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, sample().to_toml().unwrap()).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), sample());
        let err = Manifest::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("nope.toml"));
    }

    #[test]
    fn folder_digest_follows_names_and_contents_not_modes() {
        let file = |sha: &str, mode| Entry::File {
            size: 1,
            sha256: sha.into(),
            mode,
            owner: (0, 0),
        };
        let tree = |entries: Vec<(&str, Entry)>| -> BTreeMap<String, Entry> {
            entries
                .into_iter()
                .map(|(p, e)| (p.to_string(), e))
                .collect()
        };
        let base = folder_digest(&tree(vec![("/a", file("11", 0o644))]));
        assert_eq!(base, folder_digest(&tree(vec![("/a", file("11", 0o664))])));
        assert_ne!(base, folder_digest(&tree(vec![("/a", file("12", 0o644))])));
        assert_ne!(base, folder_digest(&tree(vec![("/b", file("11", 0o644))])));
    }
}
