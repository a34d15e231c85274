//! The fleet client, rauc-hawkbit-updater: off unless berth.toml's `[hawkbit]` names the
//! server, the target's name, a file with its security token and the CA that signs the server's
//! certificate. Then this stages, for post-build.sh (`BERTH_HAWKBIT_ROOTFS`):
//! - `/etc/rauc-hawkbit-updater/config.conf` (mode 0600, root's: it holds the token), handed to
//!   the client's own user as a systemd credential;
//! - `/etc/rauc-hawkbit-updater/ca.pem`, which the client sees as its only CA bundle;
//! - the unit's drop-in and `20-berth-hawkbit.preset`, which enables it.
//!
//! Without `[hawkbit]` nothing is staged and the board's `50-berth-updates.preset` keeps the unit
//! disabled: no client runs and it opens no connection (it listens on no port either way).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// berth.toml's `[hawkbit]` table as written: every key is needed, so a partial table is an
/// error naming what is missing rather than a client that cannot connect.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HawkbitTable {
    /// `https://host[:port]` of the hawkBit server (DDI API).
    pub server: Option<String>,
    /// The target's controller ID, as registered in hawkBit.
    pub target_name: Option<String>,
    /// A file holding the target's security token.
    pub auth_token_file: Option<PathBuf>,
    /// PEM file of the CA the server's TLS certificate must chain to (the client trusts no other).
    pub ca_file: Option<PathBuf>,
    /// hawkBit tenant; `DEFAULT` unless set.
    pub tenant: Option<String>,
}

/// A complete `[hawkbit]`, paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hawkbit {
    /// `host[:port]`, as the client's `hawkbit_server` wants it.
    pub server: String,
    pub target_name: String,
    pub auth_token_file: PathBuf,
    pub ca_file: PathBuf,
    pub tenant: String,
}

impl HawkbitTable {
    /// Every key present and well-formed, file paths resolved with `resolve`. Pure.
    pub fn complete(&self, resolve: impl Fn(&Path) -> Result<PathBuf>) -> Result<Hawkbit> {
        let missing: Vec<&str> = [
            ("server", self.server.is_none()),
            ("target_name", self.target_name.is_none()),
            ("auth_token_file", self.auth_token_file.is_none()),
            ("ca_file", self.ca_file.is_none()),
        ]
        .into_iter()
        .filter_map(|(key, absent)| absent.then_some(key))
        .collect();
        ensure!(
            missing.is_empty(),
            "[hawkbit] in berth.toml lacks {}: the fleet client needs the server, the target's \
             name, its token file and the server's CA, or no [hawkbit] table at all",
            missing.join(", ")
        );
        let target_name = self.target_name.clone().unwrap_or_default();
        let tenant = self.tenant.clone().unwrap_or_else(|| "DEFAULT".into());
        for (key, value) in [("target_name", &target_name), ("tenant", &tenant)] {
            ensure!(
                !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "[hawkbit] {key} {value:?} may hold only letters, digits, '-', '_' and '.'"
            );
        }
        Ok(Hawkbit {
            server: server_host(self.server.as_deref().unwrap_or_default())?,
            target_name,
            auth_token_file: resolve(self.auth_token_file.as_deref().unwrap_or(Path::new("")))?,
            ca_file: resolve(self.ca_file.as_deref().unwrap_or(Path::new("")))?,
            tenant,
        })
    }
}

/// `https://host[:port][/]` → `host[:port]`: the client speaks TLS only to it. Pure.
pub fn server_host(url: &str) -> Result<String> {
    let Some(rest) = url.strip_prefix("https://") else {
        bail!("[hawkbit] server {url:?} must be an https:// URL: the token must not cross the network in clear");
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    ensure!(
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)),
        "[hawkbit] server {url:?} must be https://host or https://host:port, with no path"
    );
    Ok(host.to_string())
}

/// The token file's one token. Pure.
pub fn parse_token(text: &str) -> Result<String> {
    let token = text.trim();
    ensure!(
        !token.is_empty() && token.chars().all(|c| c.is_ascii_graphic()),
        "the hawkBit token file must hold one token (printable, no spaces)"
    );
    Ok(token.to_string())
}

/// Where the client downloads a bundle before RAUC installs it (RAM; the board's RAUC reads it
/// from there).
pub const BUNDLE_DOWNLOAD: &str = "/tmp/berth-update.raucb";

/// rauc-hawkbit-updater's `config.conf`. Pure.
pub fn render_config(hawkbit: &Hawkbit, token: &str) -> String {
    format!(
        "# Made by cargo xtask image from [hawkbit] in berth.toml (docs/updates.md).\n\
         [client]\n\
         hawkbit_server = {server}\n\
         ssl = true\n\
         ssl_verify = true\n\
         tenant_id = {tenant}\n\
         target_name = {target}\n\
         auth_token = {token}\n\
         bundle_download_location = {BUNDLE_DOWNLOAD}\n\
         retry_wait = 300\n\
         connect_timeout = 20\n\
         timeout = 60\n\
         post_update_reboot = true\n\
         log_level = message\n",
        server = hawkbit.server,
        tenant = hawkbit.tenant,
        target = hawkbit.target_name,
    )
}

/// The unit's drop-in: the settings reach the client's user only as a credential (`%d` is its
/// credentials folder), and the one CA named is its whole trust store (libcurl reads both the
/// bundle file and `/etc/ssl/certs`).
pub const DROP_IN: &str = "\
# Made by cargo xtask image from [hawkbit] in berth.toml (docs/updates.md).
[Service]
LoadCredential=config.conf:/etc/rauc-hawkbit-updater/config.conf
ExecStart=
ExecStart=/usr/bin/rauc-hawkbit-updater -s -c %d/config.conf
TemporaryFileSystem=/etc/ssl/certs:ro
BindReadOnlyPaths=/etc/rauc-hawkbit-updater/ca.pem:/etc/ssl/certs/ca-certificates.crt
";

/// The preset that enables the client, ahead of the board's `50-berth-updates.preset`.
pub const ENABLE_PRESET: &str = "enable rauc-hawkbit-updater.service\n";

/// Stage the client's files under `root` (emptied first) for post-build.sh.
pub fn stage(hawkbit: &Hawkbit, root: &Path) -> Result<()> {
    let token_text = std::fs::read_to_string(&hawkbit.auth_token_file).with_context(|| {
        format!(
            "could not read the hawkBit token file {}",
            hawkbit.auth_token_file.display()
        )
    })?;
    let token =
        parse_token(&token_text).with_context(|| hawkbit.auth_token_file.display().to_string())?;
    let ca = std::fs::read_to_string(&hawkbit.ca_file).with_context(|| {
        format!(
            "could not read the hawkBit server's CA {}",
            hawkbit.ca_file.display()
        )
    })?;
    ensure!(
        ca.contains("-----BEGIN CERTIFICATE-----") && !ca.contains("PRIVATE KEY"),
        "{} is not a PEM CA certificate (and only certificates)",
        hawkbit.ca_file.display()
    );
    if root.exists() {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("could not empty {}", root.display()))?;
    }
    let files: [(&str, &str, u32); 4] = [
        (
            "etc/rauc-hawkbit-updater/config.conf",
            &render_config(hawkbit, &token),
            0o600,
        ),
        ("etc/rauc-hawkbit-updater/ca.pem", &ca, 0o644),
        (
            "etc/systemd/system/rauc-hawkbit-updater.service.d/berth.conf",
            DROP_IN,
            0o644,
        ),
        (
            "usr/lib/systemd/system-preset/20-berth-hawkbit.preset",
            ENABLE_PRESET,
            0o644,
        ),
    ];
    for (name, text, mode) in files {
        let path = root.join(name);
        let dir = path.parent().expect("staged files are in folders");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
        crate::rauc::set_mode(&path, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HawkbitTable {
        HawkbitTable {
            server: Some("https://hawkbit.example.net:8443/".into()),
            target_name: Some("xu4-lab-07".into()),
            auth_token_file: Some("token".into()),
            ca_file: Some("ca.pem".into()),
            tenant: None,
        }
    }

    fn resolve(p: &Path) -> Result<PathBuf> {
        Ok(Path::new("/repo").join(p))
    }

    #[test]
    fn a_complete_table_resolves() {
        let h = table().complete(resolve).unwrap();
        assert_eq!(h.server, "hawkbit.example.net:8443");
        assert_eq!(h.tenant, "DEFAULT");
        assert_eq!(h.auth_token_file, PathBuf::from("/repo/token"));
    }

    #[test]
    fn a_partial_table_names_what_is_missing() {
        let partial = HawkbitTable {
            server: Some("https://h".into()),
            ..Default::default()
        };
        let err = partial.complete(resolve).unwrap_err().to_string();
        assert!(
            err.contains("target_name, auth_token_file, ca_file"),
            "{err}"
        );
    }

    #[test]
    fn only_https_servers_and_plain_names() {
        assert!(server_host("http://h").is_err());
        assert!(server_host("https://h/api").is_err());
        assert!(server_host("https://").is_err());
        assert_eq!(
            server_host("https://[fd00::1]:443").unwrap(),
            "[fd00::1]:443"
        );
        let mut t = table();
        t.target_name = Some("a b\n[client]".into());
        assert!(t.complete(resolve).is_err());
        assert!(parse_token("a b").is_err() && parse_token("\n").is_err());
        assert_eq!(parse_token("cb115a72\n").unwrap(), "cb115a72");
    }

    #[test]
    fn config_verifies_tls_and_carries_the_token() {
        let h = table().complete(resolve).unwrap();
        let text = render_config(&h, "s3cret");
        for line in [
            "hawkbit_server = hawkbit.example.net:8443\n",
            "ssl = true\n",
            "ssl_verify = true\n",
            "target_name = xu4-lab-07\n",
            "auth_token = s3cret\n",
            "tenant_id = DEFAULT\n",
        ] {
            assert!(text.contains(line), "{line:?} not in {text}");
        }
    }

    #[test]
    fn staging_writes_a_root_only_config_and_the_enabling_preset() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&token, "s3cret\n").unwrap();
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let h = Hawkbit {
            auth_token_file: token.clone(),
            ca_file: ca.clone(),
            ..table().complete(resolve).unwrap()
        };
        let root = dir.path().join("rootfs");
        stage(&h, &root).unwrap();
        let conf = root.join("etc/rauc-hawkbit-updater/config.conf");
        assert_eq!(
            std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&conf)
            .unwrap()
            .contains("auth_token = s3cret\n"));
        let preset = root.join("usr/lib/systemd/system-preset/20-berth-hawkbit.preset");
        assert_eq!(std::fs::read_to_string(preset).unwrap(), ENABLE_PRESET);

        std::fs::write(&ca, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert!(stage(&h, &root).is_err());
    }
}
