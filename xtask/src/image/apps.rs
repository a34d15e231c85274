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

/// The apps of an `apps.toml`, parsed and audited, with where the board mounts its data.
pub struct Declared {
    path: PathBuf,
    apps: Vec<crate::apps::spec::App>,
    data_mount: String,
}

/// Parse and audit `apps_file` before any long work: a bad file or a weakening without a reason
/// stops the build here, not after Buildroot is fetched.
pub fn declared(repo: &Repo, board: &Board, apps_file: Option<&Path>) -> Result<Option<Declared>> {
    let Some(path) = apps_file else {
        return Ok(None);
    };
    let (limits, data_mount) = board_limits(repo, board)?;
    let apps = load(path, &limits)?;
    let report = audit::audit(&apps, &audit::Rules::load(repo)?);
    report.verdict().with_context(|| {
        format!(
            "{} weakens the hardening without a reason:\n{}",
            path.display(),
            report.render_attention()
        )
    })?;
    Ok(Some(Declared {
        path: path.to_path_buf(),
        apps,
        data_mount,
    }))
}

/// [`declared`], then [`stage`]: what `image` does with `--apps`, in one call.
pub fn stage_for_image(
    repo: &Repo,
    board: &Board,
    apps_file: Option<&Path>,
    output: &Path,
    host: &Host,
) -> Result<Staged> {
    stage(declared(repo, board, apps_file)?, output, host)
}

/// Fetch each declared image and stage the fragment in `<output>/berth-apps`. Without apps, none
/// is staged and `post-build.sh` removes those of an earlier build.
pub fn stage(declared: Option<Declared>, output: &Path, host: &Host) -> Result<Staged> {
    let Some(Declared {
        path,
        apps,
        data_mount,
    }) = declared
    else {
        return Ok(Staged::default());
    };
    let dest: PathBuf = output.join("berth-apps");
    let records = stage_rootfs(&apps, &data_mount, &dest, host)
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
