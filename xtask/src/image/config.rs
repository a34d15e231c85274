//! `berth.toml`: the user's own build settings at the repository root (gitignored; see
//! `berth.example.toml`). Every key mirrors a flag of `cargo xtask image`, and the flag wins.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const FILE_NAME: &str = "berth.toml";

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BerthConfig {
    /// authorized_keys file installed for SSH login (key-only; the image has no password).
    pub ssh_authorized_keys: Option<PathBuf>,
    pub board: Option<String>,
    /// A tree of the pinned Buildroot to use instead of the cached clone.
    pub buildroot: Option<PathBuf>,
    /// Buildroot output folder (`O=`).
    pub output: Option<PathBuf>,
    /// Parallel jobs inside each package build (`BR2_JLEVEL`; 0 = CPUs + 1).
    pub jobs: Option<u32>,
    /// Declared containers (`apps.toml`) to preload and run.
    pub apps: Option<PathBuf>,
    /// Production key and certificate for update bundles (both or neither; else a development
    /// pair in the output folder).
    pub signing_key: Option<PathBuf>,
    pub signing_cert: Option<PathBuf>,
    /// The hawkBit server the fleet client polls; without it no update client runs.
    pub hawkbit: Option<super::hawkbit::HawkbitTable>,
}

impl BerthConfig {
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        toml::from_str(text).with_context(|| {
            format!("{name} is not a valid Berth configuration (keys: ssh_authorized_keys, board, buildroot, output, jobs, apps, signing_key, signing_cert, [hawkbit])")
        })
    }

    /// The repository's `berth.toml`, or the defaults when there is none.
    pub fn load(repo: &Path) -> Result<Self> {
        let path = repo.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
        }
    }
}

/// `~/x` → `$HOME/x`; other relative paths are taken from `base`.
pub fn resolve_path(path: &Path, base: &Path, home: Option<&Path>) -> Result<PathBuf> {
    if let Ok(rest) = path.strip_prefix("~") {
        let home = home.context("a path starts with ~ but HOME is not set")?;
        return Ok(home.join(rest));
    }
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    })
}

/// One setting from the flag, else from berth.toml (relative to the repository), else `None`.
pub fn pick_path(
    flag: Option<&Path>,
    configured: Option<&Path>,
    cwd: &Path,
    repo: &Path,
    home: Option<&Path>,
) -> Result<Option<PathBuf>> {
    match (flag, configured) {
        (Some(p), _) => resolve_path(p, cwd, home).map(Some),
        (None, Some(p)) => resolve_path(p, repo, home).map(Some),
        (None, None) => Ok(None),
    }
}

/// The public keys tried, in this order, when neither the flag nor berth.toml names a file.
pub const DEFAULT_PUBLIC_KEYS: &[&str] = &["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];

/// Where the SSH keys come from: the flag or berth.toml, else the user's own public key.
#[derive(Debug, PartialEq, Eq)]
pub enum SshKeys {
    Given(PathBuf),
    /// The first of [`DEFAULT_PUBLIC_KEYS`] in `~/.ssh`, so the command says which it took.
    Default(PathBuf),
}

impl SshKeys {
    pub fn path(&self) -> &Path {
        match self {
            SshKeys::Given(p) | SshKeys::Default(p) => p,
        }
    }
}

/// The authorized_keys file: the one given, else the first default key in `home`'s `.ssh`;
/// without either, say every way of giving one, and how to make one.
pub fn pick_ssh_keys(given: Option<PathBuf>, home: Option<&Path>) -> Result<SshKeys> {
    if let Some(path) = given {
        return Ok(SshKeys::Given(path));
    }
    let ssh = home.map(|h| h.join(".ssh"));
    if let Some(found) = ssh.as_ref().and_then(|dir| {
        DEFAULT_PUBLIC_KEYS
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    }) {
        return Ok(SshKeys::Default(found));
    }
    let looked = match &ssh {
        Some(dir) => format!(
            "none of {} exists in {}",
            DEFAULT_PUBLIC_KEYS.join(", "),
            dir.display()
        ),
        None => "HOME is not set, so ~/.ssh could not be searched".into(),
    };
    bail!(
        "no SSH public key for the image: SSH login is key-only and there is no password, and {looked}. \
         Make a key with `ssh-keygen -t ed25519`, or give an authorized_keys file with \
         --ssh-authorized-keys FILE or `ssh_authorized_keys = \"FILE\"` in {FILE_NAME} at the \
         repository root (see berth.example.toml)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let c = BerthConfig::parse(
            "ssh_authorized_keys = \"~/.ssh/id_ed25519.pub\"\nboard = \"odroid-xu4\"\nbuildroot = \"/src/br\"\noutput = \"out\"\njobs = 4\n",
            "berth.toml",
        )
        .unwrap();
        assert_eq!(
            c.ssh_authorized_keys.as_deref(),
            Some(Path::new("~/.ssh/id_ed25519.pub"))
        );
        assert_eq!((c.board.as_deref(), c.jobs), (Some("odroid-xu4"), Some(4)));
        assert_eq!(
            BerthConfig::parse("", "berth.toml").unwrap(),
            BerthConfig::default()
        );
    }

    #[test]
    fn misspelled_keys_are_errors_naming_the_file() {
        let err = format!(
            "{:#}",
            BerthConfig::parse("ssh_authorised_keys = \"k\"\n", "/r/berth.toml").unwrap_err()
        );
        assert!(err.contains("/r/berth.toml"), "{err}");
        assert!(err.contains("ssh_authorised_keys"), "{err}");
        assert!(BerthConfig::parse("jobs = \"four\"\n", "b").is_err());
    }

    #[test]
    fn flag_wins_and_relative_paths_have_their_own_base() {
        let (cwd, repo, home) = (
            Path::new("/cwd"),
            Path::new("/repo"),
            Some(Path::new("/home/u")),
        );
        let pick = |flag: Option<&str>, conf: Option<&str>| {
            pick_path(flag.map(Path::new), conf.map(Path::new), cwd, repo, home).unwrap()
        };
        assert_eq!(
            pick(Some("keys"), Some("other")),
            Some(PathBuf::from("/cwd/keys"))
        );
        assert_eq!(pick(None, Some("keys")), Some(PathBuf::from("/repo/keys")));
        assert_eq!(
            pick(None, Some("~/.ssh/a.pub")),
            Some(PathBuf::from("/home/u/.ssh/a.pub"))
        );
        assert_eq!(pick(Some("/abs/k"), None), Some(PathBuf::from("/abs/k")));
        assert_eq!(pick(None, None), None);
        assert!(pick_path(None, Some(Path::new("~/k")), cwd, repo, None).is_err());
    }

    #[test]
    fn ssh_keys_default_to_the_users_first_public_key() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();

        let err = pick_ssh_keys(None, Some(home.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none of id_ed25519.pub, id_ecdsa.pub, id_rsa.pub exists")
                && err.contains("ssh-keygen -t ed25519")
                && err.contains("--ssh-authorized-keys FILE")
                && err.contains("berth.toml"),
            "{err}"
        );
        assert!(pick_ssh_keys(None, None)
            .unwrap_err()
            .to_string()
            .contains("HOME is not set"));

        // The private key alone is not a public key: it is never picked.
        std::fs::write(ssh.join("id_ed25519"), "private").unwrap();
        std::fs::write(ssh.join("id_rsa.pub"), "rsa").unwrap();
        assert_eq!(
            pick_ssh_keys(None, Some(home.path())).unwrap(),
            SshKeys::Default(ssh.join("id_rsa.pub"))
        );
        std::fs::write(ssh.join("id_ecdsa.pub"), "ecdsa").unwrap();
        std::fs::write(ssh.join("id_ed25519.pub"), "ed25519").unwrap();
        assert_eq!(
            pick_ssh_keys(None, Some(home.path())).unwrap(),
            SshKeys::Default(ssh.join("id_ed25519.pub"))
        );
        // A file that is given wins over every default.
        assert_eq!(
            pick_ssh_keys(Some("/k".into()), Some(home.path())).unwrap(),
            SshKeys::Given(PathBuf::from("/k"))
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let example = BerthConfig::parse(
            include_str!("../../../berth.example.toml"),
            "berth.example.toml",
        )
        .unwrap();
        assert_eq!(
            example.ssh_authorized_keys.as_deref(),
            Some(Path::new("~/.ssh/id_ed25519.pub"))
        );
        // Its commented [hawkbit] table, uncommented, is complete.
        let hawkbit: String = include_str!("../../../berth.example.toml")
            .lines()
            .skip_while(|l| !l.starts_with("# [hawkbit]"))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let parsed = BerthConfig::parse(&hawkbit, "the example's [hawkbit]").unwrap();
        let table = parsed.hawkbit.expect("the example shows [hawkbit]");
        table.complete(|p| Ok(p.to_path_buf())).unwrap();
    }

    #[test]
    fn load_without_a_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            BerthConfig::load(dir.path()).unwrap(),
            BerthConfig::default()
        );
        std::fs::write(dir.path().join(FILE_NAME), "jobs = 2\n").unwrap();
        assert_eq!(BerthConfig::load(dir.path()).unwrap().jobs, Some(2));
    }
}
