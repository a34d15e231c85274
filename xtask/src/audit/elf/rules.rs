//! The ELF rule table (`configs/hardening/elf-rules.toml`) and how one file is judged by it.

use anyhow::{Context, Result};
use serde::Serialize;

use super::analyze::{ElfKind, ElfProperties, Pie, Relro, Tri};
use super::search_path::judge_search_path;
use crate::audit::report::{Finding, Severity, Verdict};
use crate::rootfs::RootFs;

/// One rule of `configs/hardening/elf-rules.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfRule {
    pub property: Property,
    /// Kinds of object the rule is checked on.
    pub applies_to: Vec<ElfKind>,
    pub severity: Severity,
    /// Where the requirement comes from (Buildroot option, KSPP, distribution policy).
    pub source: String,
    pub title: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Property {
    Pie,
    Relro,
    Nx,
    Canary,
    Fortify,
    Rpath,
    Runpath,
    Textrel,
    Stripped,
}

impl Property {
    pub const ALL: [Property; 9] = [
        Property::Pie,
        Property::Relro,
        Property::Nx,
        Property::Canary,
        Property::Fortify,
        Property::Rpath,
        Property::Runpath,
        Property::Textrel,
        Property::Stripped,
    ];

    /// The word the rule table and the exceptions file use.
    pub fn name(self) -> &'static str {
        match self {
            Property::Pie => "pie",
            Property::Relro => "relro",
            Property::Nx => "nx",
            Property::Canary => "canary",
            Property::Fortify => "fortify",
            Property::Rpath => "rpath",
            Property::Runpath => "runpath",
            Property::Textrel => "textrel",
            Property::Stripped => "stripped",
        }
    }
}

/// One `[[config]]` rule: hardening proved once from the Buildroot `.config`, because the
/// toolchain wrapper applies it to every compile or link (a file's bytes cannot show it).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRule {
    /// Holds when one of these options is `=y`.
    pub any_of: Vec<String>,
    pub severity: Severity,
    pub source: String,
    pub title: String,
}

/// The ELF rule table: per-file rules and build-configuration rules.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfRules {
    pub rule: Vec<ElfRule>,
    #[serde(default)]
    pub config: Vec<ConfigRule>,
}

pub fn parse_rules(text: &str) -> Result<ElfRules> {
    toml::from_str(text).context("ELF rule table has an unexpected shape")
}

/// Judge the `[[config]]` rules on the settings of a Buildroot `.config` (the last setting of a
/// symbol wins, as in Kconfig).
pub fn evaluate_config(rules: &[ConfigRule], settings: &[crate::kconfig::Setting]) -> Vec<Finding> {
    rules
        .iter()
        .map(|rule| {
            let set = rule.any_of.iter().find_map(|symbol| {
                settings
                    .iter()
                    .rev()
                    .find(|s| &s.symbol == symbol)
                    .filter(|s| s.value == crate::kconfig::Value::Yes)
            });
            let (verdict, detail) = match set {
                Some(s) => (Verdict::Pass, format!("{}=y ({})", s.symbol, s.origin)),
                None => (
                    Verdict::Fail,
                    format!("none of {} is =y", rule.any_of.join(", ")),
                ),
            };
            Finding {
                subject: "build configuration".into(),
                rule: rule.title.clone(),
                source: rule.source.clone(),
                severity: rule.severity,
                verdict,
                detail,
            }
        })
        .collect()
}

/// Judge one file against every rule that applies to its kind. `None` from a property means
/// "does not apply" (pure Go code has no canary) and yields no finding. `image` is the root
/// filesystem the file is in: library search paths are judged by the folders they name there.
/// `waived` gives the exception's reason for a file and property, if one waives it (the image's
/// matched [`super::waivers::Waivers`]).
pub fn evaluate(
    path: &str,
    props: &ElfProperties,
    rules: &[ElfRule],
    waived: &dyn Fn(&str, Property) -> Option<String>,
    image: &dyn RootFs,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for rule in rules.iter().filter(|r| r.applies_to.contains(&props.kind)) {
        let judged = match rule.property {
            Property::Rpath => Some(judge_search_path("DT_RPATH", &props.rpath, path, image)?),
            Property::Runpath => Some(judge_search_path(
                "DT_RUNPATH",
                &props.runpath,
                path,
                image,
            )?),
            other => judge(other, props),
        };
        let Some((ok, detail)) = judged else {
            continue;
        };
        let verdict = if ok {
            Verdict::Pass
        } else {
            match waived(path, rule.property) {
                Some(reason) => Verdict::Exception(reason),
                None => Verdict::Fail,
            }
        };
        findings.push(Finding {
            subject: path.to_string(),
            rule: rule.title.clone(),
            source: rule.source.clone(),
            severity: rule.severity,
            verdict,
            detail,
        });
    }
    Ok(findings)
}

fn judge(property: Property, p: &ElfProperties) -> Option<(bool, String)> {
    let yes_no = |tri: Tri, what: &str| match tri {
        Tri::Yes => Some((true, format!("{what} present"))),
        Tri::No => Some((false, format!("no {what}"))),
        Tri::NotApplicable => None,
    };
    match property {
        Property::Pie => Some((
            p.pie == Pie::Yes,
            format!("pie: {:?}", p.pie).to_lowercase(),
        )),
        Property::Relro => Some((
            p.relro == Relro::Full,
            format!("relro: {:?}", p.relro).to_lowercase(),
        )),
        Property::Nx => Some((
            p.nx,
            if p.nx {
                "stack not executable"
            } else {
                "executable or unmarked stack (PT_GNU_STACK)"
            }
            .into(),
        )),
        Property::Canary => yes_no(p.canary, "stack protector symbol"),
        Property::Fortify => yes_no(p.fortify, "fortified __*_chk call"),
        // Judged with the image by judge_search_path.
        Property::Rpath | Property::Runpath => None,
        Property::Textrel => Some((
            !p.textrel,
            if p.textrel {
                "text relocations (DT_TEXTREL/DF_TEXTREL)"
            } else {
                "no text relocations"
            }
            .into(),
        )),
        Property::Stripped => Some((
            p.stripped,
            if p.stripped {
                "stripped"
            } else {
                "has .symtab"
            }
            .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::elf::waivers::Waivers;
    use crate::rootfs::tests::MemFs;

    fn props() -> ElfProperties {
        ElfProperties {
            kind: ElfKind::Executable,
            machine: "arm".into(),
            pie: Pie::Yes,
            interpreter: Some("/lib/ld-linux-armhf.so.3".into()),
            relro: Relro::Full,
            nx: true,
            canary: Tri::NotApplicable,
            fortify: Tri::No,
            fortified_calls: vec![],
            rpath: vec![],
            runpath: vec!["/opt/lib".into()],
            textrel: true,
            stripped: true,
            go: true,
            cgo: false,
        }
    }

    #[test]
    fn evaluation_skips_inapplicable_properties_and_honours_exceptions() {
        let mut image = MemFs::default();
        image.file("/usr/bin/x", 0o755, "elf");
        let rules = parse_rules(
            r#"rule = [
                { property = "canary", applies_to = ["executable"], severity = "required", source = "elf-hardening", title = "stack protector" },
                { property = "textrel", applies_to = ["executable", "shared-library"], severity = "required", source = "elf-hardening", title = "no text relocations" },
                { property = "runpath", applies_to = ["shared-library"], severity = "required", source = "elf-hardening", title = "no RUNPATH" },
                { property = "fortify", applies_to = ["executable"], severity = "recommended", source = "elf-hardening", title = "FORTIFY_SOURCE" },
            ]
            "#,
        )
        .unwrap()
        .rule;
        let exceptions = crate::audit::exceptions::Exceptions::parse(
            "[[elf]]\npath = \"/usr/bin/x\"\nproperty = \"fortify\"\nreason = \"test\"\n",
        )
        .unwrap();
        let audited = [("/usr/bin/x".to_string(), ElfKind::Executable)].into();
        let waivers = Waivers::match_image(
            &exceptions.elf,
            Default::default(),
            &rules,
            &image,
            &audited,
        )
        .unwrap();
        let waived = |p: &str, prop| waivers.reason(p, prop).map(str::to_string);
        let findings = evaluate("/usr/bin/x", &props(), &rules, &waived, &image).unwrap();
        // canary: not applicable to pure Go; runpath: rule is for shared libraries only.
        let rules_seen: Vec<_> = findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules_seen, ["no text relocations", "FORTIFY_SOURCE"]);
        assert_eq!(findings[0].verdict, Verdict::Fail);
        assert!(matches!(findings[1].verdict, Verdict::Exception(_)));
    }

    #[test]
    fn configuration_proves_what_the_toolchain_wrapper_adds() {
        let rules = parse_rules(
            &std::fs::read_to_string(
                crate::project::Repo::checkout().path(crate::audit::ELF_RULES),
            )
            .unwrap(),
        )
        .unwrap();
        let config = "BR2_SSP_STRONG=y\nBR2_PIC_PIE=y\nBR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\n";
        let settings = crate::kconfig::parse(config, ".config").unwrap();
        let findings = evaluate_config(&rules.config, &settings);
        assert!(findings.len() >= 4);
        assert!(findings.iter().all(|f| f.verdict == Verdict::Pass));
        let weak = config.replace(
            "BR2_SSP_STRONG=y",
            "# BR2_SSP_STRONG is not set\nBR2_SSP_REGULAR=y",
        );
        let settings = crate::kconfig::parse(&weak, ".config").unwrap();
        let failed: Vec<_> = evaluate_config(&rules.config, &settings)
            .into_iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .map(|f| f.rule)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("stack protector"), "{failed:?}");
    }

    #[test]
    fn rule_table_rejects_unknown_properties() {
        let err = parse_rules(
            "[[rule]]\nproperty = \"aslr\"\napplies_to = [\"executable\"]\nseverity = \"required\"\nsource = \"x\"\ntitle = \"x\"\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("aslr"));
    }
}
