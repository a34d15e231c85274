//! What `make show-info` and the resolved `.config` say about the build: its packages and
//! toolchain, for the manifest and the progress count.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::kconfig::{Resolved, Value};

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

/// One package of the build, as `show-info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Buildroot's package name as in `show-info` (host packages start with `host-`).
    pub name: String,
    pub version: String,
    pub licenses: String,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn show_info() -> serde_json::Value {
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

    pub(crate) fn config() -> Resolved {
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
}
