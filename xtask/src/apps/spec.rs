//! `apps.toml`: the containers a board runs, parsed and checked without any I/O of its own (an
//! app's AppArmor profile file is read through the caller's reader).
//!
//! Every refusal names the file, the line and the field, so a mistake is found where it was
//! made: serde (`deny_unknown_fields`) reports unknown keys and wrong types with their line, and
//! [`toml::Spanned`] gives the line of each value checked here.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{bail, Result};
use serde::Deserialize;
use toml::Spanned;

use super::apparmor::{declared_profile, Profile, DOCKER_DEFAULT, UNCONFINED};
pub use super::hardening::{AppArmor, Hardening, Namespace, Network, Seccomp, Setting, Userns};
use super::values::{
    is_clean_absolute, parse_image, parse_memory, parse_port, parse_restart, parse_volume,
};
pub use super::values::{ImageRef, Port, Restart, Volume};

/// Reads a file named in `apps.toml` (an AppArmor profile) by its path relative to `apps.toml`.
pub type ReadFile<'a> = &'a dyn Fn(&str) -> Result<String>;

/// What the parser needs to know about the board the apps run on.
#[derive(Debug, Clone)]
pub struct BoardLimits {
    /// RAM, in bytes; the board has no swap.
    pub memory_bytes: u64,
    pub cpus: u32,
    /// The folder on the encrypted data partition that bind-mounted volumes must lie under.
    pub volume_root: String,
}

/// Limits given to an app that declares none: eight such apps fit in 2 GiB with room for the host.
pub const DEFAULT_MEMORY: &str = "192m";
pub const DEFAULT_PIDS: u32 = 128;
pub const DEFAULT_CPUS: f64 = 1.0;
/// CIS 5.15: restart on failure, at most this many times.
pub const DEFAULT_RESTARTS: u32 = 5;
/// Docker refuses a memory limit below 6 MiB.
const MIN_MEMORY: u64 = 6 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    image: Spanned<String>,
    #[serde(default)]
    command: Vec<String>,
    memory: Option<Spanned<String>>,
    pids: Option<Spanned<u32>>,
    cpus: Option<Spanned<f64>>,
    restart: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    volumes: Vec<Spanned<String>>,
    #[serde(default)]
    tmpfs: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    links: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    read_only: bool,
    #[serde(default)]
    cap_add: Vec<Spanned<String>>,
    #[serde(default)]
    privileged: bool,
    #[serde(default = "yes")]
    no_new_privileges: bool,
    #[serde(default)]
    network: Network,
    #[serde(default)]
    pid: Namespace,
    #[serde(default)]
    ipc: Namespace,
    #[serde(default)]
    seccomp: Seccomp,
    #[serde(default)]
    userns: Userns,
    apparmor: Option<Spanned<String>>,
    #[serde(default)]
    reasons: BTreeMap<Spanned<String>, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u32,
    pub cpus: f64,
}

/// One declared app, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: String,
    /// Line of its `[[app]]` table, for audit findings.
    pub line: usize,
    pub image: ImageRef,
    pub command: Vec<String>,
    pub limits: Limits,
    pub restart: Restart,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub links: Vec<String>,
    pub hardening: Hardening,
    pub reasons: BTreeMap<Setting, String>,
}

impl App {
    /// How this app weakens `setting`, or `None` when it keeps the hardened default.
    pub fn weakening(&self, setting: Setting) -> Option<String> {
        let h = &self.hardening;
        match setting {
            Setting::ReadOnly => (!h.read_only).then(|| "writable root filesystem".into()),
            Setting::CapAdd => {
                (!h.cap_add.is_empty()).then(|| format!("adds {}", h.cap_add.join(", ")))
            }
            Setting::Privileged => h.privileged.then(|| "privileged".into()),
            Setting::NoNewPrivileges => {
                (!h.no_new_privileges).then(|| "may gain privileges (setuid)".into())
            }
            Setting::Network => (h.network == Network::Host).then(|| "host network".into()),
            Setting::Pid => (h.pid == Namespace::Host).then(|| "host PID namespace".into()),
            Setting::Ipc => (h.ipc == Namespace::Host).then(|| "host IPC namespace".into()),
            Setting::Seccomp => {
                (h.seccomp == Seccomp::Unconfined).then(|| "seccomp unconfined".into())
            }
            Setting::Userns => (h.userns == Userns::Host).then(|| "host user namespace".into()),
            Setting::AppArmor => match (&h.apparmor, h.privileged) {
                (AppArmor::Unconfined, _) => Some("AppArmor unconfined".into()),
                // moby's saveAppArmorConfig: a privileged container runs unconfined.
                (_, true) => {
                    Some("AppArmor unconfined, as Docker runs privileged containers".into())
                }
                _ => None,
            },
            Setting::Restart => match self.restart {
                Restart::Always => Some("restarts always".into()),
                Restart::OnFailure(n) if n > DEFAULT_RESTARTS => {
                    Some(format!("restarts up to {n} times"))
                }
                _ => None,
            },
            Setting::Memory | Setting::Cpus | Setting::Pids => None,
        }
    }

    /// The reason given for weakening `setting`. A privileged app is unconfined by Docker, so
    /// its reason for `privileged` covers `apparmor` too unless it gives one of its own.
    pub fn reason(&self, setting: Setting) -> Option<&str> {
        let own = self.reasons.get(&setting).map(String::as_str);
        let privileged = || {
            (setting == Setting::AppArmor && self.hardening.privileged)
                .then(|| self.reasons.get(&Setting::Privileged).map(String::as_str))
                .flatten()
        };
        own.or_else(privileged)
    }

    /// The profile Docker confines the container with (`--security-opt apparmor=`).
    pub fn apparmor_profile(&self) -> &str {
        if self.hardening.privileged {
            UNCONFINED
        } else {
            self.hardening.apparmor.profile_name()
        }
    }
}

/// Parse and check `apps.toml`; `name` is the file name used in messages. Its apps name no
/// profile file ([`parse_reading`] reads them).
pub fn parse(text: &str, name: &str, board: &BoardLimits) -> Result<Vec<App>> {
    let no_files = |file: &str| -> Result<String> {
        bail!("{file} cannot be read: only an apps.toml read from a folder names profile files")
    };
    parse_reading(text, name, board, &no_files)
}

/// [`parse`], reading the profile files the apps name with `read`.
pub fn parse_reading(
    text: &str,
    name: &str,
    board: &BoardLimits,
    read: ReadFile,
) -> Result<Vec<App>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(text, s.start)))
            .unwrap_or_default();
        anyhow::anyhow!("{name}{at}: {}", e.message())
    })?;
    let at = |span: Range<usize>| format!("{name}:{}", line_of(text, span.start));
    let mut apps: Vec<App> = Vec::new();
    let mut host_ports: BTreeMap<(String, u16), String> = BTreeMap::new();
    for spanned in raw.app {
        let line = line_of(text, spanned.span().start);
        let raw = spanned.into_inner();
        let app = check_app(raw, &at, line, board, &apps, &mut host_ports, read)?;
        apps.push(app);
    }
    Ok(apps)
}

fn check_app(
    raw: RawApp,
    at: &dyn Fn(Range<usize>) -> String,
    line: usize,
    board: &BoardLimits,
    earlier: &[App],
    host_ports: &mut BTreeMap<(String, u16), String>,
    read: ReadFile,
) -> Result<App> {
    let name = raw.name.get_ref().clone();
    let field = |span: Range<usize>, key: &str| format!("{}: app \"{name}\", `{key}`", at(span));
    if !valid_name(&name) {
        bail!(
            "{}: an app name is 1-32 of a-z, 0-9 and - (starting with a letter or digit), as it names a unit and a container",
            field(raw.name.span(), "name")
        );
    }
    if earlier.iter().any(|a| a.name == name) {
        bail!(
            "{}: the name is declared twice",
            field(raw.name.span(), "name")
        );
    }
    let image = parse_image(raw.image.get_ref())
        .map_err(|why| anyhow::anyhow!("{}: {why}", field(raw.image.span(), "image")))?;
    let memory_bytes = match &raw.memory {
        None => parse_memory(DEFAULT_MEMORY).expect("the default memory parses"),
        Some(m) => parse_memory(m.get_ref())
            .map_err(|why| anyhow::anyhow!("{}: {why}", field(m.span(), "memory")))?,
    };
    let memory_span = raw
        .memory
        .as_ref()
        .map(|m| m.span())
        .unwrap_or(raw.name.span());
    if memory_bytes > board.memory_bytes {
        bail!(
            "{}: {memory_bytes} bytes is over the board's {} bytes of memory (and it has no swap)",
            field(memory_span, "memory"),
            board.memory_bytes
        );
    }
    if memory_bytes < MIN_MEMORY {
        bail!("{}: Docker needs at least 6m", field(memory_span, "memory"));
    }
    let pids = raw.pids.as_ref().map_or(DEFAULT_PIDS, |p| *p.get_ref());
    if let Some(p) = raw.pids.as_ref().filter(|p| *p.get_ref() == 0) {
        bail!(
            "{}: 0 would mean no limit; give a number of processes",
            field(p.span(), "pids")
        );
    }
    let cpus = raw.cpus.as_ref().map_or(DEFAULT_CPUS, |c| *c.get_ref());
    if let Some(c) = &raw.cpus {
        if !(0.01..=f64::from(board.cpus)).contains(&cpus) {
            bail!(
                "{}: {cpus} is not between 0.01 and the board's {} CPUs",
                field(c.span(), "cpus"),
                board.cpus
            );
        }
    }
    let restart = match &raw.restart {
        None => Restart::OnFailure(DEFAULT_RESTARTS),
        Some(r) => parse_restart(r.get_ref())
            .map_err(|why| anyhow::anyhow!("{}: {why}", field(r.span(), "restart")))?,
    };
    let mut ports = Vec::new();
    for p in &raw.ports {
        let port = parse_port(p.get_ref())
            .map_err(|why| anyhow::anyhow!("{}: {why}", field(p.span(), "ports")))?;
        let key = (port.protocol.clone(), port.host);
        if let Some(owner) = host_ports.insert(key, name.clone()) {
            bail!(
                "{}: host port {}/{} is already published by app \"{owner}\"",
                field(p.span(), "ports"),
                port.host,
                port.protocol
            );
        }
        ports.push(port);
    }
    let mut volumes = Vec::new();
    for v in &raw.volumes {
        volumes.push(
            parse_volume(v.get_ref(), &board.volume_root)
                .map_err(|why| anyhow::anyhow!("{}: {why}", field(v.span(), "volumes")))?,
        );
    }
    for t in &raw.tmpfs {
        if !is_clean_absolute(t.get_ref()) {
            bail!(
                "{}: {:?} is not an absolute path inside the container",
                field(t.span(), "tmpfs"),
                t.get_ref()
            );
        }
    }
    for l in &raw.links {
        if !earlier.iter().any(|a| &a.name == l.get_ref()) {
            bail!(
                "{}: \"{}\" is not an app declared above this one (links start after their target)",
                field(l.span(), "links"),
                l.get_ref()
            );
        }
    }
    if let Some(key) = raw.env.keys().find(|k| k.is_empty() || k.contains('=')) {
        bail!(
            "{}: app \"{name}\", `env`: {key:?} is not a variable name",
            at(raw.name.span())
        );
    }
    let mut cap_add = Vec::new();
    for c in &raw.cap_add {
        let cap = c.get_ref().trim_start_matches("CAP_").to_string();
        if cap == "ALL"
            || cap.is_empty()
            || !cap.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            bail!(
                "{}: {:?} is not one capability name (such as NET_BIND_SERVICE; ALL is refused)",
                field(c.span(), "cap_add"),
                c.get_ref()
            );
        }
        cap_add.push(cap);
    }
    let apparmor = match &raw.apparmor {
        None => AppArmor::DockerDefault,
        Some(a) => {
            let field = field(a.span(), "apparmor");
            let apparmor = check_apparmor(a.get_ref(), &field, earlier, read)?;
            if raw.privileged && matches!(apparmor, AppArmor::Profile(_)) {
                bail!("{field}: Docker runs a privileged container unconfined, so its profile would never apply");
            }
            apparmor
        }
    };
    let mut app = App {
        name: name.clone(),
        line,
        image,
        command: raw.command,
        limits: Limits {
            memory_bytes,
            pids,
            cpus,
        },
        restart,
        ports,
        volumes,
        tmpfs: raw.tmpfs.into_iter().map(Spanned::into_inner).collect(),
        env: raw.env,
        links: raw.links.into_iter().map(Spanned::into_inner).collect(),
        hardening: Hardening {
            read_only: raw.read_only,
            cap_add,
            privileged: raw.privileged,
            no_new_privileges: raw.no_new_privileges,
            network: raw.network,
            pid: raw.pid,
            ipc: raw.ipc,
            seccomp: raw.seccomp,
            userns: raw.userns,
            apparmor,
        },
        reasons: BTreeMap::new(),
    };
    if app.hardening.network == Network::Host && !app.ports.is_empty() {
        bail!(
            "{}: ports are not published on the host network (the app binds them itself)",
            field(raw.ports[0].span(), "ports")
        );
    }
    for (key, reason) in raw.reasons {
        let setting = Setting::WEAKENABLE
            .iter()
            .find(|s| s.key() == key.get_ref())
            .copied();
        let Some(setting) = setting else {
            let keys: Vec<_> = Setting::WEAKENABLE.iter().map(|s| s.key()).collect();
            bail!(
                "{}: `{}` is not a setting that can be weakened ({})",
                field(key.span(), "reasons"),
                key.get_ref(),
                keys.join(", ")
            );
        };
        if app.weakening(setting).is_none() {
            bail!(
                "{}: a reason is given for `{}`, but the app keeps its hardened default",
                field(key.span(), "reasons"),
                key.get_ref()
            );
        }
        if reason.trim().is_empty() {
            bail!(
                "{}: the reason for `{}` is empty",
                field(key.span(), "reasons"),
                key.get_ref()
            );
        }
        app.reasons.insert(setting, reason);
    }
    Ok(app)
}

/// `docker-default`, `unconfined`, or a profile file (relative to `apps.toml`) declaring one
/// profile that no earlier app's file declares otherwise; `field` names the value in messages.
fn check_apparmor(value: &str, field: &str, earlier: &[App], read: ReadFile) -> Result<AppArmor> {
    match value {
        DOCKER_DEFAULT => return Ok(AppArmor::DockerDefault),
        UNCONFINED => return Ok(AppArmor::Unconfined),
        _ => {}
    }
    let text = read(value).map_err(|e| {
        anyhow::anyhow!(
            "{field}: {value:?} is neither {DOCKER_DEFAULT}, {UNCONFINED} nor a readable profile file (relative to apps.toml): {e:#}"
        )
    })?;
    let name = declared_profile(&text)
        .map_err(|why| anyhow::anyhow!("{field}: the profile file {value}: {why}"))?;
    let clash = earlier.iter().find(|a| {
        matches!(&a.hardening.apparmor, AppArmor::Profile(p) if p.name == name && p.text != text)
    });
    if let Some(other) = clash {
        bail!(
            "{field}: the profile file {value} declares profile {name:?}, as app \"{}\" declares another: one would replace the other when loaded",
            other.name
        );
    }
    Ok(AppArmor::Profile(Profile {
        file: value.to_string(),
        name,
        text,
    }))
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
#[path = "spec_tests.rs"]
pub(crate) mod tests;
