//! The CIS rule table (`configs/hardening/cis-docker.toml`): items and the kinds of check.

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::audit::report::Severity;

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
    /// `path` exists (links resolved as the running system does) when the kernel config
    /// (`<output>/build/linux-<version>/.config`) enables `option`: a kernel feature whose
    /// userspace half must ship.
    ExistsWhenKernel {
        option: String,
        path: String,
    },
    /// No unit or drop-in in the image has a command (`Exec*=`) holding one of `words`, unless
    /// its unit gives the reason under `[Unit]` `reason_key` (as the units of apps.toml do).
    UnitsWithout {
        words: Vec<String>,
        reason_key: String,
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
    /// No assignment has a word (quotes removed) that starts with `value`.
    LacksPrefix,
}

pub fn parse_rules(text: &str) -> Result<CisRules> {
    toml::from_str(text).context("CIS rule table has an unexpected shape")
}
