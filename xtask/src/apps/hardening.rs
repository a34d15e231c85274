//! The hardening an app declares: Docker's hardened defaults, the values that weaken them, and
//! the keys a weakening's reason is given under. Pure.

use serde::Deserialize;

pub use super::apparmor::AppArmor;

/// The container's network: Docker's default bridge (where `icc` is off), none, or the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Bridge,
    None,
    Host,
}

/// A PID or IPC namespace: the container's own, or the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    #[default]
    Private,
    Host,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    Unconfined,
}

/// User namespaces: as the daemon has them (`userns-remap`), or the host's (`--userns=host`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Userns {
    #[default]
    Daemon,
    Host,
}

/// A hardened default an app may weaken, named as its key in `apps.toml`; weakening one needs a
/// reason under `[app.reasons]` with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    ReadOnly,
    CapAdd,
    Privileged,
    NoNewPrivileges,
    Network,
    Pid,
    Ipc,
    Seccomp,
    Userns,
    #[serde(rename = "apparmor")]
    AppArmor,
    Restart,
    /// The limits: always set and bounded by the board, so they cannot be weakened.
    Memory,
    Cpus,
    Pids,
}

impl Setting {
    /// The settings a reason may be given for.
    pub const WEAKENABLE: &[Setting] = &[
        Setting::ReadOnly,
        Setting::CapAdd,
        Setting::Privileged,
        Setting::NoNewPrivileges,
        Setting::Network,
        Setting::Pid,
        Setting::Ipc,
        Setting::Seccomp,
        Setting::Userns,
        Setting::AppArmor,
        Setting::Restart,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Setting::ReadOnly => "read_only",
            Setting::CapAdd => "cap_add",
            Setting::Privileged => "privileged",
            Setting::NoNewPrivileges => "no_new_privileges",
            Setting::Network => "network",
            Setting::Pid => "pid",
            Setting::Ipc => "ipc",
            Setting::Seccomp => "seccomp",
            Setting::Userns => "userns",
            Setting::AppArmor => "apparmor",
            Setting::Restart => "restart",
            Setting::Memory => "memory",
            Setting::Cpus => "cpus",
            Setting::Pids => "pids",
        }
    }
}

/// The hardening settings as declared (defaults where the file says nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    pub network: Network,
    pub pid: Namespace,
    pub ipc: Namespace,
    pub seccomp: Seccomp,
    pub userns: Userns,
    pub apparmor: AppArmor,
}
