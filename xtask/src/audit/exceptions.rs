//! Every deliberate departure from a hardening rule, with its reason, in one file
//! (`configs/hardening/exceptions.toml`): `[[kernel]]`, `[[elf]]`, `[[elf_prebuilt]]`, `[[cis]]`
//! and `[[root]]` entries.
//!
//! One type reads every section the same way. Loading refuses what can never be right
//! whatever is audited: an unknown section or field, an empty reason, two exceptions for the same
//! thing. Each audit then matches its section against what it really judges (a kernel rule, a CIS
//! item, an ELF rule and a file of the image) with [`reject_unmatched`], so an exception that
//! matches nothing is an error naming it: a typo must never silently waive nothing.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

/// The exceptions file, all sections.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    #[serde(default)]
    pub kernel: Vec<KernelException>,
    #[serde(default)]
    pub elf: Vec<ElfException>,
    #[serde(default)]
    pub elf_prebuilt: Vec<ElfPrebuilt>,
    #[serde(default)]
    pub cis: Vec<CisException>,
    #[serde(default)]
    pub root: Vec<RootException>,
}

/// One `[[kernel]]` entry: a rule of `kernel-rules.toml` Berth departs from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelException {
    /// `CONFIG_X`, `cmdline:param` or `sysctl:key`, as the findings name their subject.
    pub subject: String,
    /// Only the rule from this source, when several sources judge the subject (USER_NS is
    /// wanted by Docker and unwanted by KSPP).
    #[serde(default)]
    pub source: Option<String>,
    pub reason: String,
}

/// One `[[elf]]` entry: one file of the root filesystem and one property of `elf-rules.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfException {
    /// Absolute path in the root filesystem, one file, no wildcards.
    pub path: String,
    /// The `property` of an ELF rule (`pie`, `relro`, ...), checked against the rule table.
    pub property: String,
    pub reason: String,
}

/// One `[[elf_prebuilt]]` entry: how the files Buildroot copies prebuilt from a package (the
/// external toolchain's libraries) are judged. Which package installed a file is read from the
/// build's `packages-file-list.txt` ([`crate::audit::elf::prebuilt`]), so the entry holds on every
/// toolchain whatever libraries it ships.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfPrebuilt {
    /// Buildroot package names; a trailing `*` stands for any rest (`toolchain-external-*`).
    pub owners: Vec<String>,
    /// Properties (of `elf-rules.toml`'s rules) whose failure the reason waives for those files.
    pub waives: Vec<String>,
    /// Properties judged on those files as on any other: with `waives`, every property a rule
    /// checks, so a new rule cannot reach prebuilt files undecided.
    pub keeps: Vec<String>,
    pub reason: String,
}

/// One `[[cis]]` entry: a CIS Docker item of `cis-docker.toml` Berth does not satisfy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CisException {
    pub item: String,
    pub reason: String,
}

/// One `[[root]]` entry: a folder outside the declared state that a unit is set to write
/// (`configs/hardening/readonly-root.toml`, `[[directive]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootException {
    pub unit: String,
    /// The folder as the audit names it (`/etc`, `/var/lib/x`).
    pub path: String,
    pub reason: String,
}

/// What every exception has: the section it sits in, what it waives and why.
pub trait Waiver {
    const SECTION: &'static str;
    /// What the exception waives, as messages name it; two exceptions with one label are one too many.
    fn label(&self) -> String;
    fn reason(&self) -> &str;
}

impl Waiver for KernelException {
    const SECTION: &'static str = "kernel";
    fn label(&self) -> String {
        match &self.source {
            Some(source) => format!("{} ({source})", self.subject),
            None => self.subject.clone(),
        }
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl Waiver for ElfException {
    const SECTION: &'static str = "elf";
    fn label(&self) -> String {
        format!("{} ({})", self.path, self.property)
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl Waiver for ElfPrebuilt {
    const SECTION: &'static str = "elf_prebuilt";
    fn label(&self) -> String {
        format!("files of {}", self.owners.join(", "))
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl Waiver for CisException {
    const SECTION: &'static str = "cis";
    fn label(&self) -> String {
        format!("item {}", self.item)
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl Waiver for RootException {
    const SECTION: &'static str = "root";
    fn label(&self) -> String {
        format!("{} writing {}", self.unit, self.path)
    }
    fn reason(&self) -> &str {
        &self.reason
    }
}

impl Exceptions {
    /// Read and check the exceptions file of a checkout.
    pub fn load(path: &Path) -> Result<Exceptions> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the exceptions file {}", path.display()))?;
        Exceptions::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parse, then refuse an empty reason, a duplicate, an `[[elf]]` path that is not one file and
    /// an `[[elf_prebuilt]]` owner that is no package name.
    pub fn parse(text: &str) -> Result<Exceptions> {
        let exceptions: Exceptions =
            toml::from_str(text).context("the exceptions file has an unexpected shape")?;
        check_section(&exceptions.kernel)?;
        check_section(&exceptions.elf)?;
        check_section(&exceptions.elf_prebuilt)?;
        check_section(&exceptions.cis)?;
        check_section(&exceptions.root)?;
        // Each names exactly one file, so every departure is seen and reasoned file by file (a
        // wildcard would also waive files nobody looked at).
        for e in &exceptions.elf {
            ensure!(
                e.path.starts_with('/') && !e.path.contains(['*', '?', '[']),
                "the [[elf]] exception for '{}' must name one file by its absolute path, without wildcards",
                e.path
            );
        }
        // An owner is a package name, or the start of one and `*`: nothing wider can be meant.
        for p in &exceptions.elf_prebuilt {
            ensure!(
                !p.owners.is_empty(),
                "the [[elf_prebuilt]] entry names no owning package"
            );
            for owner in &p.owners {
                let name = owner.strip_suffix('*').unwrap_or(owner);
                ensure!(
                    !name.is_empty() && !name.contains(['*', '?', '[', ',', '/']),
                    "the [[elf_prebuilt]] owner '{owner}' must be a Buildroot package name, or the \
                     start of one followed by '*'"
                );
            }
        }
        Ok(exceptions)
    }
}

fn check_section<T: Waiver>(entries: &[T]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for e in entries {
        let label = e.label();
        ensure!(
            !e.reason().trim().is_empty(),
            "the [[{}]] exception for {label} gives no reason",
            T::SECTION
        );
        ensure!(
            seen.insert(label.clone()),
            "two [[{}]] exceptions for {label}",
            T::SECTION
        );
    }
    Ok(())
}

/// An error naming every exception of a section that `matches` rejects (`against` says what it
/// should have matched), so all strays are fixed in one pass.
pub fn reject_unmatched<T: Waiver>(
    entries: &[T],
    matches: impl Fn(&T) -> bool,
    against: &str,
) -> Result<()> {
    let strays: Vec<String> = entries
        .iter()
        .filter(|e| !matches(e))
        .map(Waiver::label)
        .collect();
    ensure!(
        strays.is_empty(),
        "{} [[{}]] exception(s) match no {against}, so they would waive nothing (a typo, or \
         stale): {}",
        strays.len(),
        T::SECTION,
        strays.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_loads() {
        let repo = crate::project::Repo::checkout();
        let e = Exceptions::load(&repo.path(super::super::EXCEPTIONS)).unwrap();
        assert!(!e.kernel.is_empty() && !e.elf.is_empty() && !e.cis.is_empty());
    }

    #[test]
    fn a_mistyped_section_or_field_is_an_error() {
        // Before: an unknown section was ignored, so its exceptions silently waived nothing.
        let err =
            Exceptions::parse("[[elfs]]\npath = \"/a\"\nproperty = \"pie\"\nreason = \"x\"\n")
                .unwrap_err();
        assert!(format!("{err:#}").contains("elfs"), "{err:#}");
        let err = Exceptions::parse("[[cis]]\nitem = \"2.1\"\nreson = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("reson"), "{err:#}");
    }

    #[test]
    fn empty_reasons_and_duplicates_are_refused_in_every_section() {
        let cases = [
            "[[cis]]\nitem = \"2.1\"\nreason = \" \"\n",
            "[[cis]]\nitem = \"2.1\"\nreason = \"a\"\n[[cis]]\nitem = \"2.1\"\nreason = \"b\"\n",
            "[[kernel]]\nsubject = \"CONFIG_A\"\nreason = \"\"\n",
            "[[kernel]]\nsubject = \"CONFIG_A\"\nreason = \"a\"\n[[kernel]]\nsubject = \"CONFIG_A\"\nreason = \"b\"\n",
            "[[elf]]\npath = \"/a\"\nproperty = \"pie\"\nreason = \"\"\n",
            "[[elf]]\npath = \"/a\"\nproperty = \"pie\"\nreason = \"a\"\n[[elf]]\npath = \"/a\"\nproperty = \"pie\"\nreason = \"b\"\n",
        ];
        for text in cases {
            let err = Exceptions::parse(text).unwrap_err().to_string();
            assert!(
                err.contains("gives no reason") || err.contains("two [["),
                "{text}: {err}"
            );
        }
        // The same subject from two sources is two exceptions, not a duplicate.
        assert!(Exceptions::parse(
            "[[kernel]]\nsubject = \"CONFIG_A\"\nsource = \"kspp\"\nreason = \"a\"\n[[kernel]]\nsubject = \"CONFIG_A\"\nsource = \"board\"\nreason = \"b\"\n"
        )
        .is_ok());
    }

    #[test]
    fn elf_exceptions_name_one_file() {
        let one = |path: &str| {
            Exceptions::parse(&format!(
                "[[elf]]\npath = \"{path}\"\nproperty = \"relro\"\nreason = \"toolchain\"\n"
            ))
        };
        assert!(one("/lib/libc.so.6").is_ok());
        for bad in ["/usr/lib/*.so*", "libc.so.6", "/lib/libc.so.?"] {
            let err = one(bad).unwrap_err().to_string();
            assert!(err.contains("one file"), "{bad}: {err}");
        }
    }

    #[test]
    fn prebuilt_owners_are_package_names_or_their_start() {
        let owners = |owners: &str| {
            Exceptions::parse(&format!(
                "[[elf_prebuilt]]\nowners = {owners}\nwaives = [\"relro\"]\nkeeps = []\nreason = \"vendor\"\n"
            ))
        };
        assert!(owners(r#"["toolchain-external", "toolchain-external-*"]"#).is_ok());
        for bad in [r#"["*"]"#, r#"["toolchain-*-bootlin"]"#, r#"["a,b"]"#, "[]"] {
            let err = owners(bad).unwrap_err().to_string();
            assert!(
                err.contains("owning package") || err.contains("package name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_stray_is_named_at_once() {
        let e = Exceptions::parse(
            "[[cis]]\nitem = \"2.1\"\nreason = \"a\"\n[[cis]]\nitem = \"9.8\"\nreason = \"b\"\n[[cis]]\nitem = \"9.9\"\nreason = \"c\"\n",
        )
        .unwrap();
        let err = reject_unmatched(&e.cis, |c| c.item == "2.1", "CIS item")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("item 9.8, item 9.9") && err.starts_with("2 [[cis]]"),
            "{err}"
        );
        assert!(reject_unmatched(&e.cis, |_| true, "CIS item").is_ok());
    }
}
