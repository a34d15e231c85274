//! What `cargo xtask image` does for updates (docs/updates.md): before the build, the signing
//! pair and the hawkBit client's files, handed to post-build.sh; after it, the signed bundle
//! `berth-<version>-<board>.raucb` and the certificate that checks it, both listed in
//! SHA256SUMS and the manifest.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use xshell::Shell;

use super::hawkbit::{self, Hawkbit};
use super::signing::{self, SigningPair};
use crate::rauc::{self, Rauc};
use crate::release::{self, BUNDLE_SUFFIX, KEYRING_FILE};

/// The update settings gathered from the flags and berth.toml.
#[derive(Debug, Default)]
pub struct UpdateSettings {
    pub signing: Option<SigningPair>,
    pub hawkbit: Option<Hawkbit>,
}

/// Where the hawkBit files are staged in the output folder, and the bundle's content laid out.
const HAWKBIT_ROOTFS: &str = "berth-hawkbit-rootfs";
const BUNDLE_CONTENT: &str = "rauc-bundle";

/// Ready for the build: the board's system.conf agrees with the bundles' compatible, the
/// signing pair exists, the hawkBit files are staged (or an earlier build's removed).
pub struct Prepared {
    pub signing: SigningPair,
    /// For Buildroot's environment: `BERTH_RAUC_KEYRING`, and `BERTH_HAWKBIT_ROOTFS` with hawkBit.
    pub env: Vec<(String, String)>,
    board: String,
    board_dir: PathBuf,
}

pub fn prepare(
    sh: &Shell,
    settings: UpdateSettings,
    output: &Path,
    board_dir: &Path,
    board: &str,
) -> Result<Prepared> {
    rauc::check_system_conf(board_dir, board)?;
    remove_old_bundles(&output.join("images"))?;
    let signing = signing::resolve(sh, settings.signing, output)?;
    let mut env = vec![(
        "BERTH_RAUC_KEYRING".to_string(),
        signing.cert.display().to_string(),
    )];
    let staged = output.join(HAWKBIT_ROOTFS);
    match &settings.hawkbit {
        Some(settings) => {
            hawkbit::stage(settings, &staged)?;
            env.push(("BERTH_HAWKBIT_ROOTFS".into(), staged.display().to_string()));
            eprintln!(
                "Updates: hawkBit client enabled for {} as target {}",
                settings.server, settings.target_name
            );
        }
        None if staged.exists() => std::fs::remove_dir_all(&staged)
            .with_context(|| format!("could not remove {}", staged.display()))?,
        None => {}
    }
    Ok(Prepared {
        signing,
        env,
        board: board.to_string(),
        board_dir: board_dir.to_path_buf(),
    })
}

impl Prepared {
    /// After the build: sign the bundle with Buildroot's host rauc, put the certificate beside
    /// it, and check the one with the other. Returns both names in `<output>/images`.
    pub fn write_bundle(
        &self,
        sh: &Shell,
        output: &Path,
        commit: &str,
        dirty: bool,
        source_date_epoch: u64,
    ) -> Result<Vec<String>> {
        let images = output.join("images");
        let version = release::version(commit, dirty);
        let compatible = rauc::compatible(&self.board);
        let manifest = rauc::render_manifest(&compatible, &version, commit)?;
        let content = output.join(BUNDLE_CONTENT);
        rauc::stage_content(&content, &images, &self.board_dir, &manifest)?;
        let name = release::bundle_name(&version, &self.board);
        let bundle = images.join(&name);
        let host_rauc = Rauc::in_buildroot_output(output);
        ensure!(
            host_rauc.binary.is_file(),
            "the build did not produce {} (BR2_PACKAGE_HOST_RAUC)",
            host_rauc.binary.display()
        );
        let pair = (self.signing.key.as_path(), self.signing.cert.as_path());
        host_rauc.bundle(sh, &content, pair, source_date_epoch, &bundle)?;
        std::fs::remove_dir_all(&content)
            .with_context(|| format!("could not remove {}", content.display()))?;
        let keyring = images.join(KEYRING_FILE);
        std::fs::copy(&self.signing.cert, &keyring).with_context(|| {
            format!(
                "could not copy the signing certificate to {}",
                keyring.display()
            )
        })?;
        let signed_for = host_rauc.check(sh, &bundle, &keyring)?;
        ensure!(
            signed_for == compatible,
            "{name} was made for {signed_for}, not {compatible}"
        );
        eprintln!(
            "Update bundle {name} signed with {}{}",
            self.signing.cert.display(),
            if self.signing.development {
                " (development)"
            } else {
                ""
            }
        );
        Ok(vec![name, KEYRING_FILE.to_string()])
    }
}

/// An earlier build's bundle and its certificate must not lie beside images they do not match.
fn remove_old_bundles(images: &Path) -> Result<()> {
    let keyring = images.join(KEYRING_FILE);
    if keyring.exists() {
        std::fs::remove_file(&keyring)
            .with_context(|| format!("could not remove {}", keyring.display()))?;
    }
    let Ok(entries) = std::fs::read_dir(images) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("could not list {}", images.display()))?
            .path();
        if path.to_string_lossy().ends_with(BUNDLE_SUFFIX) {
            std::fs::remove_file(&path)
                .with_context(|| format!("could not remove the old bundle {}", path.display()))?;
        }
    }
    Ok(())
}
