//! One `cargo xtask image` on a fresh stand-in, run through the library: its folder (the stand-in
//! Buildroot, the filled download cache, a public key, the repository copy) and its output.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use xtask::host::Host;
use xtask::image::{self, ImageArgs};
use xtask::project::Repo;

use super::{filled_cache, repo_copy, stand_in_buildroot, Inputs};

pub struct Build {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub output: PathBuf,
    /// The apps file given as `--apps`, if any.
    pub apps: Option<PathBuf>,
}

impl Build {
    /// A fresh stand-in with its filled cache and a public key; nothing built yet.
    pub fn prepare(inputs: &Inputs) -> Build {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo_copy(dir.path());
        stand_in_buildroot(inputs, dir.path());
        filled_cache(inputs, dir.path());
        fs::write(
            dir.path().join("id_ed25519.pub"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0b3hYbEtWc3Jtc0N6b2ZxVnVGbUJ6a0hUa1ZvRHVx test@berth\n",
        )
        .unwrap();
        let output = dir.path().join("output");
        Build {
            dir,
            repo,
            output,
            apps: None,
        }
    }

    /// `cargo xtask image` with the stand-in, the filled download cache and a public key, through
    /// the library: the error, as the command line would print it, when it fails.
    pub fn run(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let args = ImageArgs {
            buildroot: Some(dir.join("buildroot")),
            output: Some(self.output.clone()),
            ssh_authorized_keys: Some(dir.join("id_ed25519.pub")),
            apps: self.apps.clone(),
            ..ImageArgs::default()
        };
        image::run(&Repo::at(&self.repo), args, &self.host()).map_err(|err| format!("{err:#}"))
    }

    /// The host the build runs on: its cache in the test's folder, and offline even on a
    /// networked machine (every download goes to a closed local port), so a build that passes
    /// took every source from the filled cache. Only a registry served on 127.0.0.1 by the test
    /// itself is reached directly, as `no_proxy` says for a local registry.
    pub fn host(&self) -> Host {
        let dir = self.dir.path();
        let closed = "http://127.0.0.1:9".to_string();
        let mut vars: BTreeMap<String, String> = ["http_proxy", "https_proxy", "ftp_proxy"]
            .map(|var| (var.to_string(), closed.clone()))
            .into();
        vars.insert("no_proxy".into(), "127.0.0.1".into());
        // A developer's own download folder: the build, legal-info and the SBOM must all use the
        // xtask's, which the network preflight checked.
        vars.insert(
            "BR2_DL_DIR".into(),
            dir.join("elsewhere/dl").display().to_string(),
        );
        Host {
            home: None,
            cache: Some(dir.join("cache/berth")),
            buildroot: None,
            vars,
            ..Host::default()
        }
    }

    /// The whole output of the last build's `make`.
    pub fn log(&self) -> String {
        fs::read_to_string(self.output.join("build.log")).unwrap_or_default()
    }

    /// The first build, which must succeed. None, after a printed skip, when the xtask finds
    /// this host lacks what Buildroot needs.
    pub fn succeed(self, test: &str) -> Option<Build> {
        if let Err(err) = self.run() {
            if let Some(at) = err.find("this machine lacks what Buildroot needs") {
                crate::common::skip(test, &err[at..].replace('\n', " "));
                return None;
            }
            panic!("{err}\n{}", self.log());
        }
        Some(self)
    }
}
