//! sysctl.d settings, read and applied as systemd-sysctl does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
