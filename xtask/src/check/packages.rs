//! Stage (d) of `cargo xtask check`, from Buildroot's `show-info` for a configured output: the
//! package set a Docker host needs, Linux and U-Boot at the pinned versions, the container stack
//! no older than Berth's minimums. The resolved package list is printed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::buildroot::Buildroot;
use crate::project::{LINUX_VERSION, MINIMUM_VERSIONS, UBOOT_VERSION};

/// The packages (name → version) of a configured output folder.
pub struct Packages {
    pub target: BTreeMap<String, String>,
    /// The target packages and the host ones.
    pub with_host: BTreeMap<String, String>,
}

/// Ask Buildroot for the packages of the configured `output`.
pub fn of_output(sh: &Shell, tree: &Buildroot, output: &Path) -> Result<Packages> {
    let json = tree.show_info(sh, output)?;
    Ok(Packages {
        target: packages_of(&json, false)?,
        with_host: packages_of(&json, true)?,
    })
}

/// Print the target packages of the defconfig `name` and return what is wrong with the set.
pub fn judge(name: &str, packages: &Packages) -> Vec<String> {
    println!(
        "[packages] {name}: {} target packages",
        packages.target.len()
    );
    for (package, version) in &packages.target {
        println!("    {package:<32} {version}");
    }
    package_problems(&packages.target)
        .into_iter()
        .chain(too_old(&packages.with_host, MINIMUM_VERSIONS))
        .map(|problem| format!("{name}: {problem}"))
        .collect()
}

/// Packages (name → version) from `make show-info`: the target ones, or with `host` the host
/// ones too; rootfs entries and virtual packages are left out.
fn packages_of(info: &serde_json::Value, host: bool) -> Result<BTreeMap<String, String>> {
    let entries = info
        .as_object()
        .context("`make show-info` did not print a JSON object")?;
    let mut packages = BTreeMap::new();
    for (name, entry) in entries {
        let kind = entry.get("type").and_then(|t| t.as_str());
        let wanted = kind == Some("target") || (host && kind == Some("host"));
        if !wanted || entry.get("virtual").and_then(|v| v.as_bool()) == Some(true) {
            continue;
        }
        let version = entry
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        packages.insert(name.clone(), version);
    }
    Ok(packages)
}

/// What a Docker host needs from the package set, each entry any one of its alternatives.
const REQUIRED_PACKAGES: &[&[&str]] = &[
    &["docker-engine"],
    &["docker-cli"],
    &["containerd"],
    &["runc"],
    // docker-init: Buildroot provides it as tini or catatonit.
    &["tini", "catatonit"],
    &["libseccomp"],
    &["iptables"],
    &["ca-certificates"],
];

fn package_problems(packages: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems: Vec<String> = REQUIRED_PACKAGES
        .iter()
        .filter(|any_of| !any_of.iter().any(|p| packages.contains_key(*p)))
        .map(|any_of| format!("package {} is not selected", any_of.join(" or ")))
        .collect();
    for (package, pinned) in [("linux", LINUX_VERSION), ("uboot", UBOOT_VERSION)] {
        match packages.get(package) {
            None => problems.push(format!(
                "package {package} is not selected (Berth pins {pinned})"
            )),
            Some(version) if version != pinned => problems.push(format!(
                "{package} resolves to version {version}, but Berth pins {pinned}"
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `1.26.6` → [1, 26, 6]; None for a version that is not dotted numbers (`custom`, a git id).
fn numeric_version(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|part| part.parse().ok()).collect()
}

/// Each entry of `minimums` whose package (the first of its alternatives that is selected)
/// resolves older than its minimum, or to no readable version.
fn too_old(packages: &BTreeMap<String, String>, minimums: &[(&[&str], &str)]) -> Vec<String> {
    minimums
        .iter()
        .filter_map(|(any_of, minimum)| {
            let need = numeric_version(minimum).expect("minimums are dotted numbers");
            let Some((package, version)) =
                any_of.iter().find_map(|p| packages.get(*p).map(|v| (p, v)))
            else {
                return Some(format!(
                    "package {} is not selected (Berth needs {minimum} or newer)",
                    any_of.join(" or ")
                ));
            };
            match numeric_version(version) {
                Some(found) if found >= need => None,
                Some(_) => Some(format!(
                    "{package} resolves to {version}, older than the {minimum} Berth needs \
                     (is patches/buildroot applied?)"
                )),
                None => Some(format!(
                    "{package} resolves to '{version}', which cannot be compared with the \
                     {minimum} Berth needs"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const COMPLETE: &[(&str, &str)] = &[
        ("docker-engine", "28.3.3"),
        ("docker-cli", "28.3.3"),
        ("containerd", "2.0.7"),
        ("runc", "1.3.5"),
        ("tini", "0.19.0"),
        ("libseccomp", "2.6.0"),
        ("iptables", "1.8.11"),
        ("ca-certificates", "20250419"),
        ("linux", LINUX_VERSION),
        ("uboot", UBOOT_VERSION),
    ];

    #[test]
    fn a_complete_package_set_passes() {
        assert_eq!(package_problems(&packages(COMPLETE)), Vec::<String>::new());
        let mut with_catatonit = packages(COMPLETE);
        with_catatonit.remove("tini");
        with_catatonit.insert("catatonit".into(), "0.2.1".into());
        assert_eq!(package_problems(&with_catatonit), Vec::<String>::new());
    }

    #[test]
    fn names_missing_packages_and_wrong_versions() {
        let mut set = packages(COMPLETE);
        set.remove("runc");
        set.remove("tini");
        set.insert("linux".into(), "6.19.14".into());
        set.remove("uboot");
        assert_eq!(
            package_problems(&set),
            vec![
                "package runc is not selected".to_string(),
                "package tini or catatonit is not selected".to_string(),
                format!("linux resolves to version 6.19.14, but Berth pins {LINUX_VERSION}"),
                format!("package uboot is not selected (Berth pins {UBOOT_VERSION})"),
            ]
        );
    }

    #[test]
    fn reads_target_and_host_packages_from_show_info() {
        let info = serde_json::json!({
            "runc": {"type": "target", "virtual": false, "version": "1.3.5"},
            "host-go": {"type": "host", "virtual": false, "version": "1.25"},
            "rootfs-ext2": {"type": "rootfs", "version": ""},
            "toolchain": {"type": "target", "virtual": true, "version": ""},
        });
        assert_eq!(
            packages_of(&info, false).unwrap(),
            packages(&[("runc", "1.3.5")])
        );
        assert_eq!(
            packages_of(&info, true).unwrap(),
            packages(&[("host-go", "1.25"), ("runc", "1.3.5")])
        );
        assert!(packages_of(&serde_json::json!([]), false).is_err());
    }

    #[test]
    fn an_older_or_unreadable_version_than_the_minimum_is_named() {
        let go: &[&str] = &["host-go-src", "host-go-bin"];
        let minimums = [
            (&["runc"][..], "1.3.6"),
            (go, "1.26.6"),
            (&["containerd"][..], "2.0.11"),
        ];
        let found = too_old(
            &packages(&[
                ("runc", "1.3.5"),
                ("host-go-bin", "1.26.10"),
                ("containerd", "custom"),
            ]),
            &minimums,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("runc resolves to 1.3.5, older than the 1.3.6"));
        assert!(found[1].contains("'custom'"));
        assert!(too_old(&packages(&[("runc", "1.3.6")]), &[(&["runc"][..], "1.3.6")]).is_empty());
        assert_eq!(
            too_old(&packages(&[]), &[(go, "1.26.6")]),
            ["package host-go-src or host-go-bin is not selected (Berth needs 1.26.6 or newer)"]
        );
    }
}
