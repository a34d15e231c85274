//! The `[[elf]]` exceptions matched to the files of one image.
//!
//! An `[[elf]]` exception is valid for an image when
//! - its `property` is the property of a per-file rule of `elf-rules.toml`, and
//! - its `path`, resolved in the image through symbolic links as the loader would reach it, is an
//!   ELF file the audit judged, of a kind that rule applies to.
//!
//! Anything else is an error naming the exception. Why each condition:
//! - A property no rule checks (`relr` for `relro`) can never waive a finding.
//! - A path the image does not hold is mistyped or stale (the toolchain renamed the file, as
//!   libstdc++'s version suffix changes with each GCC). Either way it waives nothing, while the
//!   file it meant fails unwaived or passes unexamined.
//! - The path is resolved rather than compared as written because the exceptions name files as
//!   users and the loader see them (`/lib/libc.so.6`), while the audit walks the real files: with
//!   systemd Buildroot merges /usr, so `/lib` is a link to `usr/lib` and that file is judged as
//!   `/usr/lib/libc.so.6`. Compared as written, the exception would silently waive nothing there.
//! - Two exceptions reaching the same file and property are one too many, whatever they are called,
//!   and so is one reaching a file and property the `[[elf_prebuilt]]` policy already waives
//!   ([`super::prebuilt`]).

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

use super::analyze::ElfKind;
use super::rules::{ElfRule, Property};
use crate::audit::exceptions::{reject_unmatched, ElfException, Waiver};
use crate::rootfs::RootFs;

/// (file as the audit names it, property) → the reason it is waived.
#[derive(Debug, Default)]
pub struct Waivers(BTreeMap<(String, Property), String>);

impl Waivers {
    /// Match every exception to a rule and to a file of `image`; `audited` holds each ELF file
    /// the audit judged, by its path in the image, with its kind. `prebuilt` is what the
    /// `[[elf_prebuilt]]` policy waives on those files.
    pub fn match_image(
        exceptions: &[ElfException],
        prebuilt: BTreeMap<(String, Property), String>,
        rules: &[ElfRule],
        image: &dyn RootFs,
        audited: &BTreeMap<String, ElfKind>,
    ) -> Result<Waivers> {
        let property_of = |e: &ElfException| {
            Property::ALL
                .into_iter()
                .find(|p| p.name() == e.property && rules.iter().any(|r| r.property == *p))
        };
        let checked: Vec<&str> = rules.iter().map(|r| r.property.name()).collect();
        reject_unmatched(
            exceptions,
            |e| property_of(e).is_some(),
            &format!("property of an ELF rule ({})", checked.join(", ")),
        )?;

        // Each exception's file as the audit names it, when the image holds it as an audited file.
        let mut real_file = BTreeMap::new();
        for e in exceptions {
            let real = image
                .resolve(&e.path, true)?
                .map(|(real, _)| real)
                .filter(|real| audited.contains_key(real));
            real_file.insert(e.label(), real);
        }
        let target = |e: &ElfException| {
            let property = property_of(e)?;
            let real = real_file.get(&e.label())?.clone()?;
            let kind = audited.get(&real)?;
            rules
                .iter()
                .any(|r| r.property == property && r.applies_to.contains(kind))
                .then_some((real, property))
        };
        reject_unmatched(
            exceptions,
            |e| target(e).is_some(),
            "ELF file of the image that a rule with that property applies to",
        )?;

        let mut waivers = BTreeMap::new();
        for e in exceptions {
            let (real, property) = target(e).expect("every stray was rejected above");
            let key = (real.clone(), property);
            ensure!(
                !prebuilt.contains_key(&key),
                "the [[elf]] exception {} reaches {real}, a prebuilt file whose {} the \
                 [[elf_prebuilt]] policy already waives; remove the exception",
                e.label(),
                e.property
            );
            ensure!(
                !waivers.contains_key(&key),
                "two [[elf]] exceptions reach {real} ({}); keep one",
                e.property
            );
            waivers.insert(key, e.reason.clone());
        }
        waivers.extend(prebuilt);
        Ok(Waivers(waivers))
    }

    /// Why `property` of the file the audit names `path` is waived, if it is.
    pub fn reason(&self, path: &str, property: Property) -> Option<&str> {
        self.0
            .get(&(path.to_string(), property))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::exceptions::Exceptions;
    use crate::rootfs::tests::MemFs;

    fn rules() -> Vec<ElfRule> {
        super::super::parse_rules(
            "[[rule]]\nproperty = \"relro\"\napplies_to = [\"executable\", \"shared-library\"]\nseverity = \"required\"\nsource = \"elf-hardening\"\ntitle = \"full RELRO\"\n\
             [[rule]]\nproperty = \"pie\"\napplies_to = [\"executable\"]\nseverity = \"required\"\nsource = \"elf-hardening\"\ntitle = \"PIE\"\n",
        )
        .unwrap()
        .rule
    }

    /// A merged-/usr image (/lib -> usr/lib) holding libc and one program.
    fn image() -> (MemFs, BTreeMap<String, ElfKind>) {
        let mut fs = MemFs::default();
        fs.file("/usr/lib/libc.so.6", 0o755, "elf");
        fs.file("/usr/lib/libm.so.6", 0o755, "elf");
        fs.file("/usr/bin/tini", 0o755, "elf");
        fs.link("/lib", "usr/lib");
        let audited = BTreeMap::from([
            ("/usr/lib/libc.so.6".to_string(), ElfKind::SharedLibrary),
            ("/usr/lib/libm.so.6".to_string(), ElfKind::SharedLibrary),
            ("/usr/bin/tini".to_string(), ElfKind::Executable),
        ]);
        (fs, audited)
    }

    /// Matches `[[elf]]` exceptions, given as (path, property) with reason `r`, against
    /// [`image`] and [`rules`].
    fn match_exceptions(entries: &[(&str, &str)]) -> Result<Waivers> {
        let text: String = entries
            .iter()
            .map(|(path, property)| {
                format!("[[elf]]\npath = \"{path}\"\nproperty = \"{property}\"\nreason = \"r\"\n")
            })
            .collect();
        let exceptions: Vec<ElfException> = Exceptions::parse(&text).unwrap().elf;
        let (fs, audited) = image();
        let prebuilt = BTreeMap::from([(
            ("/usr/lib/libm.so.6".to_string(), Property::Relro),
            "prebuilt by toolchain-external-bootlin: vendor".to_string(),
        )]);
        Waivers::match_image(&exceptions, prebuilt, &rules(), &fs, &audited)
    }

    #[test]
    fn an_exception_reaches_its_file_through_the_merged_usr_link() {
        let w = match_exceptions(&[("/lib/libc.so.6", "relro"), ("/usr/bin/tini", "pie")]).unwrap();
        assert_eq!(w.reason("/usr/lib/libc.so.6", Property::Relro), Some("r"));
        assert_eq!(w.reason("/usr/bin/tini", Property::Pie), Some("r"));
        assert_eq!(w.reason("/usr/bin/tini", Property::Relro), None);
    }

    #[test]
    fn a_mistyped_elf_exception_is_an_error_that_names_it() {
        for (path, property, named) in [
            ("/lib/libc.so.7", "relro", "/lib/libc.so.7 (relro)"),
            ("/usr/bin/tinni", "pie", "/usr/bin/tinni (pie)"),
            ("/lib/libc.so.6", "relr", "/lib/libc.so.6 (relr)"),
            // Canary is a property, but no rule of this table checks it.
            ("/lib/libc.so.6", "canary", "/lib/libc.so.6 (canary)"),
            // PIE applies to programs only: the exception could never waive a finding.
            ("/lib/libc.so.6", "pie", "/lib/libc.so.6 (pie)"),
            // A folder of the image is no ELF file.
            ("/usr/lib", "relro", "/usr/lib (relro)"),
        ] {
            let err = match_exceptions(&[("/usr/bin/tini", "pie"), (path, property)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{path} {property}: {err}");
            assert!(!err.contains("/usr/bin/tini"), "{err}");
        }
    }

    #[test]
    fn two_names_of_one_file_are_a_duplicate() {
        let err = match_exceptions(&[("/lib/libc.so.6", "relro"), ("/usr/lib/libc.so.6", "relro")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("two [[elf]] exceptions reach /usr/lib/libc.so.6"),
            "{err}"
        );
    }

    #[test]
    fn the_prebuilt_policy_waives_beside_the_exceptions_and_is_not_repeated_by_one() {
        let w = match_exceptions(&[("/usr/bin/tini", "pie")]).unwrap();
        assert_eq!(
            w.reason("/usr/lib/libm.so.6", Property::Relro),
            Some("prebuilt by toolchain-external-bootlin: vendor")
        );
        let err = match_exceptions(&[("/lib/libm.so.6", "relro")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/lib/libm.so.6 (relro) reaches /usr/lib/libm.so.6, a prebuilt file"),
            "{err}"
        );
    }

    #[test]
    fn property_names_are_the_rule_tables_words() {
        for p in Property::ALL {
            let parsed: Property = toml::Value::String(p.name().into()).try_into().unwrap();
            assert_eq!(parsed, p);
        }
    }
}
