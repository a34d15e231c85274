//! The host a verb runs on, as far as the environment names it: the user's home, Berth's cache
//! folder, a Buildroot tree named in `BERTH_BUILDROOT`, and the variables that decide where the
//! processes the xtask starts download from (proxies, `BR2_DL_DIR`).
//!
//! The command line takes it from the real environment ([`Host::from_process`]); a test builds
//! one explicitly, so it can cut the network or move the cache without touching the environment
//! of its own process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::Shell;

/// The variables a child process gets from the [`Host`] only, never from the xtask's own
/// environment: the proxies downloads go through and Buildroot's download folder.
pub const CHILD_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "BR2_DL_DIR",
];

#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The user's home folder: the default SSH key and `~` in paths come from there.
    pub home: Option<PathBuf>,
    /// Berth's cache folder (`$XDG_CACHE_HOME/berth`, else `~/.cache/berth`); None when the
    /// environment names neither.
    pub cache: Option<PathBuf>,
    /// A tree of the pinned Buildroot named by `BERTH_BUILDROOT`.
    pub buildroot: Option<PathBuf>,
    /// Docker's configuration folder (`DOCKER_CONFIG`, else `~/.docker`): the registry logins
    /// the apps' images are fetched with.
    pub docker_config: Option<PathBuf>,
    /// The values of [`CHILD_VARS`] every process the xtask starts gets; one not here is unset.
    pub vars: BTreeMap<String, String>,
}

impl Host {
    /// The host as this process's environment describes it.
    pub fn from_process() -> Host {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".cache")))
            .map(|dir| dir.join("berth"));
        let docker_config = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".docker")));
        Host {
            home,
            cache,
            buildroot: var("BERTH_BUILDROOT").map(PathBuf::from),
            docker_config,
            vars: CHILD_VARS
                .iter()
                .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
                .collect(),
        }
    }

    /// Berth's cache folder, or an error saying why there is none.
    pub fn cache(&self) -> Result<&Path> {
        self.cache
            .as_deref()
            .context("neither XDG_CACHE_HOME nor HOME is set, so Berth has no cache folder")
    }

    /// The value of one of [`CHILD_VARS`], when set and not empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A proxy variable by its lower-case name (`https_proxy`), else its upper-case one: the
    /// order the network preflight (`image::network::through_proxy`) and wget read them in.
    pub fn proxy(&self, name: &str) -> Option<&str> {
        self.var(name).or_else(|| self.var(&name.to_uppercase()))
    }

    /// A shell whose commands get this host's [`CHILD_VARS`] and none of the caller's. A shell
    /// cannot unset a variable for its commands, so one the host lacks is set empty, which wget,
    /// curl, git and Buildroot all read as unset.
    pub fn shell(&self) -> Result<Shell> {
        let sh = Shell::new().context("could not start a shell")?;
        for name in CHILD_VARS {
            sh.set_var(name, self.vars.get(*name).map_or("", String::as_str));
        }
        Ok(sh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_the_hosts_variables_and_none_of_the_callers() {
        let host = Host {
            vars: [("https_proxy".to_string(), "http://127.0.0.1:9".to_string())].into(),
            ..Host::default()
        };
        let sh = host.shell().unwrap();
        assert_eq!(sh.var("https_proxy").unwrap(), "http://127.0.0.1:9");
        assert_eq!(sh.var("BR2_DL_DIR").unwrap(), "");
        assert_eq!(sh.var("http_proxy").unwrap(), "");
        assert_eq!(host.var("https_proxy"), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn without_a_cache_folder_the_error_says_why() {
        let err = Host::default().cache().unwrap_err().to_string();
        assert!(err.contains("neither XDG_CACHE_HOME nor HOME"), "{err}");
    }
}
