//! What `cargo xtask image` does with `--apps FILE` (or `apps` in berth.toml): check and audit
//! the file before any long work, then fetch every image and stage the root filesystem fragment
//! that `post-build.sh` copies in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::apps::{board_limits, load, stage_rootfs, AppRecord, ROOTFS_ENV};
use crate::audit::apps as audit;
use crate::host::Host;
use crate::project::{Board, Repo};

/// The staged apps of one image build.
#[derive(Debug, Default)]
pub struct Staged {
    /// For the manifest and the SBOM.
    pub records: Vec<AppRecord>,
    /// `(BERTH_APPS_ROOTFS, folder)` for the build's environment, when apps are declared.
    pub env: Option<(String, String)>,
}

/// Parse and audit `apps_file` (the audit's failures stop the build), fetch each image and
/// stage the fragment in `<output>/berth-apps`. Without a file, no app is staged and
/// `post-build.sh` removes those of an earlier build.
pub fn stage_for_image(
    repo: &Repo,
    board: &Board,
    apps_file: Option<&Path>,
    output: &Path,
    host: &Host,
) -> Result<Staged> {
    let Some(path) = apps_file else {
        return Ok(Staged::default());
    };
    let (limits, mount) = board_limits(repo, board)?;
    let apps = load(path, &limits)?;
    let report = audit::audit(&apps, &audit::Rules::load(repo)?);
    report.verdict().with_context(|| {
        format!(
            "{} weakens the hardening without a reason:\n{}",
            path.display(),
            report.render_attention()
        )
    })?;
    let dest: PathBuf = output.join("berth-apps");
    let records = stage_rootfs(&apps, &mount, &dest, host)
        .with_context(|| format!("could not preload the apps of {}", path.display()))?;
    eprintln!(
        "apps: {} app(s) staged in {}",
        records.len(),
        dest.display()
    );
    Ok(Staged {
        records,
        env: Some((ROOTFS_ENV.into(), dest.display().to_string())),
    })
}
