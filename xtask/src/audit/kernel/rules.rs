//! The kernel rule table (`configs/hardening/kernel-rules.toml`): its schema and the checks that
//! make a malformed or ambiguous table an error.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::audit::report::Severity;

/// Where a rule comes from; the table groups findings by it.
pub const SOURCES: &[&str] = &[
    "docker-required",
    "docker-optional",
    "kspp",
    "self-protection",
    "attack-surface",
    "network",
    "board",
    "verified-root",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub kconfig: Vec<KconfigRule>,
    #[serde(default)]
    pub cmdline: Vec<CmdlineRule>,
    #[serde(default)]
    pub sysctl: Vec<SysctlRule>,
}

/// Fields every rule kind shares, borrowed from a rule by its `meta()`.
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    pub source: &'a str,
    pub note: Option<&'a str>,
    pub severity: Severity,
    /// Kconfig conditions (`CONFIG_X=v`, `n` meaning not set) any one of which also satisfies
    /// the rule, e.g. `CONFIG_MODULES=n` for module signing.
    pub alternatives: &'a [String],
}

/// Declares a rule kind: its own fields, then the fields every kind shares (one home, here) and
/// its `meta()`. The shared fields are written into each struct rather than a
/// `#[serde(flatten)]`ed one because serde cannot combine `flatten` with `deny_unknown_fields`,
/// and a misspelt field in the rule table must be an error.
macro_rules! rule_kind {
    ($(#[$doc:meta])* $kind:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $kind {
            $($(#[$field_doc])* pub $field: $ty,)*
            pub source: String,
            pub severity: Severity,
            /// Kconfig conditions that also satisfy the rule (see [`Meta`]).
            #[serde(default, rename = "or")]
            pub alternatives: Vec<String>,
            /// Why the rule exists or what it protects, for the documentation.
            #[serde(default)]
            pub note: Option<String>,
        }

        impl $kind {
            pub fn meta(&self) -> Meta<'_> {
                Meta {
                    source: &self.source,
                    note: self.note.as_deref(),
                    severity: self.severity,
                    alternatives: &self.alternatives,
                }
            }
        }
    };
}

rule_kind!(
    /// A `[[kconfig]]` rule: what a kernel config symbol must be.
    KconfigRule {
        option: String,
        /// Allowed values: `y`, `m`, `n` (not set or absent), a number or a string as written.
        #[serde(default)]
        want: Vec<String>,
        /// The numeric value must be at least this.
        #[serde(default)]
        min: Option<i64>,
        /// The comma-separated string value must hold every one of these items.
        #[serde(default)]
        contains: Vec<String>,
        /// The option's availability depends on what the compiler supports (probed by Kconfig).
        #[serde(default)]
        compiler_probe: bool,
    }
);

rule_kind!(
    /// A `[[cmdline]]` rule: a kernel command-line parameter.
    CmdlineRule {
        param: String,
        /// Allowed values (`""` for a bare flag). Empty: the parameter only has to be present.
        #[serde(default)]
        want: Vec<String>,
        /// The parameter must not appear at all.
        #[serde(default)]
        absent: bool,
        /// Leaving the parameter out is fine (the kernel default, checked by a kconfig rule, holds).
        #[serde(default)]
        allow_absent: bool,
        /// A comma-separated value must hold every one of these items (as `lsm=` must list
        /// apparmor); a value in `want` satisfies the rule too.
        #[serde(default)]
        contains: Vec<String>,
    }
);

rule_kind!(
    /// A `[[sysctl]]` rule: a sysctl key's value at boot.
    SysctlRule {
        key: String,
        want: Vec<String>,
    }
);

pub fn load_rules(path: &Path) -> Result<Rules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the kernel rule file {}", path.display()))?;
    parse_rules(&text)
        .with_context(|| format!("{} is not a valid kernel rule file", path.display()))
}

pub fn parse_rules(text: &str) -> Result<Rules> {
    let rules: Rules = toml::from_str(text)?;
    let mut subjects = BTreeSet::new();
    for r in &rules.kconfig {
        ensure!(
            r.option.starts_with("CONFIG_"),
            "kconfig rule '{}' must name a CONFIG_ symbol",
            r.option
        );
        let kinds = usize::from(!r.want.is_empty())
            + usize::from(r.min.is_some())
            + usize::from(!r.contains.is_empty());
        ensure!(
            kinds == 1,
            "kconfig rule {} needs exactly one of want, min, contains",
            r.option
        );
        check_meta(&mut subjects, &r.option, &r.meta())?;
    }
    for r in &rules.cmdline {
        ensure!(
            !r.param.is_empty() && !r.param.contains(char::is_whitespace),
            "bad cmdline parameter '{}'",
            r.param
        );
        ensure!(
            !r.absent || (!r.allow_absent && r.want.is_empty() && r.contains.is_empty()),
            "cmdline rule {}: absent excludes want, contains and allow_absent",
            r.param
        );
        let subject = format!("cmdline:{}", r.param);
        check_meta(&mut subjects, &subject, &r.meta())?;
    }
    for r in &rules.sysctl {
        ensure!(!r.want.is_empty(), "sysctl rule {} needs want", r.key);
        let subject = format!("sysctl:{}", r.key);
        check_meta(&mut subjects, &subject, &r.meta())?;
    }
    Ok(rules)
}

/// A rule's shared fields are valid, and no other rule of its source checks the same subject
/// (`subjects` holds the (subject, source) pairs seen so far).
fn check_meta(
    subjects: &mut BTreeSet<(String, String)>,
    subject: &str,
    meta: &Meta<'_>,
) -> Result<()> {
    ensure!(
        SOURCES.contains(&meta.source),
        "{subject}: unknown source '{}' (one of {})",
        meta.source,
        SOURCES.join(", ")
    );
    for alt in meta.alternatives {
        parse_condition(alt).with_context(|| format!("{subject}: bad 'or' condition"))?;
    }
    ensure!(
        subjects.insert((subject.to_string(), meta.source.to_string())),
        "two {} rules for {subject}",
        meta.source
    );
    Ok(())
}

/// `CONFIG_X=v` into its symbol and wanted value.
pub(super) fn parse_condition(text: &str) -> Result<(&str, &str)> {
    match text.split_once('=') {
        Some((sym, val)) if sym.starts_with("CONFIG_") && !val.is_empty() => Ok((sym, val)),
        _ => bail!("'{text}' is not CONFIG_SYMBOL=value"),
    }
}
