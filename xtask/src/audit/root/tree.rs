//! The read-only root judged on an image tree: `/etc/fstab`, the mount units, and the folders
//! the services are set to write (systemd's `StateDirectory=`, `ReadWritePaths=`, ...).

use std::collections::BTreeSet;

use anyhow::Result;

use super::tables::{under, RootRules, StateTable, Tables, SOURCE};
use crate::audit::cis::unit::{unit_values, UNIT_DIRS};
use crate::audit::report::{Finding, Severity, Verdict};
use crate::rootfs::{child_path, RootFs};

/// One mount, from a mount unit or an fstab line.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The unit's name, or `/etc/fstab:<line>`.
    pub origin: String,
    pub what: String,
    pub at: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl Mount {
    fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Every finding on the tree `fs`; `config_tmpfs` are the tmpfs folders its configuration makes.
pub fn audit_tree(
    tables: &Tables,
    fs: &dyn RootFs,
    config_tmpfs: &[String],
) -> Result<Vec<Finding>> {
    let (rules, state) = (&tables.rules, &tables.state);
    let mut findings = Vec::new();
    let (root, mut mounts) = fstab(fs)?;
    findings.push(root_finding(rules, root.as_ref()));
    let units = unit_names(fs)?;
    for unit in units.iter().filter(|u| u.ends_with(".mount")) {
        let last = |key: &str| -> Result<String> {
            Ok(unit_values(fs, unit, "Mount", key)?
                .and_then(|v| v.last().cloned())
                .unwrap_or_default())
        };
        mounts.push(Mount {
            origin: unit.clone(),
            what: last("What")?,
            at: last("Where")?,
            fstype: last("Type")?,
            options: split_options(&last("Options")?),
        });
    }
    let mut tmpfs: Vec<String> = rules.api_tmpfs.clone();
    tmpfs.extend(config_tmpfs.iter().cloned());
    tmpfs.extend(
        mounts
            .iter()
            .filter(|m| m.fstype == "tmpfs" || m.fstype == "ramfs")
            .map(|m| m.at.clone()),
    );
    for m in &mounts {
        findings.push(mount_finding(rules, state, m));
    }
    findings.extend(declared_binds(state, &mounts));
    for unit in units.iter().filter(|u| u.ends_with(".service")) {
        for directive in &rules.directive {
            let values = unit_values(fs, unit, "Service", &directive.key)?.unwrap_or_default();
            for word in values.iter().flat_map(|v| v.split_whitespace()) {
                let path = written_path(&directive.under, word);
                let allowed = state.declares(&path) || tmpfs.iter().any(|t| under(&path, t));
                let waived = tables
                    .exceptions
                    .root
                    .iter()
                    .find(|e| e.unit == *unit && e.path == path);
                findings.push(Finding {
                    subject: unit.clone(),
                    rule: format!("{}={word} writes {path}", directive.key),
                    source: SOURCE.into(),
                    severity: Severity::Required,
                    verdict: match (allowed, waived) {
                        (true, _) => Verdict::Pass,
                        (false, Some(e)) => Verdict::Exception(e.reason.clone()),
                        (false, None) => Verdict::Fail,
                    },
                    detail: if allowed {
                        format!("{path} is declared state or on a tmpfs")
                    } else {
                        format!(
                            "{unit} is set to write {path} ({}={word}), which is neither declared \
                             persistent state (configs/hardening/persistent-state.toml) nor on a \
                             tmpfs: on the read-only root the write fails (source: {})",
                            directive.key, directive.source
                        )
                    },
                });
            }
        }
    }
    Ok(findings)
}

/// Unit files by name, a name in an earlier folder hiding the same name in a later one; a masked
/// unit (a link to /dev/null, which the tree does not hold) is left out.
fn unit_names(fs: &dyn RootFs) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    let mut units = BTreeSet::new();
    for dir in UNIT_DIRS {
        for name in fs.list(dir)?.unwrap_or_default() {
            if !(name.ends_with(".mount") || name.ends_with(".service"))
                || !seen.insert(name.clone())
            {
                continue;
            }
            if fs.read(&child_path(dir, &name))?.is_some() {
                units.insert(name);
            }
        }
    }
    Ok(units)
}

/// The options of the `/` line, and every other line as a mount.
fn fstab(fs: &dyn RootFs) -> Result<(Option<Vec<String>>, Vec<Mount>)> {
    let text = fs
        .read("/etc/fstab")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut root = None;
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0].starts_with('#') || fields.len() < 3 {
            continue;
        }
        let options = split_options(fields.get(3).copied().unwrap_or("defaults"));
        if fields[1] == "/" {
            root = Some(options);
        } else if fields[2] != "swap" {
            mounts.push(Mount {
                origin: format!("/etc/fstab:{}", index + 1),
                what: fields[0].into(),
                at: fields[1].into(),
                fstype: fields[2].into(),
                options,
            });
        }
    }
    Ok((root, mounts))
}

fn split_options(options: &str) -> Vec<String> {
    options
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect()
}

/// A required rule of this audit: failed with `problem`'s words, or passed with `fine`'s.
fn judged(subject: String, rule: String, problem: Option<String>, fine: String) -> Finding {
    Finding {
        subject,
        rule,
        source: SOURCE.into(),
        severity: Severity::Required,
        verdict: if problem.is_some() {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
        detail: problem.unwrap_or(fine),
    }
}

fn root_finding(rules: &RootRules, root: Option<&Vec<String>>) -> Finding {
    let problem = match root {
        None => {
            Some("/etc/fstab has no line for /, so nothing says how the root is mounted".into())
        }
        Some(o) if !o.iter().any(|x| x == "ro") => Some(format!(
            "/etc/fstab mounts / with '{}', without ro: systemd-remount-fs makes it writable",
            o.join(",")
        )),
        Some(o) => o
            .iter()
            .find(|x| rules.fstab.root_forbidden.contains(x))
            .map(|x| format!("/etc/fstab mounts / with '{x}': the root becomes writable")),
    };
    judged(
        "/etc/fstab".into(),
        "the root is mounted read-only".into(),
        problem.map(|p| format!("{p} (source: {})", rules.fstab.source)),
        "/ is mounted ro".into(),
    )
}

/// A mount keeps nothing, is read-only, or is the home or a declared state at its path.
fn mount_finding(rules: &RootRules, state: &StateTable, m: &Mount) -> Finding {
    let declared = state.state.iter().find(|e| e.path == m.at);
    let problem = if rules.volatile_types.contains(&m.fstype) || m.read_only() {
        None
    } else if m.at == state.home.path {
        (m.what != state.home.what).then(|| {
            format!(
                "{} mounts {} at the home {}, which is {}",
                m.origin, m.what, m.at, state.home.what
            )
        })
    } else {
        match declared {
            Some(e) if e.stored == m.what => None,
            Some(e) => Some(format!(
                "{} mounts {} writable at {}, but the declared state there is stored at {}",
                m.origin, m.what, m.at, e.stored
            )),
            None => Some(format!(
                "{} mounts {} writable at {}, which is not declared persistent state \
                 (configs/hardening/persistent-state.toml): declare it with why it must persist, \
                 mount it ro, or make it a tmpfs (volatile types: {})",
                m.origin, m.what, m.at, rules.volatile_source
            )),
        }
    };
    judged(
        m.origin.clone(),
        format!(
            "{} on {} is volatile, read-only or declared",
            m.fstype, m.at
        ),
        problem,
        format!("{} at {}", m.what, m.at),
    )
}

/// The home is mounted, and every state kept under it but seen elsewhere has its bind mount.
fn declared_binds(state: &StateTable, mounts: &[Mount]) -> Vec<Finding> {
    let home = std::iter::once((&state.home.path, &state.home.what));
    let binds = state
        .state
        .iter()
        .filter(|e| e.is_bound(&state.home))
        .map(|e| (&e.path, &e.stored));
    home.chain(binds)
        .map(|(path, stored)| {
            let found = mounts.iter().find(|m| &m.at == path && &m.what == stored);
            judged(
                path.clone(),
                format!("declared state: {stored} is mounted at {path}"),
                found.is_none().then(|| {
                    format!(
                        "no mount unit or fstab line mounts {stored} at {path}, as \
                         configs/hardening/persistent-state.toml declares"
                    )
                }),
                found
                    .map(|m| format!("by {}", m.origin))
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The folder a directive's word makes a service write: systemd's specifiers for system
/// folders expanded, a leading `-` or `+` flag and a `:link` suffix dropped.
pub fn written_path(under_dir: &str, word: &str) -> String {
    let word = word.trim_start_matches(['-', '+']);
    let word = if under_dir.is_empty() {
        word
    } else {
        word.split(':').next().unwrap_or(word)
    };
    let mut path = if under_dir.is_empty() {
        word.to_string()
    } else {
        format!("{under_dir}/{word}")
    };
    for (spec, dir) in [
        ("%t", "/run"),
        ("%S", "/var/lib"),
        ("%C", "/var/cache"),
        ("%L", "/var/log"),
        ("%E", "/etc"),
        ("%T", "/tmp"),
        ("%V", "/var/tmp"),
    ] {
        if let Some(rest) = path.strip_prefix(spec) {
            path = format!("{dir}{rest}");
        }
    }
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    if path.len() > 1 {
        path = path.trim_end_matches('/').to_string();
    }
    path
}
