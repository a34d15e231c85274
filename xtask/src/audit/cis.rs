//! CIS Docker Benchmark checks on the root filesystem as it will be on the card.
//!
//! The rules are data (`configs/hardening/cis-docker.toml`); this module evaluates them against a
//! [`RootFs`], which resolves paths the way the running system does. `cargo xtask audit image`
//! hands it the ext4 image itself ([`crate::rootfs::Ext4Image`]), because only the image shows
//! the ownership fakeroot gave each file; `output/target` does not.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::report::{Finding, Report, Severity, Verdict};
use crate::rootfs::{child_path, RootFs, Stat};

// ---------------------------------------------------------------------------------------------
// Rule data

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CisRules {
    pub benchmark: String,
    pub item: Vec<CisItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CisItem {
    /// CIS item number ("2.2"), or "berth-…" for Berth's own rules beyond the benchmark.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub check: Vec<Check>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// A value in /etc/docker/daemon.json (dotted keys reach into objects).
    DaemonJson {
        key: String,
        expect: JsonExpect,
        value: Option<toml::Value>,
    },
    /// A directive of a systemd unit, with its drop-ins applied.
    Unit {
        unit: String,
        section: String,
        key: String,
        expect: UnitExpect,
        value: String,
    },
    /// Owner of a file; `path/**` means the folder and all it holds; `optional` allows absence.
    Owner {
        path: String,
        uid: u32,
        gid: u32,
        #[serde(default)]
        optional: bool,
    },
    /// Permission bits no wider than `max` (octal string); folders under `path/**` against `dir_max`.
    Mode {
        path: String,
        max: String,
        dir_max: Option<String>,
        #[serde(default)]
        optional: bool,
    },
    /// Files named by a daemon.json key (TLS material), when set: owner and widest mode.
    DaemonJsonFile {
        key: String,
        uid: u32,
        gid: u32,
        max: String,
    },
    /// An auditd watch (`-w path`) in /etc/audit/rules.d/*.rules or /etc/audit/audit.rules.
    AuditWatch {
        path: String,
    },
    Exists {
        path: String,
    },
    /// No TCP listener for the daemon unless TLS verification is on.
    LocalSocketOnly,
    /// A group with no members in /etc/group.
    GroupWithoutMembers {
        group: String,
    },
    /// The userns-remap user exists and has subordinate uid and gid ranges.
    UsernsSubordinateIds,
    /// The containerd socket keeps root:root (no `[grpc]` uid/gid override in config.toml).
    ContainerdSocketRoot,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum JsonExpect {
    Equals,
    AbsentOrEquals,
    NotEquals,
    Present,
    Absent,
    AbsentOrEmpty,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnitExpect {
    /// The effective (last) value equals `value`.
    Equals,
    /// Unset, or the effective value equals `value`.
    AbsentOrEquals,
    /// Some assignment lists `value` among its space-separated words.
    Lists,
    /// Set, and the effective value differs from `value`.
    SetAndNot,
}

/// One `[[cis]]` entry of the exceptions file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CisException {
    pub item: String,
    pub reason: String,
}

pub fn parse_rules(text: &str) -> Result<CisRules> {
    toml::from_str(text).context("CIS rule table has an unexpected shape")
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// What the checks look at, gathered once.
struct Inputs<'a> {
    fs: &'a dyn RootFs,
    daemon_json: Option<serde_json::Value>,
}

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

pub fn audit(fs: &dyn RootFs, rules: &CisRules, exceptions: &[CisException]) -> Result<Report> {
    let daemon_json = match fs.read(DAEMON_JSON)? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{DAEMON_JSON} in the image is not valid JSON, so dockerd would refuse to start"
            )
        })?),
    };
    if let Some(stray) = exceptions
        .iter()
        .find(|e| !rules.item.iter().any(|i| i.id == e.item))
    {
        bail!(
            "the [[cis]] exception for item '{}' names no item of the CIS rules",
            stray.item
        );
    }
    let ctx = Inputs { fs, daemon_json };
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
        Check::LocalSocketOnly => local_socket_only(ctx)?,
        Check::GroupWithoutMembers { group } => match ctx.fs.read("/etc/group")? {
            None => Err("/etc/group is not in the image".to_string()),
            Some(bytes) => group_without_members(&String::from_utf8_lossy(&bytes), group),
        },
        Check::UsernsSubordinateIds => userns_ids(ctx)?,
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

fn json_get<'a>(json: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    // Keys such as "log-opts" contain no dots; the dot only separates levels.
    dotted.split('.').try_fold(json, |v, k| v.get(k))
}

fn json_check(
    json: &serde_json::Value,
    key: &str,
    expect: JsonExpect,
    value: Option<&toml::Value>,
) -> std::result::Result<String, String> {
    let want = value.map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null));
    let got = json_get(json, key);
    let shown = |v: &serde_json::Value| v.to_string();
    let want_text = want.as_ref().map(shown).unwrap_or_default();
    let empty = |v: &serde_json::Value| match v {
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Null => true,
        _ => false,
    };
    match (expect, got) {
        (JsonExpect::Equals, Some(g)) if Some(g) == want.as_ref() => {
            Ok(format!("{key} = {}", shown(g)))
        }
        (JsonExpect::Equals, Some(g)) => Err(format!(
            "daemon.json sets {key} = {}, not {want_text}",
            shown(g)
        )),
        (JsonExpect::Equals, None) => Err(format!(
            "daemon.json does not set {key} (must be {want_text})"
        )),
        (JsonExpect::AbsentOrEquals, None) => Ok(format!("{key} left at its default")),
        (JsonExpect::AbsentOrEquals, Some(g)) if Some(g) == want.as_ref() => {
            Ok(format!("{key} = {}", shown(g)))
        }
        (JsonExpect::AbsentOrEquals, Some(g)) => Err(format!(
            "daemon.json sets {key} = {}, not {want_text}",
            shown(g)
        )),
        (JsonExpect::NotEquals, Some(g)) if Some(g) == want.as_ref() => {
            Err(format!("daemon.json sets {key} = {}", shown(g)))
        }
        (JsonExpect::NotEquals, g) => Ok(format!(
            "{key} is not {want_text}{}",
            g.map(|g| format!(" ({})", shown(g))).unwrap_or_default()
        )),
        (JsonExpect::Present, Some(g)) if !empty(g) => Ok(format!("{key} = {}", shown(g))),
        (JsonExpect::Present, _) => Err(format!("daemon.json does not set {key}")),
        (JsonExpect::Absent, None) => Ok(format!("{key} not set")),
        (JsonExpect::Absent, Some(g)) => Err(format!("daemon.json sets {key} = {}", shown(g))),
        (JsonExpect::AbsentOrEmpty, Some(g)) if !empty(g) => {
            Err(format!("daemon.json sets {key} = {}", shown(g)))
        }
        (JsonExpect::AbsentOrEmpty, _) => Ok(format!("no {key}")),
    }
}

const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Every assignment of `section.key` in the unit and its drop-ins, in the order systemd applies
/// them (an empty assignment resets the list). `None` when the unit is not in the image.
fn unit_values(
    fs: &dyn RootFs,
    unit: &str,
    section: &str,
    key: &str,
) -> Result<Option<Vec<String>>> {
    let mut main = None;
    for dir in UNIT_DIRS {
        if let Some(bytes) = fs.read(&format!("{dir}/{unit}"))? {
            main = Some(String::from_utf8_lossy(&bytes).into_owned());
            break;
        }
    }
    let Some(main) = main else { return Ok(None) };
    // Drop-ins sort by file name across folders; a name in /etc hides the same name elsewhere.
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        let folder = format!("{dir}/{unit}.d");
        for name in fs.list(&folder)?.unwrap_or_default() {
            if name.ends_with(".conf") {
                if let Some(bytes) = fs.read(&format!("{folder}/{name}"))? {
                    dropins.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    let mut values = Vec::new();
    for text in std::iter::once(&main).chain(dropins.values()) {
        for (s, k, v) in parse_unit(text) {
            if s == section && k == key {
                if v.is_empty() {
                    values.clear();
                } else {
                    values.push(v);
                }
            }
        }
    }
    Ok(Some(values))
}

/// (section, key, value) triples of a systemd unit file, continuation lines joined.
pub fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';') || line.is_empty())
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn unit_check(
    unit: &str,
    key: &str,
    values: &[String],
    expect: UnitExpect,
    want: &str,
) -> std::result::Result<String, String> {
    let last = values.last();
    match (expect, last) {
        (UnitExpect::Equals, Some(v)) if v == want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::Equals, other) => Err(format!(
            "{unit}: {key} is {}, not {want}",
            shown_unit(other)
        )),
        (UnitExpect::AbsentOrEquals, None) => Ok(format!("{unit}: {key} at its default")),
        (UnitExpect::AbsentOrEquals, Some(v)) if v == want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::AbsentOrEquals, Some(v)) => Err(format!("{unit}: {key}={v}, not {want}")),
        (UnitExpect::Lists, _)
            if values
                .iter()
                .any(|v| v.split_whitespace().any(|w| w == want)) =>
        {
            Ok(format!("{unit}: {key} lists {want}"))
        }
        (UnitExpect::Lists, _) => Err(format!("{unit}: {key} does not list {want}")),
        (UnitExpect::SetAndNot, Some(v)) if v != want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::SetAndNot, Some(v)) => Err(format!("{unit}: {key}={v}")),
        (UnitExpect::SetAndNot, None) => Err(format!("{unit}: {key} unset, so {want}")),
    }
}

fn shown_unit(v: Option<&String>) -> String {
    v.map(|v| format!("'{v}'"))
        .unwrap_or_else(|| "unset".to_string())
}

fn audit_watches(fs: &dyn RootFs) -> Result<Vec<String>> {
    let mut files = vec!["/etc/audit/audit.rules".to_string()];
    for name in fs.list("/etc/audit/rules.d")?.unwrap_or_default() {
        if name.ends_with(".rules") {
            files.push(format!("/etc/audit/rules.d/{name}"));
        }
    }
    let mut watches = Vec::new();
    for file in files {
        if let Some(bytes) = fs.read(&file)? {
            watches.extend(parse_audit_watches(&String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(watches)
}

pub fn parse_audit_watches(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("-w"))
                .then(|| words.next())
                .flatten()
                .map(str::to_string)
        })
        .collect()
}

fn local_socket_only(ctx: &Inputs) -> Result<std::result::Result<String, String>> {
    let mut hosts: Vec<String> = Vec::new();
    let mut tlsverify = false;
    if let Some(json) = &ctx.daemon_json {
        if let Some(list) = json.get("hosts").and_then(|h| h.as_array()) {
            hosts.extend(list.iter().filter_map(|h| h.as_str()).map(str::to_string));
        }
        tlsverify = json
            .get("tlsverify")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    }
    for exec in unit_values(ctx.fs, "docker.service", "Service", "ExecStart")?.unwrap_or_default() {
        let words: Vec<&str> = exec.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if let Some(h) = w.strip_prefix("--host=").or_else(|| w.strip_prefix("-H=")) {
                hosts.push(h.to_string());
            } else if (*w == "-H" || *w == "--host") && i + 1 < words.len() {
                hosts.push(words[i + 1].to_string());
            }
            tlsverify |= *w == "--tlsverify" || *w == "--tlsverify=true";
        }
    }
    let tcp: Vec<&String> = hosts.iter().filter(|h| h.starts_with("tcp://")).collect();
    Ok(match (tcp.is_empty(), tlsverify) {
        (true, _) => Ok(format!(
            "no TCP listener: daemon reachable only on {}",
            if hosts.is_empty() {
                "its default unix socket".to_string()
            } else {
                hosts.join(", ")
            }
        )),
        (false, true) => Ok(format!("TCP listener {tcp:?} with --tlsverify")),
        (false, false) => Err(format!(
            "daemon listens on {tcp:?} without TLS verification"
        )),
    })
}

fn group_without_members(group_file: &str, group: &str) -> std::result::Result<String, String> {
    for line in group_file.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == group {
            return if fields[3].trim().is_empty() {
                Ok(format!("group {group} has no members"))
            } else {
                Err(format!("group {group} has members: {}", fields[3]))
            };
        }
    }
    Err(format!("group {group} is not in /etc/group"))
}

fn userns_ids(ctx: &Inputs) -> Result<std::result::Result<String, String>> {
    let Some(remap) = ctx
        .daemon_json
        .as_ref()
        .and_then(|j| j.get("userns-remap"))
        .and_then(|v| v.as_str())
    else {
        return Ok(Err("daemon.json sets no userns-remap".to_string()));
    };
    // "default" makes dockerd create dockremap with useradd at run time, which Buildroot lacks.
    let user = remap.split(':').next().unwrap_or(remap);
    if user == "default" {
        return Ok(Err("userns-remap \"default\" needs useradd on the target; name a user shipped in the image".into()));
    }
    let mut problems = Vec::new();
    for (file, what) in [
        ("/etc/passwd", "user"),
        ("/etc/subuid", "subordinate uid range"),
        ("/etc/subgid", "subordinate gid range"),
    ] {
        let text = ctx
            .fs
            .read(file)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if !text.lines().any(|l| l.split(':').next() == Some(user)) {
            problems.push(format!("no {what} for {user} in {file}"));
        }
    }
    Ok(if problems.is_empty() {
        Ok(format!(
            "{user} has a user entry and subordinate uid/gid ranges"
        ))
    } else {
        Err(problems.join(", "))
    })
}

fn containerd_socket_root(fs: &dyn RootFs) -> Result<std::result::Result<String, String>> {
    const CONFIG: &str = "/etc/containerd/config.toml";
    let Some(bytes) = fs.read(CONFIG)? else {
        return Ok(Ok(
            "no containerd config.toml: the socket is created root:root, mode 0660".into(),
        ));
    };
    let config: toml::Table = String::from_utf8_lossy(&bytes)
        .parse()
        .with_context(|| format!("{CONFIG} in the image is not valid TOML"))?;
    let grpc = config.get("grpc").and_then(|g| g.as_table());
    let id = |k: &str| {
        grpc.and_then(|g| g.get(k))
            .and_then(|v| v.as_integer())
            .unwrap_or(0)
    };
    Ok(match (id("uid"), id("gid")) {
        (0, 0) => Ok(format!("{CONFIG} keeps the socket root:root")),
        (u, g) => Err(format!("{CONFIG} [grpc] sets the socket owner to {u}:{g}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tests::MemFs;

    fn rules() -> CisRules {
        let text = std::fs::read_to_string(
            crate::util::repo_root().join("configs/hardening/cis-docker.toml"),
        )
        .unwrap();
        parse_rules(&text).unwrap()
    }

    #[test]
    fn unit_parsing_joins_continuations_and_drop_ins_reset() {
        let mut fs = MemFs::default();
        fs.file(
            "/usr/lib/systemd/system/docker.service",
            0o644,
            "[Service]\nExecStart=/usr/bin/dockerd \\\n  -H fd://\n# c\n[Unit]\nAfter=a\n",
        );
        fs.file(
            "/etc/systemd/system/docker.service.d/10-x.conf",
            0o644,
            "[Unit]\nAfter=\nAfter=b c\n",
        );
        let exec = unit_values(&fs, "docker.service", "Service", "ExecStart")
            .unwrap()
            .unwrap();
        assert_eq!(exec, ["/usr/bin/dockerd  -H fd://"]);
        let after = unit_values(&fs, "docker.service", "Unit", "After")
            .unwrap()
            .unwrap();
        assert_eq!(after, ["b c"]);
        assert!(unit_check("u", "After", &after, UnitExpect::Lists, "c").is_ok());
        assert!(unit_check("u", "After", &after, UnitExpect::Lists, "a").is_err());
        assert!(unit_values(&fs, "nope.service", "Unit", "After")
            .unwrap()
            .is_none());
    }

    #[test]
    fn json_expectations() {
        let json: serde_json::Value = serde_json::json!({"icc": false, "log-opts": {"max-size": "10m"}, "insecure-registries": []});
        let f = toml::Value::Boolean(false);
        assert!(json_check(&json, "icc", JsonExpect::Equals, Some(&f)).is_ok());
        assert!(json_check(
            &json,
            "icc",
            JsonExpect::Equals,
            Some(&toml::Value::Boolean(true))
        )
        .is_err());
        assert!(json_check(&json, "log-opts.max-size", JsonExpect::Present, None).is_ok());
        assert!(json_check(
            &json,
            "insecure-registries",
            JsonExpect::AbsentOrEmpty,
            None
        )
        .is_ok());
        assert!(json_check(&json, "experimental", JsonExpect::AbsentOrEquals, Some(&f)).is_ok());
        assert!(json_check(&json, "userns-remap", JsonExpect::Present, None).is_err());
    }

    #[test]
    fn audit_watches_and_groups() {
        assert_eq!(
            parse_audit_watches("# x\n-w /usr/bin/dockerd -k docker\n-a always,exit\n"),
            ["/usr/bin/dockerd"]
        );
        assert!(group_without_members("docker:x:101:\n", "docker").is_ok());
        assert!(group_without_members("docker:x:101:alice\n", "docker").is_err());
        assert!(group_without_members("root:x:0:\n", "docker").is_err());
    }

    /// The shipped overlay, loaded into memory, passes every CIS item that Berth claims.
    #[test]
    fn shipped_overlay_and_a_bad_daemon_json() {
        let overlay = crate::util::repo_root().join("board/odroid-xu4/rootfs-overlay");
        let mut fs = MemFs::default();
        let mut stack = vec![overlay.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = format!("/{}", path.strip_prefix(&overlay).unwrap().display());
                    fs.file(&rel, 0o644, &std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        // Buildroot writes /etc/passwd from the users tables (berth-data-crypt adds dockremap).
        fs.file(
            "/etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\ndockremap:x:1000:1000::/:/bin/false\n",
        );
        let rules = rules();
        let report = audit(&fs, &rules, &[]).unwrap();
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
        let report = audit(&fs, &rules, &[]).unwrap();
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
        let report = audit(&fs, &rules, &[why("2.2")]).unwrap();
        let item = report
            .findings
            .iter()
            .find(|f| f.subject == "CIS 2.2")
            .unwrap();
        assert_eq!(item.verdict, Verdict::Exception("test".into()));
        let err = audit(&fs, &rules, &[why("9.9")]).unwrap_err();
        assert!(err.to_string().contains("9.9"));
    }
}
