//! The key and certificate update bundles are signed with. Production builds name theirs
//! (`--signing-key`/`--signing-cert`, or `signing_key`/`signing_cert` in berth.toml, always
//! both); otherwise a development pair is made in the output folder on the first build and
//! reused by every later one, so boards flashed from it accept its later bundles. Neither is
//! ever written into the checkout, and only the certificate goes into the image (as RAUC's
//! keyring, through `BERTH_RAUC_KEYRING`).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use xshell::{cmd, Shell};

/// The folder in the output folder that holds the development pair.
pub const DEVELOPMENT_DIR: &str = "rauc-signing";
pub const DEVELOPMENT_KEY: &str = "development.key.pem";
pub const DEVELOPMENT_CERT: &str = "development.cert.pem";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningPair {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// Made by this xtask for development, not named by the user.
    pub development: bool,
}

/// The pair the user named: both or neither. Pure.
pub fn named(key: Option<PathBuf>, cert: Option<PathBuf>) -> Result<Option<SigningPair>> {
    match (key, cert) {
        (Some(key), Some(cert)) => Ok(Some(SigningPair {
            key,
            cert,
            development: false,
        })),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => bail!(
            "name both the signing key and its certificate (--signing-key and --signing-cert, or \
             signing_key and signing_cert in berth.toml), or neither for the development pair"
        ),
    }
}

/// What a PEM private key and a PEM certificate must look like. Pure.
pub fn check_pem(key_text: &str, cert_text: &str) -> Result<()> {
    ensure!(
        key_text.contains("-----BEGIN") && key_text.contains("PRIVATE KEY-----"),
        "the signing key is not a PEM private key"
    );
    ensure!(
        cert_text.contains("-----BEGIN CERTIFICATE-----"),
        "the signing certificate is not a PEM certificate"
    );
    ensure!(
        !cert_text.contains("PRIVATE KEY"),
        "the signing certificate file also holds a private key; it goes into the image, so give \
         the certificate alone"
    );
    Ok(())
}

/// The pair to sign with: the one named, checked, else the development pair in `output`, made
/// with the host's openssl when it is not there yet. The key must match the certificate.
pub fn resolve(sh: &Shell, named: Option<SigningPair>, output: &Path) -> Result<SigningPair> {
    ensure!(
        which::which("openssl").is_ok(),
        "openssl is not installed; it makes the development signing key and checks that a \
         signing key matches its certificate (Debian: apt-get install openssl)"
    );
    let pair = match named {
        Some(pair) => pair,
        None => development_pair(sh, &output.join(DEVELOPMENT_DIR))?,
    };
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read the signing {what} {}", path.display()))
    };
    check_pem(&read(&pair.key, "key")?, &read(&pair.cert, "certificate")?)
        .with_context(|| format!("{} and {}", pair.key.display(), pair.cert.display()))?;
    let (key, cert) = (&pair.key, &pair.cert);
    let from_key = cmd!(sh, "openssl pkey -in {key} -pubout")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("openssl cannot read the signing key {}", key.display()))?;
    let from_cert = cmd!(sh, "openssl x509 -in {cert} -noout -pubkey")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| {
            format!(
                "openssl cannot read the signing certificate {}",
                cert.display()
            )
        })?;
    ensure!(
        from_key == from_cert,
        "the signing key {} does not belong to the certificate {}",
        key.display(),
        cert.display()
    );
    Ok(pair)
}

/// The development pair in `dir`, made on the first build (an EC P-256 key, mode 0600, and a
/// self-signed certificate valid for 30 years) and reused afterwards.
fn development_pair(sh: &Shell, dir: &Path) -> Result<SigningPair> {
    let pair = SigningPair {
        key: dir.join(DEVELOPMENT_KEY),
        cert: dir.join(DEVELOPMENT_CERT),
        development: true,
    };
    match (pair.key.is_file(), pair.cert.is_file()) {
        (true, true) => return Ok(pair),
        (false, false) => {}
        _ => bail!(
            "{} holds only half of the development signing pair ({DEVELOPMENT_KEY}, \
             {DEVELOPMENT_CERT}); boards flashed earlier trust the old certificate, so restore the \
             missing file, or remove the folder to start a new pair",
            dir.display()
        ),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    crate::rauc::set_mode(dir, 0o700)?;
    let key = crate::release::partial_path(&pair.key);
    let cert = crate::release::partial_path(&pair.cert);
    let subject = "/O=Berth/CN=Berth development update signing";
    cmd!(
        sh,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 10950
         -subj {subject} -keyout {key} -out {cert}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .context("openssl could not make the development signing key")?;
    crate::rauc::set_mode(&key, 0o600)?;
    std::fs::rename(&cert, &pair.cert)
        .and_then(|()| std::fs::rename(&key, &pair.key))
        .with_context(|| format!("could not move the development pair into {}", dir.display()))?;
    eprintln!(
        "Signing: made a development key and certificate in {} (reused by later builds; name \
         production ones with --signing-key/--signing-cert)",
        dir.display()
    );
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_or_neither_is_named() {
        assert_eq!(named(None, None).unwrap(), None);
        let pair = named(Some("k".into()), Some("c".into())).unwrap().unwrap();
        assert!(!pair.development);
        for half in [named(Some("k".into()), None), named(None, Some("c".into()))] {
            let err = half.unwrap_err().to_string();
            assert!(err.contains("--signing-key and --signing-cert"), "{err}");
        }
    }

    #[test]
    fn pem_shapes_are_checked() {
        let key = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        check_pem(key, cert).unwrap();
        assert!(check_pem(cert, cert).is_err());
        assert!(check_pem(key, key).is_err());
        let err = check_pem(key, &format!("{cert}{key}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate alone"), "{err}");
    }

    #[test]
    fn the_development_pair_is_made_once_and_reused() {
        let sh = Shell::new().unwrap();
        if cmd!(sh, "openssl version").quiet().read().is_err() {
            crate::util::skip(
                "the_development_pair_is_made_once_and_reused",
                "openssl is not installed (apt-get install openssl)",
            );
            return;
        }
        let output = tempfile::tempdir().unwrap();
        let first = resolve(&sh, None, output.path()).unwrap();
        assert!(first.development);
        let key_text = std::fs::read_to_string(&first.key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = resolve(&sh, None, output.path()).unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read_to_string(&again.key).unwrap(), key_text);

        // A key that is not the certificate's is refused before the build.
        let other = tempfile::tempdir().unwrap();
        let stranger = resolve(&sh, None, other.path()).unwrap();
        let mixed = named(Some(stranger.key), Some(first.cert.clone())).unwrap();
        let err = format!("{:#}", resolve(&sh, mixed, output.path()).unwrap_err());
        assert!(err.contains("does not belong to the certificate"), "{err}");

        // Half a pair is not silently replaced: boards trust the old certificate.
        std::fs::remove_file(&first.cert).unwrap();
        let err = format!("{:#}", resolve(&sh, None, output.path()).unwrap_err());
        assert!(err.contains("only half"), "{err}");
    }
}
