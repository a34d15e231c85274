//! `cargo xtask audit kernel`: judge a resolved kernel `.config`, the kernel command line and the
//! sysctl.d settings against the rule data in `configs/hardening/kernel-rules.toml`, with every
//! deliberate departure taken from the `[[kernel]]` section of `configs/hardening/exceptions.toml`.
//!
//! The rule engine ([`evaluate`]) is pure: rules + resolved config + command line + sysctl +
//! exceptions in, [`Report`] out. Only the functions that read files do I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use serde::Deserialize;

use crate::kconfig::{Resolved, Value};
use crate::report::{exceptions_path, load_exceptions, Finding, Report, Severity, Verdict};

#[derive(Args)]
pub struct KernelArgs {
    /// The resolved kernel .config to audit (Buildroot: `<output>/build/linux-<version>/.config`).
    #[arg(required_unless_present = "linux")]
    config: Option<PathBuf>,
    /// Instead of a .config: resolve exynos_defconfig + Berth's fragments in this Linux 6.12
    /// source tree (olddefconfig, O= a temporary folder), check that every fragment line
    /// survived, and audit the result with the board's cmdline and sysctl.d (as `cargo xtask check`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "cmdline", "sysctl", "rules", "json"])]
    linux: Option<PathBuf>,
    /// The kernel command line file (one line), e.g. board/odroid-xu4/cmdline.txt.
    #[arg(long)]
    cmdline: Option<PathBuf>,
    /// A sysctl.d folder; repeat for several (a later folder's file overrides an earlier one of the
    /// same name, as /etc/sysctl.d overrides /usr/lib/sysctl.d).
    #[arg(long)]
    sysctl: Vec<PathBuf>,
    /// Rule file (default: configs/hardening/kernel-rules.toml in the repository).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Print machine-readable JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `json` is the parent's `audit --json`, which counts as much as the sub-command's own.
pub fn run(args: KernelArgs, json: bool) -> Result<()> {
    if let Some(tree) = &args.linux {
        return audit_linux_tree(tree);
    }
    let config = args.config.expect("clap requires a config without --linux");
    let sysctl = if args.sysctl.is_empty() {
        None
    } else {
        Some(args.sysctl.as_slice())
    };
    let report = audit_files(
        &config,
        args.cmdline.as_deref(),
        sysctl,
        args.rules.as_deref(),
        Toolchain::Target,
    )?;
    report.emit(args.json || json)
}

/// `--linux`: Berth's kernel config resolved in `tree` as Buildroot does
/// ([`crate::kconfig::resolve()`]), every fragment line kept, audited with the board's command
/// line and sysctl.d (`cargo xtask check` runs the same as its kernel stage).
fn audit_linux_tree(tree: &Path) -> Result<()> {
    use crate::kconfig::{arm_cross_compile, arm_make_args, plan};
    let repo = crate::project::Repo::checkout();
    let cross = arm_cross_compile();
    let toolchain = match cross {
        Some(_) => Toolchain::Target,
        None => Toolchain::Host,
    };
    let keep = crate::util::cache_dir()?.join("kernel-check");
    let resolved = plan::Plan::read(&repo, plan::Package::Linux)?.resolve(
        tree,
        &arm_make_args(cross.as_deref()),
        &keep,
    )?;
    resolved.ensure_kept(tree)?;
    println!("kernel: every fragment line survived olddefconfig");
    let board = crate::project::default_board().dir(&repo);
    let report = audit_files(
        &resolved.config_path,
        Some(&board.join("cmdline.txt")),
        Some(&[board.join("rootfs-overlay/etc/sysctl.d")]),
        None,
        toolchain,
    )?;
    print!("{}", report.render_attention());
    report.verdict()
}

/// Audit the kernel config Buildroot resolved in `output` (with the board's cmdline and sysctl).
/// Called by `audit::audit_output` at the end of `cargo xtask image`.
pub fn audit_buildroot_output(output: &Path) -> Result<Report> {
    let config = buildroot_kernel_config(output)?;
    let cmdline = crate::project::default_board()
        .dir(&crate::project::Repo::checkout())
        .join("cmdline.txt");
    let target = output.join("target");
    // systemd's search path, lowest priority first (a folder that is a link, as /lib with a
    // merged /usr, repeats the same files, which changes nothing).
    let sysctl = [
        "lib/sysctl.d",
        "usr/lib/sysctl.d",
        "usr/local/lib/sysctl.d",
        "run/sysctl.d",
        "etc/sysctl.d",
    ]
    .map(|dir| target.join(dir));
    audit_files(
        &config,
        Some(&cmdline),
        Some(&sysctl),
        None,
        Toolchain::Target,
    )
}

/// `<output>/build/linux-<version>/.config`; exactly one must exist.
fn buildroot_kernel_config(output: &Path) -> Result<PathBuf> {
    let build = output.join("build");
    let entries = std::fs::read_dir(&build).with_context(|| {
        format!(
            "could not list {} (is {} a Buildroot output folder?)",
            build.display(),
            output.display()
        )
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("could not list {}", build.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // linux-headers-* and linux-firmware-* are other packages; the kernel is linux-<digit>...
        let is_kernel = name
            .strip_prefix("linux-")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) || rest == "custom");
        if is_kernel && entry.path().join(".config").is_file() {
            found.push(entry.path().join(".config"));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no resolved kernel config (build/linux-<version>/.config) under {}",
            output.display()
        ),
        _ => bail!(
            "several kernel build folders under {}: {}; remove the stale ones",
            build.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Which compiler resolved the config: compiler-probed options (such as the ARM per-task stack
/// protector) can only be judged on a config resolved with an ARM compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    Target,
    /// Resolved with the host's compiler: rules marked `compiler_probe` drop to recommended.
    Host,
}

/// Read every input and audit it; `rules` defaults to the repository's rule file.
pub fn audit_files(
    config: &Path,
    cmdline: Option<&Path>,
    sysctl_dirs: Option<&[PathBuf]>,
    rules: Option<&Path>,
    toolchain: Toolchain,
) -> Result<Report> {
    let rules_path = rules.map(Path::to_path_buf).unwrap_or_else(rules_path);
    let rules = load_rules(&rules_path)?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("could not read the kernel config {}", config.display()))?;
    let resolved = Resolved::parse(&text, &config.display().to_string())?;
    let cmdline = cmdline
        .map(|path| {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("could not read the kernel command line {}", path.display())
            })?;
            parse_cmdline(&text).with_context(|| {
                format!("{} is not a one-line kernel command line", path.display())
            })
        })
        .transpose()?;
    let sysctl = sysctl_dirs.map(read_sysctl_dirs).transpose()?;
    let exceptions: Vec<Exception> = load_exceptions(&exceptions_path(), "kernel")?;
    let title = format!("Kernel audit of {}", config.display());
    evaluate(
        &title,
        &rules,
        &Inputs {
            config: &resolved,
            cmdline: cmdline.as_ref(),
            sysctl: sysctl.as_ref(),
        },
        &exceptions,
        toolchain,
    )
}

pub fn rules_path() -> PathBuf {
    crate::util::repo_root().join("configs/hardening/kernel-rules.toml")
}

pub fn load_rules(path: &Path) -> Result<Rules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the kernel rule file {}", path.display()))?;
    parse_rules(&text)
        .with_context(|| format!("{} is not a valid kernel rule file", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Rule data

/// Where a rule comes from; the table groups findings by it.
pub const SOURCES: &[&str] = &[
    "docker-required",
    "docker-optional",
    "kspp",
    "self-protection",
    "attack-surface",
    "network",
    "board",
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

/// Fields every rule kind shares (repeated in each kind: serde cannot combine `flatten` with
/// `deny_unknown_fields`, and a misspelt field must be an error).
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    pub source: &'a str,
    pub note: Option<&'a str>,
    pub severity: Severity,
    /// Kconfig conditions (`CONFIG_X=v`, `n` meaning not set) any one of which also satisfies
    /// the rule, e.g. `CONFIG_MODULES=n` for module signing.
    pub alternatives: &'a [String],
}

macro_rules! rule_meta {
    ($($kind:ident),*) => {$(
        impl $kind {
            pub fn meta(&self) -> Meta<'_> {
                Meta { source: &self.source, note: self.note.as_deref(), severity: self.severity, alternatives: &self.alternatives }
            }
        }
    )*};
}
rule_meta!(KconfigRule, CmdlineRule, SysctlRule);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KconfigRule {
    pub option: String,
    /// Allowed values: `y`, `m`, `n` (not set or absent), a number or a string as written.
    #[serde(default)]
    pub want: Vec<String>,
    /// The numeric value must be at least this.
    #[serde(default)]
    pub min: Option<i64>,
    /// The comma-separated string value must hold every one of these items.
    #[serde(default)]
    pub contains: Vec<String>,
    /// The option's availability depends on what the compiler supports (probed by Kconfig).
    #[serde(default)]
    pub compiler_probe: bool,
    pub source: String,
    pub severity: Severity,
    /// Kconfig conditions that also satisfy the rule (see [`Meta`]).
    #[serde(default, rename = "or")]
    pub alternatives: Vec<String>,
    /// Why the rule exists or what it protects, for the documentation.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdlineRule {
    pub param: String,
    /// Allowed values (`""` for a bare flag). Empty: the parameter only has to be present.
    #[serde(default)]
    pub want: Vec<String>,
    /// The parameter must not appear at all.
    #[serde(default)]
    pub absent: bool,
    /// Leaving the parameter out is fine (the kernel default, checked by a kconfig rule, holds).
    #[serde(default)]
    pub allow_absent: bool,
    pub source: String,
    pub severity: Severity,
    /// Kconfig conditions that also satisfy the rule (see [`Meta`]).
    #[serde(default, rename = "or")]
    pub alternatives: Vec<String>,
    /// Why the rule exists or what it protects, for the documentation.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlRule {
    pub key: String,
    pub want: Vec<String>,
    pub source: String,
    pub severity: Severity,
    /// Kconfig conditions that also satisfy the rule (see [`Meta`]).
    #[serde(default, rename = "or")]
    pub alternatives: Vec<String>,
    /// Why the rule exists or what it protects, for the documentation.
    #[serde(default)]
    pub note: Option<String>,
}

/// One `[[kernel]]` entry of the exceptions file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// `CONFIG_X`, `cmdline:param` or `sysctl:key`, as the findings name their subject.
    pub subject: String,
    /// Only the rule from this source, when several sources judge the subject (USER_NS is
    /// wanted by Docker and unwanted by KSPP).
    #[serde(default)]
    pub source: Option<String>,
    pub reason: String,
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
        check_meta(&r.option, &r.meta())?;
        ensure!(
            subjects.insert((r.option.clone(), r.source.clone())),
            "two {} rules for {}",
            r.source,
            r.option
        );
    }
    for r in &rules.cmdline {
        ensure!(
            !r.param.is_empty() && !r.param.contains(char::is_whitespace),
            "bad cmdline parameter '{}'",
            r.param
        );
        ensure!(
            !(r.absent && (r.allow_absent || !r.want.is_empty())),
            "cmdline rule {}: absent excludes want and allow_absent",
            r.param
        );
        let subject = format!("cmdline:{}", r.param);
        check_meta(&subject, &r.meta())?;
        ensure!(
            subjects.insert((subject.clone(), r.source.clone())),
            "two {} rules for {subject}",
            r.source
        );
    }
    for r in &rules.sysctl {
        ensure!(!r.want.is_empty(), "sysctl rule {} needs want", r.key);
        let subject = format!("sysctl:{}", r.key);
        check_meta(&subject, &r.meta())?;
        ensure!(
            subjects.insert((subject.clone(), r.source.clone())),
            "two {} rules for {subject}",
            r.source
        );
    }
    Ok(rules)
}

fn check_meta(subject: &str, meta: &Meta<'_>) -> Result<()> {
    ensure!(
        SOURCES.contains(&meta.source),
        "{subject}: unknown source '{}' (one of {})",
        meta.source,
        SOURCES.join(", ")
    );
    for alt in meta.alternatives {
        parse_condition(alt).with_context(|| format!("{subject}: bad 'or' condition"))?;
    }
    Ok(())
}

/// `CONFIG_X=v` into its symbol and wanted value.
fn parse_condition(text: &str) -> Result<(&str, &str)> {
    match text.split_once('=') {
        Some((sym, val)) if sym.starts_with("CONFIG_") && !val.is_empty() => Ok((sym, val)),
        _ => bail!("'{text}' is not CONFIG_SYMBOL=value"),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line and sysctl inputs

/// Kernel parameters, last occurrence winning; names use `_` (the kernel treats `-` alike).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmdline(BTreeMap<String, String>);

impl Cmdline {
    pub fn get(&self, param: &str) -> Option<&str> {
        self.0.get(&normalize_param(param)).map(String::as_str)
    }
}

fn normalize_param(name: &str) -> String {
    name.replace('-', "_")
}

/// Parse a one-line command line; double quotes may hold spaces (`param="a b"`).
pub fn parse_cmdline(text: &str) -> Result<Cmdline> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1,
        "expected exactly one non-empty line, found {}",
        lines.len()
    );
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in lines[0].chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    ensure!(!quoted, "unterminated quote");
    if !word.is_empty() {
        words.push(word);
    }
    let mut params = BTreeMap::new();
    for w in words {
        let (name, value) = w.split_once('=').unwrap_or((w.as_str(), ""));
        params.insert(normalize_param(name), value.to_string());
    }
    Ok(Cmdline(params))
}

/// The sysctl.d settings as systemd-sysctl applies them (sysctl.d(5), systemd 257/258):
/// - `key = value` sets a key; a later assignment of the same key (same or later file) wins;
/// - a leading `-` on an assignment only means "ignore a failure to write it";
/// - a key with `*`, `?` or `[` is a glob over all keys; a key assigned by name is never set by
///   a glob, whatever the order, and a bare `-key` (no `=`) excludes that key from every glob,
///   leaving the kernel's default (systemd's 50-default.conf does this for `...all.rp_filter`).
///
/// Keys are kept with `.` separators; a key written with `/` separators is converted.
#[derive(Debug, Default, Clone)]
pub struct Sysctl {
    /// Keys set or excluded by name → (value, `None` for an exclusion; `file:line`).
    named: BTreeMap<String, (Option<String>, String)>,
    /// Glob assignments in the order they apply (a re-assigned pattern moves to the end).
    globs: Vec<(String, String, String)>,
}

impl Sysctl {
    /// The effective value of `key` and where it is set; `None` when no file sets it (or it is
    /// excluded from the globs that would), so the kernel default applies.
    pub fn get(&self, key: &str) -> Option<(String, String)> {
        let key = normalize_sysctl_key(key);
        if let Some((value, origin)) = self.named.get(&key) {
            return value.clone().map(|v| (v, origin.clone()));
        }
        self.globs
            .iter()
            .rev()
            .find(|(pattern, _, _)| glob_match(pattern, &key))
            .map(|(_, v, origin)| (v.clone(), origin.clone()))
    }

    /// Why `key` has no value from sysctl.d, for messages.
    pub fn why_unset(&self, key: &str) -> String {
        match self.named.get(&normalize_sysctl_key(key)) {
            Some((None, origin)) => {
                format!("excluded from sysctl.d globs ({origin}): kernel default")
            }
            _ => "not set in any sysctl.d file".to_string(),
        }
    }
}

/// systemd's sysctl_normalize: a key whose first separator is `/` is a path, where `.` is a
/// literal dot (VLAN interface names); turn it into the dotted form, `/` standing for that dot.
fn normalize_sysctl_key(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// fnmatch(3) without flags, as systemd matches sysctl globs: `*`, `?` and `[...]` classes.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match p[pi..].iter().skip(2).position(|&c| c == ']') {
                Some(end) => {
                    let class = &p[pi + 1..pi + 3 + end - 1];
                    let (negate, class) = match class.first() {
                        Some('!') | Some('^') => (true, &class[1..]),
                        _ => (false, class),
                    };
                    let mut hit = false;
                    let mut i = 0;
                    while i < class.len() {
                        if i + 2 < class.len() && class[i + 1] == '-' {
                            hit |= class[i] <= t[ti] && t[ti] <= class[i + 2];
                            i += 3;
                        } else {
                            hit |= class[i] == t[ti];
                            i += 1;
                        }
                    }
                    (hit != negate).then_some(end + 3)
                }
                None => (t[ti] == '[').then_some(1),
            },
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match (step, backtrack) {
            (Some(n), _) => {
                pi += n;
                ti += 1;
            }
            (None, Some((star, at))) => {
                pi = star + 1;
                ti = at + 1;
                backtrack = Some((star, at + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Apply sysctl.d files (already in systemd's order: by file name) to one set of settings.
pub fn parse_sysctl<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Sysctl> {
    let mut sysctl = Sysctl::default();
    for (name, text) in files {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let origin = format!("{name}:{}", index + 1);
            let (key, value) = match line.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim().to_string())),
                // `-key` alone: exclude the key from globs.
                None if line.starts_with('-') => (line, None),
                None => bail!(
                    "{origin}: expected 'key = value' or '-key' (an exclusion), found '{line}'"
                ),
            };
            // A leading '-' on an assignment only tells systemd-sysctl to ignore a write failure.
            let key = normalize_sysctl_key(key.strip_prefix('-').unwrap_or(key).trim());
            ensure!(!key.is_empty(), "{origin}: empty key");
            if key.contains(['*', '?', '[']) {
                let Some(value) = value else {
                    bail!("{origin}: '-{key}' excludes a glob, which sysctl.d does not support");
                };
                sysctl.globs.retain(|(p, _, _)| *p != key);
                sysctl.globs.push((key, value, origin));
            } else {
                sysctl.named.insert(key, (value, origin));
            }
        }
    }
    Ok(sysctl)
}

/// Read the `*.conf` files of `dirs` the way systemd-sysctl does: a file in a later folder hides
/// one of the same name in an earlier folder (give them lowest priority first: /usr/lib, /run,
/// /etc); the survivors apply in file-name order.
/// Missing folders are skipped; when none exists the settings are empty.
pub fn read_sysctl_dirs(dirs: &[PathBuf]) -> Result<Sysctl> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        if !dir.is_dir() {
            continue;
        }
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("could not list {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "conf") {
                let name = path
                    .file_name()
                    .expect("a listed file has a name")
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, path);
            }
        }
    }
    let texts = files
        .values()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| (p.display().to_string(), t))
                .with_context(|| format!("could not read {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    parse_sysctl(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

// ---------------------------------------------------------------------------------------------
// The engine

pub struct Inputs<'a> {
    pub config: &'a Resolved,
    /// `None`: no command line given, its rules are not judged.
    pub cmdline: Option<&'a Cmdline>,
    /// `None`: no sysctl folder given, its rules are not judged.
    pub sysctl: Option<&'a Sysctl>,
}

fn kconfig_matches(value: Option<&Value>, want: &str) -> bool {
    match (value, want) {
        (None | Some(Value::No), "n") => true,
        (Some(Value::Yes), "y") | (Some(Value::Module), "m") => true,
        (Some(Value::Num(n)), w) => n == w,
        (Some(Value::Str(s)), w) => s == w,
        _ => false,
    }
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "absent (unknown symbol or unmet dependencies)".into(),
        Some(Value::No) => "is not set".into(),
        Some(v) => format!("={v}"),
    }
}

fn parse_number(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -n } else { n })
}

/// The value Kconfig would need, as a short rule text for the table.
fn kconfig_rule_text(rule: &KconfigRule) -> String {
    let body = if let Some(min) = rule.min {
        format!(">= {min}")
    } else if !rule.contains.is_empty() {
        format!("contains {}", rule.contains.join(","))
    } else {
        rule.want
            .iter()
            .map(|w| {
                if w == "n" {
                    "is not set".to_string()
                } else {
                    format!("={w}")
                }
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    with_alternatives(body, &rule.meta())
}

fn with_alternatives(body: String, meta: &Meta<'_>) -> String {
    if meta.alternatives.is_empty() {
        format!("want {body}")
    } else {
        format!("want {body} (or {})", meta.alternatives.join(", "))
    }
}

fn alternative_holds(meta: &Meta<'_>, config: &Resolved) -> Option<String> {
    meta.alternatives.iter().find_map(|alt| {
        let (sym, val) = parse_condition(alt).ok()?;
        kconfig_matches(config.get(sym), val).then(|| alt.clone())
    })
}

/// Judge one kconfig rule: `Ok(detail)` when satisfied, `Err(detail)` when not.
fn judge_kconfig(rule: &KconfigRule, config: &Resolved) -> std::result::Result<String, String> {
    let value = config.get(&rule.option);
    let held = if let Some(min) = rule.min {
        matches!(value, Some(Value::Num(n)) if parse_number(n).is_some_and(|n| n >= min))
    } else if !rule.contains.is_empty() {
        match value {
            Some(Value::Str(s)) => {
                let items: BTreeSet<&str> = s.split(',').map(str::trim).collect();
                rule.contains.iter().all(|c| items.contains(c.as_str()))
            }
            _ => false,
        }
    } else {
        rule.want.iter().any(|w| kconfig_matches(value, w))
    };
    if held {
        return Ok(describe(value));
    }
    match alternative_holds(&rule.meta(), config) {
        Some(alt) => Ok(format!("{} but {alt}", describe(value))),
        None => Err(describe(value)),
    }
}

fn judge_cmdline(
    rule: &CmdlineRule,
    cmdline: &Cmdline,
    config: &Resolved,
) -> (String, std::result::Result<String, String>) {
    let text = if rule.absent {
        "absent".to_string()
    } else if rule.want.is_empty() {
        "present".to_string()
    } else {
        let values = rule
            .want
            .iter()
            .map(|w| format!("{}={w}", rule.param))
            .collect::<Vec<_>>()
            .join(" or ");
        if rule.allow_absent {
            format!("{values} or absent")
        } else {
            values
        }
    };
    let got = cmdline.get(&rule.param);
    let shown = match got {
        None => "absent".to_string(),
        Some("") => "present".to_string(),
        Some(v) => format!("{}={v}", rule.param),
    };
    let held = match got {
        None => rule.absent || rule.allow_absent,
        Some(_) if rule.absent => false,
        Some(v) => rule.want.is_empty() || rule.want.iter().any(|w| w == v),
    };
    let verdict = if held {
        Ok(shown)
    } else if let Some(alt) = alternative_holds(&rule.meta(), config) {
        Ok(format!("{shown} but {alt}"))
    } else {
        Err(shown)
    };
    (with_alternatives(text, &rule.meta()), verdict)
}

fn judge_sysctl(
    rule: &SysctlRule,
    sysctl: &Sysctl,
    config: &Resolved,
) -> std::result::Result<String, String> {
    let shown = match sysctl.get(&rule.key) {
        None => sysctl.why_unset(&rule.key),
        Some((value, origin)) => format!("= {value} ({origin})"),
    };
    let held = sysctl
        .get(&rule.key)
        .is_some_and(|(v, _)| rule.want.contains(&v));
    if held {
        Ok(shown)
    } else if let Some(alt) = alternative_holds(&rule.meta(), config) {
        Ok(format!("{shown} but {alt}"))
    } else {
        Err(shown)
    }
}

/// Judge every rule. A failed rule with an exception becomes `Verdict::Exception`; an exception
/// naming no rule is an error, so a typo cannot silently waive nothing.
pub fn evaluate(
    title: &str,
    rules: &Rules,
    inputs: &Inputs<'_>,
    exceptions: &[Exception],
    toolchain: Toolchain,
) -> Result<Report> {
    let known: BTreeSet<(String, &str)> = rules
        .kconfig
        .iter()
        .map(|r| (r.option.clone(), r.source.as_str()))
        .chain(
            rules
                .cmdline
                .iter()
                .map(|r| (format!("cmdline:{}", r.param), r.source.as_str())),
        )
        .chain(
            rules
                .sysctl
                .iter()
                .map(|r| (format!("sysctl:{}", r.key), r.source.as_str())),
        )
        .collect();
    let mut seen = BTreeSet::new();
    for e in exceptions {
        let label = match &e.source {
            Some(source) => format!("{} ({source})", e.subject),
            None => e.subject.clone(),
        };
        ensure!(
            !e.reason.trim().is_empty(),
            "the kernel exception for {label} has no reason"
        );
        ensure!(
            seen.insert((&e.subject, &e.source)),
            "two kernel exceptions for {label}"
        );
        ensure!(
            known
                .iter()
                .any(|(s, src)| *s == e.subject
                    && e.source.as_deref().is_none_or(|want| want == *src)),
            "the kernel exception for {label} matches no rule in the rule file"
        );
    }
    let waiver = |subject: &str, source: &str| {
        exceptions
            .iter()
            .find(|e| e.subject == subject && e.source.as_deref().is_none_or(|s| s == source))
            .map(|e| e.reason.clone())
    };

    let mut report = Report::new(title);
    let mut push = |subject: String,
                    rule: String,
                    meta: &Meta<'_>,
                    severity: Severity,
                    outcome: std::result::Result<String, String>| {
        let (verdict, detail) = match outcome {
            Ok(detail) => (Verdict::Pass, detail),
            Err(detail) => match waiver(&subject, meta.source) {
                Some(reason) => (Verdict::Exception(reason), detail),
                None => match meta.note {
                    Some(note) => (Verdict::Fail, format!("{detail}; {note}")),
                    None => (Verdict::Fail, detail),
                },
            },
        };
        report.push(Finding {
            subject,
            rule,
            source: meta.source.to_string(),
            severity,
            verdict,
            detail,
        });
    };

    for rule in &rules.kconfig {
        let severity = if rule.compiler_probe && toolchain == Toolchain::Host {
            Severity::Recommended
        } else {
            rule.meta().severity
        };
        push(
            rule.option.clone(),
            kconfig_rule_text(rule),
            &rule.meta(),
            severity,
            judge_kconfig(rule, inputs.config),
        );
    }
    if let Some(cmdline) = inputs.cmdline {
        for rule in &rules.cmdline {
            let (text, outcome) = judge_cmdline(rule, cmdline, inputs.config);
            push(
                format!("cmdline:{}", rule.param),
                text,
                &rule.meta(),
                rule.meta().severity,
                outcome,
            );
        }
    }
    if let Some(sysctl) = inputs.sysctl {
        for rule in &rules.sysctl {
            let text = with_alternatives(format!("= {}", rule.want.join(" or ")), &rule.meta());
            push(
                format!("sysctl:{}", rule.key),
                text,
                &rule.meta(),
                rule.meta().severity,
                judge_sysctl(rule, sysctl, inputs.config),
            );
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[kconfig]]
option = "CONFIG_SECCOMP_FILTER"
want = ["y"]
source = "docker-required"
severity = "required"

[[kconfig]]
option = "CONFIG_DEVMEM"
want = ["n"]
source = "kspp"
severity = "required"

[[kconfig]]
option = "CONFIG_MODULE_SIG_FORCE"
want = ["y"]
or = ["CONFIG_MODULES=n"]
source = "kspp"
severity = "required"

[[kconfig]]
option = "CONFIG_DEFAULT_MMAP_MIN_ADDR"
min = 32768
source = "kspp"
severity = "required"

[[kconfig]]
option = "CONFIG_LSM"
contains = ["yama", "landlock"]
source = "kspp"
severity = "recommended"

[[kconfig]]
option = "CONFIG_STACKPROTECTOR_PER_TASK"
want = ["y"]
compiler_probe = true
source = "self-protection"
severity = "required"

[[kconfig]]
option = "CONFIG_USER_NS"
want = ["n"]
source = "attack-surface"
severity = "required"

[[kconfig]]
option = "CONFIG_USER_NS"
want = ["y"]
source = "docker-optional"
severity = "required"

[[cmdline]]
param = "slab_nomerge"
source = "kspp"
severity = "required"

[[cmdline]]
param = "init_on_alloc"
want = ["1"]
allow_absent = true
source = "kspp"
severity = "required"

[[cmdline]]
param = "nokaslr"
absent = true
source = "self-protection"
severity = "required"

[[sysctl]]
key = "kernel.kptr_restrict"
want = ["2"]
source = "kspp"
severity = "required"

[[sysctl]]
key = "kernel.io_uring_disabled"
want = ["2"]
or = ["CONFIG_IO_URING=n"]
source = "attack-surface"
severity = "required"
"#;

    const HARDENED: &str = "\
CONFIG_SECCOMP_FILTER=y
# CONFIG_DEVMEM is not set
# CONFIG_MODULES is not set
CONFIG_DEFAULT_MMAP_MIN_ADDR=32768
CONFIG_LSM=\"landlock,lockdown,yama\"
CONFIG_STACKPROTECTOR_PER_TASK=y
CONFIG_USER_NS=y
";

    fn rules() -> Rules {
        parse_rules(RULES).unwrap()
    }

    fn userns_exception() -> Vec<Exception> {
        vec![Exception {
            subject: "CONFIG_USER_NS".into(),
            source: Some("attack-surface".into()),
            reason: "userns-remap".into(),
        }]
    }

    fn audit(
        config: &str,
        cmdline: Option<&str>,
        sysctl: Option<&str>,
        exceptions: &[Exception],
    ) -> Report {
        let resolved = Resolved::parse(config, ".config").unwrap();
        let cmdline = cmdline.map(|c| parse_cmdline(c).unwrap());
        let sysctl = sysctl.map(|s| parse_sysctl([("90.conf", s)]).unwrap());
        let inputs = Inputs {
            config: &resolved,
            cmdline: cmdline.as_ref(),
            sysctl: sysctl.as_ref(),
        };
        evaluate("t", &rules(), &inputs, exceptions, Toolchain::Target).unwrap()
    }

    fn verdict<'a>(report: &'a Report, subject: &str) -> &'a Verdict {
        &report
            .findings
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no {subject}"))
            .verdict
    }

    #[test]
    fn hardened_config_passes_with_its_exception() {
        let r = audit(
            HARDENED,
            Some("console=ttySAC2 slab_nomerge ro\n"),
            Some("kernel.kptr_restrict = 2\n"),
            &userns_exception(),
        );
        assert!(r.passed(), "{}", r.render_table());
        assert_eq!(r.totals().exceptions, 1);
        assert_eq!(r.findings.len(), 13);
        assert_eq!(
            verdict(&r, "CONFIG_USER_NS"),
            &Verdict::Exception("userns-remap".into())
        );
        let sig = r
            .findings
            .iter()
            .find(|f| f.subject == "CONFIG_MODULE_SIG_FORCE")
            .unwrap();
        assert!(
            sig.detail.contains("but CONFIG_MODULES=n"),
            "{}",
            sig.detail
        );
    }

    #[test]
    fn flipping_one_option_flips_its_verdict() {
        let flipped = HARDENED.replace("# CONFIG_DEVMEM is not set", "CONFIG_DEVMEM=y");
        let r = audit(&flipped, None, None, &userns_exception());
        assert_eq!(verdict(&r, "CONFIG_DEVMEM"), &Verdict::Fail);
        assert!(!r.passed());
        assert_eq!(r.totals().failed_required, 1);

        let modules = HARDENED.replace("# CONFIG_MODULES is not set", "CONFIG_MODULES=y");
        assert_eq!(
            verdict(
                &audit(&modules, None, None, &userns_exception()),
                "CONFIG_MODULE_SIG_FORCE"
            ),
            &Verdict::Fail
        );
        let module = HARDENED.replace("CONFIG_SECCOMP_FILTER=y", "CONFIG_SECCOMP_FILTER=m");
        assert_eq!(
            verdict(
                &audit(&module, None, None, &userns_exception()),
                "CONFIG_SECCOMP_FILTER"
            ),
            &Verdict::Fail
        );
    }

    #[test]
    fn absent_symbols_count_as_not_set() {
        let r = audit("CONFIG_USER_NS=y\n", None, None, &[]);
        assert_eq!(verdict(&r, "CONFIG_DEVMEM"), &Verdict::Pass);
        let seccomp = r
            .findings
            .iter()
            .find(|f| f.subject == "CONFIG_SECCOMP_FILTER")
            .unwrap();
        assert_eq!(seccomp.verdict, Verdict::Fail);
        assert!(seccomp.detail.starts_with("absent"), "{}", seccomp.detail);
        // Absent MODULES means no module support at all, which satisfies the 'or' condition.
        assert_eq!(verdict(&r, "CONFIG_MODULE_SIG_FORCE"), &Verdict::Pass);
        assert_eq!(verdict(&r, "CONFIG_USER_NS"), &Verdict::Fail);
    }

    #[test]
    fn numbers_and_string_lists() {
        let low = HARDENED.replace("=32768", "=4096");
        assert_eq!(
            verdict(
                &audit(&low, None, None, &[]),
                "CONFIG_DEFAULT_MMAP_MIN_ADDR"
            ),
            &Verdict::Fail
        );
        let hex = HARDENED.replace("=32768", "=0x10000");
        assert_eq!(
            verdict(
                &audit(&hex, None, None, &[]),
                "CONFIG_DEFAULT_MMAP_MIN_ADDR"
            ),
            &Verdict::Pass
        );
        let no_yama = HARDENED.replace("lockdown,yama", "lockdown");
        let r = audit(&no_yama, None, None, &userns_exception());
        assert_eq!(verdict(&r, "CONFIG_LSM"), &Verdict::Fail);
        assert!(r.passed(), "a recommended rule must not fail the audit");
        assert_eq!(r.totals().failed, 1);
    }

    #[test]
    fn compiler_probed_rules_drop_to_recommended_on_the_host_toolchain() {
        let config = HARDENED.replace("CONFIG_STACKPROTECTOR_PER_TASK=y\n", "");
        let resolved = Resolved::parse(&config, ".config").unwrap();
        let inputs = Inputs {
            config: &resolved,
            cmdline: None,
            sysctl: None,
        };
        let exceptions = userns_exception();
        let target = evaluate("t", &rules(), &inputs, &exceptions, Toolchain::Target).unwrap();
        assert!(!target.passed());
        let host = evaluate("t", &rules(), &inputs, &exceptions, Toolchain::Host).unwrap();
        assert!(host.passed());
        assert_eq!(host.totals().failed, 1);
    }

    #[test]
    fn cmdline_rules() {
        let ok = audit(
            HARDENED,
            Some("slab_nomerge init_on_alloc=1"),
            None,
            &userns_exception(),
        );
        assert!(ok.passed(), "{}", ok.render_table());
        let r = audit(
            HARDENED,
            Some("init-on-alloc=0 nokaslr"),
            None,
            &userns_exception(),
        );
        assert_eq!(verdict(&r, "cmdline:slab_nomerge"), &Verdict::Fail);
        assert_eq!(
            verdict(&r, "cmdline:init_on_alloc"),
            &Verdict::Fail,
            "'-' and '_' are the same in names"
        );
        assert_eq!(verdict(&r, "cmdline:nokaslr"), &Verdict::Fail);
        assert!(parse_cmdline("a\nb\n").is_err());
        assert!(parse_cmdline("a=\"open").is_err());
        let quoted = parse_cmdline("dyndbg=\"file x +p\" ro\n").unwrap();
        assert_eq!(quoted.get("dyndbg"), Some("file x +p"));
        assert_eq!(quoted.get("ro"), Some(""));
    }

    #[test]
    fn sysctl_rules_follow_file_order_and_or_conditions() {
        let s = parse_sysctl([
            (
                "50-default.conf",
                "kernel/kptr_restrict = 1\n# comment\n; comment\n",
            ),
            ("90-berth.conf", "-kernel.kptr_restrict=2\n"),
        ])
        .unwrap();
        assert_eq!(
            s.get("kernel.kptr_restrict"),
            Some(("2".to_string(), "90-berth.conf:1".to_string()))
        );
        assert!(parse_sysctl([("x.conf", "kernel.kptr_restrict\n")])
            .unwrap_err()
            .to_string()
            .contains("x.conf:1"));

        let weak = audit(
            HARDENED,
            None,
            Some("kernel.kptr_restrict = 1\n"),
            &userns_exception(),
        );
        assert_eq!(
            verdict(&weak, "sysctl:kernel.kptr_restrict"),
            &Verdict::Fail
        );
        // io_uring is not set in the config, so its sysctl does not exist and is not needed.
        assert_eq!(
            verdict(&weak, "sysctl:kernel.io_uring_disabled"),
            &Verdict::Pass
        );
        let uring = format!("{HARDENED}CONFIG_IO_URING=y\n");
        let r = audit(
            &uring,
            None,
            Some("kernel.kptr_restrict = 2\n"),
            &userns_exception(),
        );
        assert_eq!(
            verdict(&r, "sysctl:kernel.io_uring_disabled"),
            &Verdict::Fail
        );
    }

    /// The assignments of systemd 257's sysctl.d/50-default.conf, 50-pid-max.conf and
    /// 50-coredump.conf (rendered), line for line as systemd ships them.
    const SYSTEMD_50_DEFAULT: &str = "kernel.sysrq = 16\nkernel.core_uses_pid = 1\nnet.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\nnet.ipv4.conf.default.accept_source_route = 0\nnet.ipv4.conf.*.accept_source_route = 0\n-net.ipv4.conf.all.accept_source_route\nnet.ipv4.conf.default.promote_secondaries = 1\nnet.ipv4.conf.*.promote_secondaries = 1\n-net.ipv4.conf.all.promote_secondaries\n-net.ipv4.ping_group_range = 0 2147483647\n-net.core.default_qdisc = fq_codel\nfs.protected_hardlinks = 1\nfs.protected_symlinks = 1\nfs.protected_regular = 1\nfs.protected_fifos = 1\n";
    const SYSTEMD_50_PID_MAX: &str = "kernel.pid_max = 4194304\n";
    const SYSTEMD_50_COREDUMP: &str = "kernel.core_pattern=|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h %d %F\nkernel.core_pipe_limit=16\nfs.suid_dumpable=2\n";

    #[test]
    fn sysctl_reads_systemds_own_files_with_globs_and_exclusions() {
        let s = parse_sysctl([
            ("50-coredump.conf", SYSTEMD_50_COREDUMP),
            ("50-default.conf", SYSTEMD_50_DEFAULT),
            ("50-pid-max.conf", SYSTEMD_50_PID_MAX),
        ])
        .unwrap();
        let value = |k: &str| s.get(k).map(|(v, _)| v);
        assert_eq!(
            value("net.ipv4.conf.default.rp_filter").as_deref(),
            Some("2")
        );
        // The glob reaches every interface...
        assert_eq!(value("net.ipv4.conf.eth0.rp_filter").as_deref(), Some("2"));
        assert_eq!(value("net/ipv4/conf/eth0/rp_filter").as_deref(), Some("2"));
        // ...but not `all`, excluded by the bare `-key` after it.
        assert_eq!(value("net.ipv4.conf.all.rp_filter"), None);
        assert!(s
            .why_unset("net.ipv4.conf.all.rp_filter")
            .contains("50-default.conf:5"));
        assert_eq!(
            value("net.ipv4.ping_group_range").as_deref(),
            Some("0 2147483647")
        );
        assert_eq!(value("net.core.default_qdisc").as_deref(), Some("fq_codel"));
        assert_eq!(
            value("kernel.core_pattern").unwrap(),
            "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h %d %F"
        );
        assert_eq!(value("fs.suid_dumpable").as_deref(), Some("2"));

        // Berth's 90- file, later: a named key beats the glob whatever the order, and names
        // the excluded key back in.
        let berth = std::fs::read_to_string(
            crate::util::repo_root()
                .join("board/odroid-xu4/rootfs-overlay/etc/sysctl.d/90-berth-hardening.conf"),
        )
        .unwrap();
        let s = parse_sysctl([
            ("50-default.conf", SYSTEMD_50_DEFAULT),
            ("90-berth-hardening.conf", berth.as_str()),
            ("95-glob.conf", "net.ipv4.conf.*.rp_filter = 0\n"),
        ])
        .unwrap();
        let value = |k: &str| s.get(k).map(|(v, _)| v);
        assert_eq!(value("net.ipv4.conf.all.rp_filter").as_deref(), Some("1"));
        assert_eq!(
            value("net.ipv4.conf.default.rp_filter").as_deref(),
            Some("1")
        );
        assert_eq!(value("net.ipv4.conf.eth0.rp_filter").as_deref(), Some("0"));
        assert_eq!(value("fs.suid_dumpable").as_deref(), Some("0"));

        // The rp_filter rules judge that effective value.
        let rules = load_rules(&rules_path()).unwrap();
        let judge = |files: &[(&str, &str)], key: &str| {
            let s = parse_sysctl(files.iter().copied()).unwrap();
            let rule = rules.sysctl.iter().find(|r| r.key == key).unwrap();
            let config = crate::kconfig::Resolved::parse(HARDENED, ".config").unwrap();
            judge_sysctl(rule, &s, &config)
        };
        let systemd_only = [("50-default.conf", SYSTEMD_50_DEFAULT)];
        let err = judge(&systemd_only, "net.ipv4.conf.all.rp_filter").unwrap_err();
        assert!(err.contains("excluded"), "{err}");
        assert!(judge(&systemd_only, "net.ipv4.conf.default.rp_filter").is_err());
        let with_berth = [
            ("50-default.conf", SYSTEMD_50_DEFAULT),
            ("90-berth-hardening.conf", berth.as_str()),
        ];
        assert!(judge(&with_berth, "net.ipv4.conf.all.rp_filter").is_ok());
        assert!(judge(&with_berth, "net.ipv4.conf.default.rp_filter").is_ok());
    }

    #[test]
    fn sysctl_globs_match_like_fnmatch() {
        assert!(glob_match(
            "net.ipv4.conf.*.rp_filter",
            "net.ipv4.conf.eth0.rp_filter"
        ));
        assert!(glob_match(
            "net.ipv4.conf.*.rp_filter",
            "net.ipv4.conf.br-1/2.rp_filter"
        ));
        assert!(!glob_match(
            "net.ipv4.conf.*.rp_filter",
            "net.ipv4.conf.eth0.log_martians"
        ));
        assert!(glob_match("kernel.?ysrq", "kernel.sysrq"));
        assert!(glob_match(
            "net.ipv[46].conf.all.forwarding",
            "net.ipv6.conf.all.forwarding"
        ));
        assert!(!glob_match("net.ipv[!4].x", "net.ipv4.x"));
        assert!(glob_match("a*b*c", "aXbYbc"));
        assert!(parse_sysctl([("x.conf", "-net.ipv4.conf.*.rp_filter\n")]).is_err());
    }

    #[test]
    fn exceptions_must_name_a_rule_and_give_a_reason() {
        let resolved = Resolved::parse(HARDENED, ".config").unwrap();
        let inputs = Inputs {
            config: &resolved,
            cmdline: None,
            sysctl: None,
        };
        let typo = [Exception {
            subject: "CONFIG_USERNS".into(),
            source: None,
            reason: "x".into(),
        }];
        let err = evaluate("t", &rules(), &inputs, &typo, Toolchain::Target)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONFIG_USERNS"), "{err}");
        let empty = [Exception {
            subject: "CONFIG_USER_NS".into(),
            source: None,
            reason: " ".into(),
        }];
        assert!(evaluate("t", &rules(), &inputs, &empty, Toolchain::Target).is_err());
        let wrong_source = [Exception {
            subject: "CONFIG_USER_NS".into(),
            source: Some("kspp".into()),
            reason: "x".into(),
        }];
        assert!(evaluate("t", &rules(), &inputs, &wrong_source, Toolchain::Target).is_err());
        assert!(evaluate("t", &rules(), &inputs, &empty, Toolchain::Target).is_err());
    }

    #[test]
    fn malformed_rules_are_rejected() {
        assert!(parse_rules("[[kconfig]]\noption = \"DEVMEM\"\nwant = [\"n\"]\nsource = \"kspp\"\nseverity = \"required\"\n").is_err());
        assert!(parse_rules(
            "[[kconfig]]\noption = \"CONFIG_A\"\nsource = \"kspp\"\nseverity = \"required\"\n"
        )
        .is_err());
        assert!(parse_rules("[[kconfig]]\noption = \"CONFIG_A\"\nwant = [\"y\"]\nsource = \"ksp\"\nseverity = \"required\"\n").is_err());
        assert!(parse_rules("[[kconfig]]\noption = \"CONFIG_A\"\nwant = [\"y\"]\nor = [\"MODULES\"]\nsource = \"kspp\"\nseverity = \"required\"\n").is_err());
        assert!(parse_rules(
            "[[sysctl]]\nkey = \"a\"\nwant = [\"1\"]\nsource = \"kspp\"\nseverity = \"must\"\n"
        )
        .is_err());
        let twice = format!("{RULES}\n[[kconfig]]\noption = \"CONFIG_DEVMEM\"\nwant = [\"n\"]\nsource = \"kspp\"\nseverity = \"required\"\n");
        assert!(parse_rules(&twice)
            .unwrap_err()
            .to_string()
            .contains("two kspp rules for CONFIG_DEVMEM"));
    }

    #[test]
    fn buildroot_output_layout() {
        let out = tempfile::tempdir().unwrap();
        let build = out.path().join("build");
        for dir in [
            "linux-headers-6.12.91",
            "linux-firmware-20250311",
            "linux-6.12.91",
        ] {
            std::fs::create_dir_all(build.join(dir)).unwrap();
            std::fs::write(build.join(dir).join(".config"), "CONFIG_X=y\n").unwrap();
        }
        assert_eq!(
            buildroot_kernel_config(out.path()).unwrap(),
            build.join("linux-6.12.91/.config")
        );
        std::fs::create_dir_all(build.join("linux-custom")).unwrap();
        std::fs::write(build.join("linux-custom/.config"), "").unwrap();
        let err = buildroot_kernel_config(out.path()).unwrap_err().to_string();
        assert!(err.contains("several kernel build folders"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(buildroot_kernel_config(empty.path()).is_err());

        // /etc/sysctl.d hides a file of the same name in /usr/lib/sysctl.d; others still apply.
        let lib = out.path().join("target/usr/lib/sysctl.d");
        let etc = out.path().join("target/etc/sysctl.d");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            lib.join("50-default.conf"),
            "kernel.sysrq = 16\nfs.protected_fifos = 1\n",
        )
        .unwrap();
        std::fs::write(lib.join("60-berth.conf"), "kernel.kptr_restrict = 1\n").unwrap();
        std::fs::write(etc.join("60-berth.conf"), "kernel.kptr_restrict = 2\n").unwrap();
        std::fs::write(etc.join("README"), "not a conf file\n").unwrap();
        let s = read_sysctl_dirs(&[lib, etc.clone(), out.path().join("missing")]).unwrap();
        assert_eq!(s.get("kernel.kptr_restrict").unwrap().0, "2");
        assert_eq!(s.get("kernel.sysrq").unwrap().0, "16");
        assert!(s.get("kernel/sysrq").is_some());

        // The whole image-build audit on that layout: the board's cmdline.txt is judged too.
        std::fs::remove_dir_all(build.join("linux-custom")).unwrap();
        let report = audit_buildroot_output(out.path()).unwrap();
        let verdict = |subject: &str| {
            &report
                .findings
                .iter()
                .find(|f| f.subject == subject)
                .unwrap()
                .verdict
        };
        assert_eq!(verdict("cmdline:console"), &Verdict::Pass);
        assert_eq!(verdict("sysctl:kernel.kptr_restrict"), &Verdict::Pass);
        assert_eq!(verdict("sysctl:kernel.dmesg_restrict"), &Verdict::Fail);
        assert_eq!(verdict("CONFIG_SECCOMP"), &Verdict::Fail);
        assert!(!report.passed());
    }
}
