//! The build manifest written next to the image (`manifest.toml`): what determined the output
//! (Buildroot version and commit, this repo's commit and dirty flag, defconfig digest, a digest of
//! each repository folder the build reads (fragments, board files, packages, patches), host tool
//! versions, packages with versions and licenses, SOURCE_DATE_EPOCH, toolchain) and the digest of
//! every artifact.
//!
//! Building it is pure (inputs → [`Manifest`] → TOML) so it is tested without a build; `cargo xtask
//! verify` reads back its `[[artifact]]` tables ([`Artifact`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::diff::Entry;
use crate::kconfig::{Resolved, Value};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub berth: BerthInfo,
    pub buildroot: BuildrootInfo,
    pub defconfig: DefconfigInfo,
    pub toolchain: ToolchainInfo,
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

/// What Buildroot resolved the toolchain to (from `.config` and `show-info`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainInfo {
    /// `external` (prebuilt, e.g. Bootlin) or `buildroot` (built from source).
    pub kind: String,
    /// The package providing it, e.g. `toolchain-external-bootlin`, when it is a real package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Exact GCC version for a Buildroot toolchain; the major version for an external one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_abi: Option<String>,
    /// The toolchain-wide hardening options that are on (`BR2_SSP_STRONG`, `BR2_RELRO_FULL`, ...).
    #[serde(default)]
    pub hardening: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Buildroot's package name as in `show-info` (host packages start with `host-`).
    pub name: String,
    pub version: String,
    pub licenses: String,
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
            Ok((name, folder_digest(&crate::diff::snapshot(&dir, false)?)))
        })
        .collect()
}

/// Toolchain-wide hardening symbols worth recording, in display order.
const HARDENING_SYMBOLS: &[&str] = &[
    "BR2_SSP_REGULAR",
    "BR2_SSP_STRONG",
    "BR2_SSP_ALL",
    "BR2_RELRO_PARTIAL",
    "BR2_RELRO_FULL",
    "BR2_FORTIFY_SOURCE_1",
    "BR2_FORTIFY_SOURCE_2",
    "BR2_FORTIFY_SOURCE_3",
    "BR2_PIC_PIE",
];

fn text(config: &Resolved, symbol: &str) -> Option<String> {
    match config.get(symbol)? {
        Value::Str(s) | Value::Num(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Every selected package from `make show-info`: virtual packages (no version of their own) and
/// root filesystem entries are left out. Sorted by name.
pub fn packages_from_show_info(info: &serde_json::Value) -> Result<Vec<Package>> {
    let entries = info
        .as_object()
        .context("`show-info` output is not a JSON object")?;
    let mut packages = Vec::new();
    for (name, entry) in entries {
        let kind = entry.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let is_virtual = entry
            .get("virtual")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if kind == "rootfs" || is_virtual {
            continue;
        }
        let field = |key: &str| entry.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let version = field("version")
            .with_context(|| format!("`show-info` gives package {name} no version"))?;
        let licenses = field("licenses").unwrap_or_else(|| "unknown".into());
        packages.push(Package {
            name: name.clone(),
            version,
            licenses,
        });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(packages)
}

/// How many packages `make` will print `>>>` lines for: every show-info entry except root
/// filesystems. (Measured: this set equals `make show-build-order`'s.)
pub fn buildable_package_names(info: &serde_json::Value) -> Result<Vec<String>> {
    let entries = info
        .as_object()
        .context("`show-info` output is not a JSON object")?;
    Ok(entries
        .iter()
        .filter(|(_, e)| e.get("type").and_then(|t| t.as_str()) != Some("rootfs"))
        .map(|(name, _)| name.clone())
        .collect())
}

/// The toolchain as resolved in `.config`, with its provider package from `show-info`.
pub fn toolchain_info(config: &Resolved, info: &serde_json::Value) -> Result<ToolchainInfo> {
    let kind = if config.is_enabled("BR2_TOOLCHAIN_EXTERNAL") {
        "external"
    } else if config.is_enabled("BR2_TOOLCHAIN_BUILDROOT") {
        "buildroot"
    } else {
        bail!("the resolved .config selects neither an external nor a Buildroot toolchain");
    };
    let provider = info.as_object().and_then(|entries| {
        entries.iter().find(|(name, e)| {
            name.starts_with("toolchain-")
                && !e.get("virtual").and_then(|v| v.as_bool()).unwrap_or(false)
        })
    });
    let libc = [
        ("BR2_TOOLCHAIN_USES_GLIBC", "glibc"),
        ("BR2_TOOLCHAIN_USES_MUSL", "musl"),
        ("BR2_TOOLCHAIN_USES_UCLIBC", "uclibc"),
    ]
    .iter()
    .find(|(symbol, _)| config.is_enabled(symbol))
    .map(|(_, name)| name.to_string());
    Ok(ToolchainInfo {
        kind: kind.into(),
        package: provider.map(|(name, _)| name.clone()),
        version: provider.and_then(|(_, e)| e.get("version")?.as_str().map(str::to_owned)),
        gcc: text(config, "BR2_GCC_VERSION").or_else(|| text(config, "BR2_TOOLCHAIN_GCC_AT_LEAST")),
        libc,
        kernel_headers: text(config, "BR2_TOOLCHAIN_HEADERS_AT_LEAST"),
        cpu: text(config, "BR2_GCC_TARGET_CPU"),
        fpu: text(config, "BR2_GCC_TARGET_FPU"),
        float_abi: text(config, "BR2_GCC_TARGET_FLOAT_ABI"),
        hardening: HARDENING_SYMBOLS
            .iter()
            .filter(|s| config.is_enabled(s))
            .map(|s| s.to_string())
            .collect(),
    })
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

    // `cargo xtask verify` reads only the `[[artifact]]` tables; the build's own tests read back
    // the whole manifest.
    #[cfg(test)]
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        toml::from_str(text).with_context(|| format!("{name} is not a valid Berth build manifest"))
    }

    #[cfg(test)]
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the build manifest {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// SHA256SUMS in `sha256sum` format (`<hex>  <name>`), sorted by name so it is reproducible.
pub fn sha256sums(entries: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(name, digest)| format!("{digest}  {name}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn show_info() -> serde_json::Value {
        json!({
            "linux": {"type": "target", "name": "linux", "virtual": false, "version": "6.12.91", "licenses": "GPL-2.0"},
            "host-gettext": {"type": "host", "name": "gettext", "virtual": true},
            "toolchain": {"type": "target", "name": "toolchain", "virtual": true},
            "toolchain-external-bootlin": {"type": "target", "name": "toolchain-external-bootlin", "virtual": false,
                "version": "2025.08-1", "licenses": "unknown"},
            "host-tar": {"type": "host", "name": "tar", "virtual": false, "version": "1.35", "licenses": "GPL-3.0+"},
            "skeleton-init-systemd": {"type": "target", "name": "skeleton-init-systemd", "virtual": false, "version": ""},
            "rootfs-ext2": {"type": "rootfs", "name": "rootfs-ext2", "image_name": "rootfs.ext2"}
        })
    }

    fn config() -> Resolved {
        Resolved::parse(
            "BR2_arm=y\nBR2_TOOLCHAIN_EXTERNAL=y\nBR2_TOOLCHAIN_USES_GLIBC=y\n\
             BR2_TOOLCHAIN_GCC_AT_LEAST=\"14\"\nBR2_TOOLCHAIN_HEADERS_AT_LEAST=\"5.4\"\n\
             BR2_GCC_TARGET_CPU=\"cortex-a15.cortex-a7\"\nBR2_GCC_TARGET_FPU=\"neon-vfpv4\"\n\
             BR2_GCC_TARGET_FLOAT_ABI=\"hard\"\nBR2_SSP_STRONG=y\n# BR2_SSP_ALL is not set\n\
             BR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\nBR2_PIC_PIE=y\n",
            ".config",
        )
        .unwrap()
    }

    fn manifest() -> Manifest {
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
                crate::vulns::Record::load(&crate::vulns::record_in(&crate::util::repo_root()))
                    .unwrap(),
            ),
        }
    }

    #[test]
    fn packages_skip_virtual_and_rootfs_entries_and_keep_host_prefixes() {
        let packages = packages_from_show_info(&show_info()).unwrap();
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "host-tar",
                "linux",
                "skeleton-init-systemd",
                "toolchain-external-bootlin"
            ]
        );
        assert_eq!(
            packages[1],
            Package {
                name: "linux".into(),
                version: "6.12.91".into(),
                licenses: "GPL-2.0".into()
            }
        );
        assert_eq!(
            packages[2].licenses, "unknown",
            "a package without a license field says so"
        );
    }

    #[test]
    fn a_real_package_without_version_is_an_error() {
        let info = json!({"runc": {"type": "target", "virtual": false, "licenses": "Apache-2.0"}});
        let err = packages_from_show_info(&info).unwrap_err();
        assert!(format!("{err:#}").contains("runc"), "{err:#}");
    }

    #[test]
    fn buildable_packages_are_all_but_root_filesystems() {
        let mut names = buildable_package_names(&show_info()).unwrap();
        names.sort();
        assert_eq!(names.len(), 6);
        assert!(!names.contains(&"rootfs-ext2".to_string()));
        assert!(
            names.contains(&"toolchain".to_string()),
            "virtual packages print >>> lines too"
        );
    }

    #[test]
    fn toolchain_comes_from_config_and_its_provider_package() {
        let tc = toolchain_info(&config(), &show_info()).unwrap();
        assert_eq!(tc.kind, "external");
        assert_eq!(tc.package.as_deref(), Some("toolchain-external-bootlin"));
        assert_eq!(tc.version.as_deref(), Some("2025.08-1"));
        assert_eq!(tc.gcc.as_deref(), Some("14"));
        assert_eq!(tc.libc.as_deref(), Some("glibc"));
        assert_eq!(tc.kernel_headers.as_deref(), Some("5.4"));
        assert_eq!(tc.cpu.as_deref(), Some("cortex-a15.cortex-a7"));
        assert_eq!(
            tc.hardening,
            [
                "BR2_SSP_STRONG",
                "BR2_RELRO_FULL",
                "BR2_FORTIFY_SOURCE_3",
                "BR2_PIC_PIE"
            ]
        );
    }

    #[test]
    fn buildroot_toolchain_records_exact_gcc_and_no_provider() {
        let config = Resolved::parse(
            "BR2_TOOLCHAIN_BUILDROOT=y\nBR2_TOOLCHAIN_USES_MUSL=y\nBR2_GCC_VERSION=\"14.3.0\"\nBR2_TOOLCHAIN_GCC_AT_LEAST=\"14\"\n",
            ".config",
        )
        .unwrap();
        let info = json!({"toolchain-buildroot": {"type": "target", "virtual": true}});
        let tc = toolchain_info(&config, &info).unwrap();
        assert_eq!(
            (
                tc.kind.as_str(),
                tc.package,
                tc.gcc.as_deref(),
                tc.libc.as_deref()
            ),
            ("buildroot", None, Some("14.3.0"), Some("musl"))
        );
        assert!(
            toolchain_info(&Resolved::parse("BR2_arm=y\n", ".config").unwrap(), &info).is_err()
        );
    }

    #[test]
    fn manifest_uses_the_agreed_table_names_and_round_trips() {
        let m = manifest();
        let text = m.to_toml().unwrap();
        for header in [
            "[berth]",
            "[buildroot]",
            "[defconfig]",
            "[toolchain]",
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
        let mut m = manifest();
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
        let text = manifest().to_toml().unwrap();
        let bad = text.replace("dirty = false", "dirty = false\ncolour = \"blue\"");
        assert!(format!("{:#}", Manifest::parse(&bad, "m.toml").unwrap_err()).contains("m.toml"));
        let missing = text.replace("board = \"odroid-xu4\"\n", "");
        assert!(Manifest::parse(&missing, "m.toml").is_err());
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.toml");
        std::fs::write(&path, manifest().to_toml().unwrap()).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), manifest());
        let err = Manifest::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("nope.toml"));
    }

    #[test]
    fn sha256sums_is_sorted_sha256sum_format() {
        let sums = sha256sums(&[
            ("sdcard.img".into(), "1".repeat(64)),
            ("emmc-boot0.img".into(), "2".repeat(64)),
        ]);
        assert_eq!(
            sums,
            format!(
                "{}  emmc-boot0.img\n{}  sdcard.img\n",
                "2".repeat(64),
                "1".repeat(64)
            )
        );
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
