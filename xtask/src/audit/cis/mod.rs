//! CIS Docker Benchmark checks on the root filesystem as it will be on the card.
//!
//! The rules are data (`configs/hardening/cis-docker.toml`); this module evaluates them against a
//! [`RootFs`], which resolves paths the way the running system does. `cargo xtask audit image`
//! hands it the EROFS image itself ([`crate::erofs::ErofsImage`]), because only the image shows
//! the ownership fakeroot gave each file; `output/target` does not.
//!
//! The layers, one file each: [`rules`] (the table), [`daemon_json`], [`unit`](mod@unit) and [`host_files`]
//! (the files an item reads, parsed as their programs read them). This file runs the checks.

pub mod daemon_json;
pub mod host_files;
pub mod rules;
pub mod unit;

use anyhow::{Context, Result};

pub use rules::{parse_rules, Check, CisItem, CisRules, JsonExpect, UnitExpect};

use crate::audit::exceptions::{reject_unmatched, CisException};
use crate::audit::report::{Finding, Report, Verdict};
use crate::rootfs::{child_path, RootFs, Stat};
use daemon_json::{json_check, json_get};
use host_files::{
    audit_watches, containerd_socket_root, group_without_members, local_socket_only, userns_ids,
};
use unit::{unit_check, unit_values, units_without};

/// What the checks look at, gathered once.
struct Inputs<'a> {
    fs: &'a dyn RootFs,
    daemon_json: Option<serde_json::Value>,
    kernel: KernelConfig<'a>,
}

/// The kernel configuration the image was built with, or why it is not known (the checks that
/// need it then fail: nothing proves them).
pub type KernelConfig<'a> = std::result::Result<&'a crate::kconfig::Resolved, String>;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Judge every item; an item that fails with a `[[cis]]` exception is a documented exception.
/// An exception naming no item is an error (empty reasons and duplicates are refused when the
/// exceptions file is read). `kernel` is the kernel configuration of the image.
pub fn audit(
    fs: &dyn RootFs,
    kernel: KernelConfig,
    rules: &CisRules,
    exceptions: &[CisException],
) -> Result<Report> {
    let daemon_json = match fs.read(DAEMON_JSON)? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{DAEMON_JSON} in the image is not valid JSON, so dockerd would refuse to start"
            )
        })?),
    };
    reject_unmatched(
        exceptions,
        |e| rules.item.iter().any(|i| i.id == e.item),
        "item of the CIS rules",
    )?;
    let ctx = Inputs {
        fs,
        daemon_json,
        kernel,
    };
    let mut report = Report::new(format!("{} on the root filesystem image", rules.benchmark));
    for item in &rules.item {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for check in &item.check {
            match run_check(&ctx, check)
                .with_context(|| format!("while checking item {} ({})", item.id, item.title))?
            {
                Ok(note) => notes.push(note),
                Err(problem) => problems.push(problem),
            }
        }
        let exception = exceptions.iter().find(|e| e.item == item.id);
        let verdict = match (problems.is_empty(), exception) {
            (true, _) => Verdict::Pass,
            (false, Some(e)) => Verdict::Exception(e.reason.clone()),
            (false, None) => Verdict::Fail,
        };
        problems.dedup();
        let mut detail = if problems.is_empty() {
            notes.join("; ")
        } else {
            problems.join("; ")
        };
        if problems.is_empty() && exception.is_some() {
            detail.push_str("; its [[cis]] exception is no longer needed");
        }
        report.push(Finding {
            subject: subject_of(&item.id),
            rule: item.title.clone(),
            source: source_of(&item.id),
            severity: item.severity,
            verdict,
            detail,
        });
    }
    Ok(report)
}

fn subject_of(id: &str) -> String {
    if id.starts_with("berth") {
        id.to_string()
    } else {
        format!("CIS {id}")
    }
}

fn source_of(id: &str) -> String {
    match id.split('.').next() {
        Some(section) if section.chars().all(|c| c.is_ascii_digit()) => {
            format!("CIS Docker section {section}")
        }
        _ => "berth-docker".to_string(),
    }
}

/// `Ok(Ok(note))` when satisfied, `Ok(Err(problem))` when not, `Err` when the image cannot be read.
fn run_check(ctx: &Inputs, check: &Check) -> Result<std::result::Result<String, String>> {
    Ok(match check {
        Check::DaemonJson { key, expect, value } => match &ctx.daemon_json {
            None => Err(format!("{DAEMON_JSON} is missing")),
            Some(json) => json_check(json, key, *expect, value.as_ref()),
        },
        Check::Unit {
            unit,
            section,
            key,
            expect,
            value,
        } => {
            let values = unit_values(ctx.fs, unit, section, key)?;
            match values {
                None => Err(format!("unit {unit} is not in the image")),
                Some(values) => unit_check(unit, key, &values, *expect, value),
            }
        }
        Check::Owner {
            path,
            uid,
            gid,
            optional,
        } => each_file(ctx.fs, path, *optional, |p, s| {
            (s.uid == *uid && s.gid == *gid)
                .then_some(())
                .ok_or_else(|| format!("{p} is owned by {}:{}, not {uid}:{gid}", s.uid, s.gid))
        })?,
        Check::Mode {
            path,
            max,
            dir_max,
            optional,
        } => {
            let max = parse_mode(max)?;
            let dir_max = dir_max
                .as_deref()
                .map(parse_mode)
                .transpose()?
                .unwrap_or(max);
            each_file(ctx.fs, path, *optional, |p, s| {
                mode_within(p, s, if s.is_dir { dir_max } else { max })
            })?
        }
        Check::DaemonJsonFile { key, uid, gid, max } => {
            let max = parse_mode(max)?;
            match ctx.daemon_json.as_ref().and_then(|j| json_get(j, key)) {
                None => Ok(format!("daemon.json sets no {key}")),
                Some(v) => match v.as_str() {
                    None => Err(format!("daemon.json {key} is not a path")),
                    Some(path) => each_file(ctx.fs, path, false, |p, s| {
                        if s.uid != *uid || s.gid != *gid {
                            return Err(format!("{p} is owned by {}:{}", s.uid, s.gid));
                        }
                        mode_within(p, s, max)
                    })?,
                },
            }
        }
        Check::AuditWatch { path } => {
            let watches = audit_watches(ctx.fs)?;
            if watches.iter().any(|w| w == path) {
                Ok(format!("auditd watches {path}"))
            } else {
                Err(format!("no auditd rule '-w {path}' in /etc/audit/rules.d"))
            }
        }
        Check::Exists { path } => match ctx.fs.stat(path)? {
            Some(_) => Ok(format!("{path} present")),
            None => Err(format!("{path} is not in the image")),
        },
        Check::ExistsWhenKernel { option, path } => match &ctx.kernel {
            Err(why) => Err(format!(
                "whether the kernel enables {option} is not known: {why}"
            )),
            Ok(config) if !config.is_enabled(option) => {
                Ok(format!("the kernel does not enable {option}"))
            }
            Ok(_) => match ctx.fs.stat(path)? {
                Some(_) => Ok(format!("{option} is on and {path} is present")),
                None => Err(format!(
                    "the kernel enables {option}, but {path} is not in the image"
                )),
            },
        },
        Check::UnitsWithout { words, reason_key } => units_without(ctx.fs, words, reason_key)?,
        Check::LocalSocketOnly => local_socket_only(ctx.fs, ctx.daemon_json.as_ref())?,
        Check::GroupWithoutMembers { group } => match ctx.fs.read("/etc/group")? {
            None => Err("/etc/group is not in the image".to_string()),
            Some(bytes) => group_without_members(&String::from_utf8_lossy(&bytes), group),
        },
        Check::UsernsSubordinateIds => userns_ids(ctx.fs, ctx.daemon_json.as_ref())?,
        Check::ContainerdSocketRoot => containerd_socket_root(ctx.fs)?,
    })
}

fn parse_mode(text: &str) -> Result<u32> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .with_context(|| format!("mode '{text}' in the CIS rules is not octal"))
}

fn mode_within(path: &str, stat: &Stat, max: u32) -> std::result::Result<(), String> {
    if stat.mode & !max == 0 {
        Ok(())
    } else {
        Err(format!(
            "{path} has mode {:04o}, wider than {max:04o}",
            stat.mode
        ))
    }
}

/// Run `judge` on a path, or on a folder and everything under it for `path/**`.
fn each_file(
    fs: &dyn RootFs,
    path: &str,
    optional: bool,
    judge: impl Fn(&str, &Stat) -> std::result::Result<(), String>,
) -> Result<std::result::Result<String, String>> {
    let (root, recursive) = match path.strip_suffix("/**") {
        Some(dir) => (dir, true),
        None => (path, false),
    };
    let Some(stat) = fs.stat(root)? else {
        return Ok(if optional {
            Ok(format!("{root} not present"))
        } else {
            Err(format!("{root} is not in the image"))
        });
    };
    let mut pending = vec![(root.to_string(), stat)];
    let mut checked = 0;
    let mut problems = Vec::new();
    while let Some((p, s)) = pending.pop() {
        checked += 1;
        if let Err(problem) = judge(&p, &s) {
            problems.push(problem);
        }
        if recursive && s.is_dir {
            for name in fs.list(&p)?.unwrap_or_default() {
                let child = child_path(&p, &name);
                // A link's own mode and owner mean nothing, and following it could loop.
                if let Some(cs) = fs.lstat(&child)?.filter(|cs| !cs.is_symlink) {
                    pending.push((child, cs));
                }
            }
        }
    }
    Ok(if problems.is_empty() {
        Ok(format!("{checked} file(s) under {root} checked"))
    } else {
        Err(problems.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tests::MemFs;

    fn kernel() -> KernelConfig<'static> {
        Err("not in this test".into())
    }

    fn rules() -> CisRules {
        let text =
            std::fs::read_to_string(crate::project::Repo::checkout().path(crate::audit::CIS_RULES))
                .unwrap();
        parse_rules(&text).unwrap()
    }

    /// The shipped overlay, loaded into memory, passes every CIS item that Berth claims.
    #[test]
    fn shipped_overlay_and_a_bad_daemon_json() {
        let overlay = crate::project::default_board()
            .dir(&crate::project::Repo::checkout())
            .join("rootfs-overlay");
        let mut fs = MemFs::default();
        for entry in walkdir::WalkDir::new(&overlay) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let rel = format!(
                    "/{}",
                    entry.path().strip_prefix(&overlay).unwrap().display()
                );
                fs.file(&rel, 0o644, &std::fs::read_to_string(entry.path()).unwrap());
            }
        }
        // Buildroot writes /etc/passwd from the users tables (berth-data-crypt adds dockremap).
        fs.file(
            "/etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\ndockremap:x:1000:1000::/:/bin/false\n",
        );
        let rules = rules();
        let report = audit(&fs, kernel(), &rules, &[]).unwrap();
        let verdict = |id: &str| {
            report
                .findings
                .iter()
                .find(|f| f.subject == format!("CIS {id}"))
                .unwrap()
                .verdict
                .clone()
        };
        for id in [
            "2.2", "2.3", "2.4", "2.5", "2.6", "2.8", "2.9", "2.10", "2.11", "2.14", "2.15",
            "2.16", "2.17", "2.18", "3.5", "3.6", "3.17", "3.18",
        ] {
            assert_eq!(
                verdict(id),
                Verdict::Pass,
                "CIS {id}: {:?}",
                report
                    .findings
                    .iter()
                    .find(|f| f.subject == format!("CIS {id}"))
            );
        }
        // Now break icc: 2.2 must fail and name itself.
        let path = DAEMON_JSON.to_string();
        let text = String::from_utf8(fs.files[&path].1.clone())
            .unwrap()
            .replace("\"icc\": false", "\"icc\": true");
        fs.file(&path, 0o664, &text);
        let report = audit(&fs, kernel(), &rules, &[]).unwrap();
        let failed: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .map(|f| f.subject.as_str())
            .collect();
        assert!(failed.contains(&"CIS 2.2"), "{failed:?}");
        assert!(failed.contains(&"CIS 3.18"), "{failed:?}");

        // An exception turns the failure into a documented one; a stray exception is an error.
        let why = |item: &str| CisException {
            item: item.into(),
            reason: "test".into(),
        };
        let report = audit(&fs, kernel(), &rules, &[why("2.2")]).unwrap();
        let item = report
            .findings
            .iter()
            .find(|f| f.subject == "CIS 2.2")
            .unwrap();
        assert_eq!(item.verdict, Verdict::Exception("test".into()));
        let err = audit(&fs, kernel(), &rules, &[why("9.9")]).unwrap_err();
        assert!(err.to_string().contains("9.9"));
    }

    /// CIS 5.2 on the image: the parser must ship when the kernel has AppArmor, found through
    /// the merged /usr's links, and nothing may turn confinement off without its reason.
    #[test]
    fn apparmor_needs_its_parser_and_no_unit_turns_it_off() {
        let rules = rules();
        let with = crate::kconfig::Resolved::parse("CONFIG_SECURITY_APPARMOR=y\n", "k").unwrap();
        let without =
            crate::kconfig::Resolved::parse("# CONFIG_SECURITY_APPARMOR is not set\n", "k")
                .unwrap();
        let item = |fs: &MemFs, kernel: KernelConfig| {
            let report = audit(fs, kernel, &rules, &[]).unwrap();
            let f = report
                .findings
                .into_iter()
                .find(|f| f.subject == "CIS 5.2")
                .unwrap();
            (f.verdict, f.detail)
        };
        let mut fs = MemFs::default();
        fs.file(
            "/usr/lib/systemd/system/docker.service",
            0o644,
            "[Service]\nExecStart=/usr/bin/dockerd\n",
        );
        let (verdict, detail) = item(&fs, Ok(&with));
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(
            detail,
            "the kernel enables CONFIG_SECURITY_APPARMOR, but /sbin/apparmor_parser is not in the image"
        );
        assert_eq!(item(&fs, Ok(&without)).0, Verdict::Pass);
        assert!(item(&fs, Err("no build/linux-*/.config".into()))
            .1
            .contains("is not known: no build"));

        fs.link("/sbin", "usr/sbin");
        fs.file("/usr/sbin/apparmor_parser", 0o755, "ELF");
        let (verdict, detail) = item(&fs, Ok(&with));
        assert_eq!(verdict, Verdict::Pass, "{detail}");

        fs.file(
            "/etc/systemd/system/docker.service.d/env.conf",
            0o644,
            "[Service]\nEnvironment=container=docker\n",
        );
        let (verdict, detail) = item(&fs, Ok(&with));
        assert_eq!(verdict, Verdict::Fail);
        assert!(
            detail.contains("Environment sets container=docker"),
            "{detail}"
        );
    }

    /// The table's reason key is the one the app units are written with.
    #[test]
    fn the_apparmor_reason_key_is_the_units_own() {
        let key = format!(
            "{}{}",
            crate::apps::units::REASON_KEY_PREFIX,
            crate::apps::spec::Setting::AppArmor.key()
        );
        let rules = rules();
        let item = rules.item.iter().find(|i| i.id == "5.2").unwrap();
        assert!(item
            .check
            .iter()
            .any(|c| matches!(c, Check::UnitsWithout { reason_key, .. } if *reason_key == key)));
    }
}
