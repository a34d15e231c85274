//! Files Buildroot copies prebuilt into the image, known by the package that installed them, and
//! the `[[elf_prebuilt]]` policy that judges them.
//!
//! An external toolchain's libraries (`libc.so.6`, `libstdc++.so.6`, ...) are copied from its
//! sysroot by pattern (`TOOLCHAIN_EXTERNAL_LIBS` in pkg-toolchain-external.mk), so which files
//! arrive depends on the toolchain: Debian's glibc 2.36 has `libnsl.so.1`, glibc 2.39-era
//! toolchains do not. Their RELRO, canaries and FORTIFY are the vendor's compile and link flags,
//! never Buildroot's toolchain wrapper's. Naming them file by file ties the exceptions to one
//! toolchain; naming the package they come from holds on every one.
//!
//! Buildroot records what each package's install step added or changed in `target/`
//! (`pkg_size_after` in package/pkg-generic.mk) and concatenates those lists into
//! `<output>/build/packages-file-list.txt` in target-finalize: one `package,./path` line a file or
//! link, the path as `find` names it in `target/` (so a merged /usr lists `./usr/lib/libc.so.6`).
//! The toolchain's files are owned by the package providing the virtual `toolchain-external`
//! (`toolchain-external-bootlin`, `toolchain-external-custom`, ...).
//!
//! A file is prebuilt only when every package listing it matches an owner of the policy: a file a
//! later package rewrote, and one no package lists (the overlay's, the post-build script's), is
//! the project's, and nothing is waived for it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure, Context, Result};

use super::analyze::ElfKind;
use super::rules::{ElfRule, Property};
use crate::audit::exceptions::{ElfPrebuilt, Waiver};

/// Where Buildroot writes the owner of every target file, in an output folder.
pub const FILE_LIST: &str = "build/packages-file-list.txt";

/// The packages that installed or changed each file of `target/`, by its path in the image.
#[derive(Debug, Default)]
pub struct FileOwners(BTreeMap<String, BTreeSet<String>>);

impl FileOwners {
    /// Read `packages-file-list.txt` (`source` names it in errors).
    pub fn parse(text: &str, source: &str) -> Result<FileOwners> {
        let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let parsed = line
                .split_once(',')
                .and_then(|(package, path)| Some((package, path.strip_prefix("./")?)))
                .filter(|(package, path)| !package.is_empty() && !path.is_empty());
            let Some((package, path)) = parsed else {
                bail!(
                    "{source} line {}: '{line}' is not 'package,./path' as Buildroot writes it",
                    number + 1
                );
            };
            owners
                .entry(format!("/{path}"))
                .or_default()
                .insert(package.to_string());
        }
        Ok(FileOwners(owners))
    }
}

/// What the policies waive on the audited files: (file, property) → the reason, as a finding
/// shows it; and, per policy, how many audited files it judged.
#[derive(Debug, Default)]
pub struct Prebuilt {
    pub waived: BTreeMap<(String, Property), String>,
    pub matched: Vec<(String, usize)>,
}

/// Check every policy against the rule table; with the build's file owners (`None` when the
/// output folder has no file list: every file is then the project's), apply them to the audited
/// files (by path in the image, with their kind).
pub fn match_prebuilt(
    policies: &[ElfPrebuilt],
    rules: &[ElfRule],
    owners: Option<&FileOwners>,
    audited: &BTreeMap<String, ElfKind>,
) -> Result<Prebuilt> {
    let waives: Vec<BTreeSet<Property>> = policies
        .iter()
        .map(|p| {
            decided_properties(p, rules).with_context(|| format!("[[elf_prebuilt]] {}", p.label()))
        })
        .collect::<Result<_>>()?;
    let mut prebuilt = Prebuilt::default();
    let Some(owners) = owners else {
        return Ok(prebuilt);
    };
    let mut judged_by: BTreeMap<&str, String> = BTreeMap::new();
    for (policy, waives) in policies.iter().zip(&waives) {
        let mut count = 0;
        for (path, packages) in audited.keys().filter_map(|p| Some((p, owners.0.get(p)?))) {
            if !packages.iter().all(|package| owned_by(policy, package)) {
                continue;
            }
            if let Some(other) = judged_by.insert(path, policy.label()) {
                bail!(
                    "two [[elf_prebuilt]] entries judge {path}: {other} and {}; keep one",
                    policy.label()
                );
            }
            count += 1;
            let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
            for property in waives {
                let reason = format!("prebuilt by {}: {}", packages.join(", "), policy.reason);
                prebuilt.waived.insert((path.clone(), *property), reason);
            }
        }
        prebuilt.matched.push((policy.label(), count));
    }
    Ok(prebuilt)
}

/// The properties a policy waives, once every property a rule checks is either waived or kept.
fn decided_properties(policy: &ElfPrebuilt, rules: &[ElfRule]) -> Result<BTreeSet<Property>> {
    let checked: BTreeSet<Property> = rules.iter().map(|r| r.property).collect();
    let names = |words: &[String]| -> Result<BTreeSet<Property>> {
        words
            .iter()
            .map(|word| {
                checked
                    .iter()
                    .copied()
                    .find(|p| p.name() == word)
                    .with_context(|| format!("'{word}' is the property of no ELF rule"))
            })
            .collect()
    };
    let (waives, keeps) = (names(&policy.waives)?, names(&policy.keeps)?);
    let both: Vec<&str> = waives.intersection(&keeps).map(|p| p.name()).collect();
    ensure!(both.is_empty(), "{} both waived and kept", both.join(", "));
    let undecided: Vec<&str> = checked
        .difference(&waives.union(&keeps).copied().collect())
        .map(|p| p.name())
        .collect();
    ensure!(
        undecided.is_empty(),
        "{} neither waived nor kept: decide what prebuilt files owe each rule",
        undecided.join(", ")
    );
    ensure!(!waives.is_empty(), "waives nothing");
    Ok(waives)
}

fn owned_by(policy: &ElfPrebuilt, package: &str) -> bool {
    policy
        .owners
        .iter()
        .any(|owner| match owner.strip_suffix('*') {
            Some(start) => package.starts_with(start),
            None => package == owner,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::exceptions::Exceptions;

    fn rules() -> Vec<ElfRule> {
        let rule = |property: &str| {
            format!("[[rule]]\nproperty = \"{property}\"\napplies_to = [\"executable\", \"shared-library\"]\nseverity = \"required\"\nsource = \"elf-hardening\"\ntitle = \"{property}\"\n")
        };
        super::super::parse_rules(&["relro", "nx", "textrel"].map(rule).concat())
            .unwrap()
            .rule
    }

    fn policy(waives: &str, keeps: &str) -> Vec<ElfPrebuilt> {
        Exceptions::parse(&format!(
            "[[elf_prebuilt]]\nowners = [\"toolchain-external\", \"toolchain-external-*\"]\nwaives = {waives}\nkeeps = {keeps}\nreason = \"vendor flags\"\n"
        ))
        .unwrap()
        .elf_prebuilt
    }

    const FILE_LIST_TEXT: &str = "toolchain-external-bootlin,./usr/lib/libc.so.6\n\
        toolchain-external-bootlin,./usr/lib/libstdc++.so.6\n\
        toolchain-external-custom,./lib/libgomp.so.1\n\
        tini,./usr/bin/tini\n\
        toolchain-external-bootlin,./usr/lib/libm.so.6\n\
        patched-libm,./usr/lib/libm.so.6\n\
        toolchain-external-bootlin,./usr/lib/ld-linux-armhf.so.3\n";

    fn audited() -> BTreeMap<String, ElfKind> {
        [
            "/usr/lib/libc.so.6",
            "/lib/libgomp.so.1",
            "/usr/bin/tini",
            "/usr/lib/libm.so.6",
            "/usr/bin/unlisted",
        ]
        .into_iter()
        .map(|p| (p.to_string(), ElfKind::SharedLibrary))
        .collect()
    }

    /// The one-entry policy (`waives`, `keeps`) applied to [`audited`] with `owners`.
    fn judge(waives: &str, keeps: &str, owners: Option<&FileOwners>) -> Result<Prebuilt> {
        match_prebuilt(&policy(waives, keeps), &rules(), owners, &audited())
    }

    #[test]
    fn toolchain_files_are_known_by_their_owning_package() {
        let owners = FileOwners::parse(FILE_LIST_TEXT, "list").unwrap();
        let p = judge(r#"["relro"]"#, r#"["nx", "textrel"]"#, Some(&owners)).unwrap();
        let waived: Vec<&str> = p.waived.keys().map(|(path, _)| path.as_str()).collect();
        // Not tini (another package), not libm (a later package changed it), not an unlisted
        // file, and not a listed file the audit did not judge (libstdc++, ld-linux here).
        assert_eq!(waived, ["/lib/libgomp.so.1", "/usr/lib/libc.so.6"]);
        assert!(p
            .waived
            .keys()
            .all(|(_, property)| *property == Property::Relro));
        let reason = &p.waived[&("/usr/lib/libc.so.6".to_string(), Property::Relro)];
        assert_eq!(
            reason,
            "prebuilt by toolchain-external-bootlin: vendor flags"
        );
        assert_eq!(p.matched[0].1, 2);
    }

    #[test]
    fn without_the_file_list_nothing_is_prebuilt_but_the_policy_is_still_checked() {
        let p = judge(r#"["relro"]"#, r#"["nx", "textrel"]"#, None).unwrap();
        assert!(p.waived.is_empty());
        let err = judge(r#"["relr"]"#, r#"["nx", "textrel"]"#, None).unwrap_err();
        assert!(format!("{err:#}").contains("'relr'"), "{err:#}");
    }

    #[test]
    fn a_policy_decides_every_rule_once() {
        for (waives, keeps, says) in [
            (
                r#"["relro"]"#,
                r#"["nx"]"#,
                "textrel neither waived nor kept",
            ),
            (
                r#"["relro", "nx"]"#,
                r#"["nx", "textrel"]"#,
                "nx both waived and kept",
            ),
            ("[]", r#"["relro", "nx", "textrel"]"#, "waives nothing"),
            // A property of the analysis that no rule of this table checks.
            (
                r#"["relro", "canary"]"#,
                r#"["nx", "textrel"]"#,
                "'canary' is the property of no ELF rule",
            ),
        ] {
            let err = format!("{:#}", judge(waives, keeps, None).unwrap_err());
            assert!(
                err.contains(says) && err.contains("toolchain-external-*"),
                "{err}"
            );
        }
    }

    #[test]
    fn two_policies_for_one_file_are_refused() {
        let mut policies = policy(r#"["relro"]"#, r#"["nx", "textrel"]"#);
        let mut custom = policies[0].clone();
        custom.owners = vec!["toolchain-external-custom".into()];
        policies.push(custom);
        let owners = FileOwners::parse(FILE_LIST_TEXT, "list").unwrap();
        let err = match_prebuilt(&policies, &rules(), Some(&owners), &audited()).unwrap_err();
        assert!(
            err.to_string()
                .contains("two [[elf_prebuilt]] entries judge /lib/libgomp.so.1"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_file_list_is_an_error_naming_the_line() {
        for bad in [
            "toolchain-external-bootlin ./lib/libc.so.6",
            "tini,/usr/bin/tini",
            ",./x",
            "tini,./",
        ] {
            let err = FileOwners::parse(
                &format!("tini,./usr/bin/tini\n{bad}\n"),
                "packages-file-list.txt",
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("packages-file-list.txt line 2:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_shipped_policy_still_requires_what_no_toolchain_may_ship() {
        let repo = crate::project::Repo::checkout();
        let shipped = Exceptions::load(&repo.path(crate::audit::EXCEPTIONS)).unwrap();
        let table = std::fs::read_to_string(repo.path(crate::audit::ELF_RULES)).unwrap();
        let rules = super::super::parse_rules(&table).unwrap().rule;
        let [policy] = shipped.elf_prebuilt.as_slice() else {
            panic!(
                "one [[elf_prebuilt]] entry expected: {:?}",
                shipped.elf_prebuilt
            );
        };
        let waives = decided_properties(policy, &rules).unwrap();
        for kept in [
            Property::Nx,
            Property::Textrel,
            Property::Rpath,
            Property::Runpath,
            Property::Pie,
        ] {
            assert!(
                !waives.contains(&kept),
                "{} waived for prebuilt files",
                kept.name()
            );
        }
        for package in [
            "toolchain-external",
            "toolchain-external-bootlin",
            "toolchain-external-custom",
        ] {
            assert!(owned_by(policy, package), "{package}");
        }
        for package in [
            "glibc",
            "toolchain",
            "tini",
            "host-toolchain-external-bootlin",
        ] {
            assert!(!owned_by(policy, package), "{package}");
        }
    }
}
