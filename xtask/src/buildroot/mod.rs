//! Locating, fetching and verifying the pinned Buildroot tree, and running `make` in it.
//!
//! A tree is used only when it holds exactly the pinned commit's files.
//! A git checkout (a clone, or a worktree whose `.git` is a file) proves that with its HEAD and a
//! clean status. A tree without `.git` (a
//! `git archive` export, as CI unpacks from a tarball) cannot name its commit, and its Makefile's
//! version cannot either (a branch commit and its last tag carry the same `BR2_VERSION`), so its
//! files are hashed into a git tree id and compared with the pinned commit's tree
//! ([`BUILDROOT_TREE`]): the same check whatever archive or compression carried it.
//! The cache clone is written beside its final place and renamed when complete, with a
//! marker naming the commit, so an interrupted or mismatched cache is detected and refetched.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

mod series;

pub use series::SERIES_DIR;

use crate::host::Host;
use crate::kconfig::makefile_variable;
use crate::project::{
    Repo, BUILDROOT_COMMIT, BUILDROOT_GIT_URL, BUILDROOT_REF, BUILDROOT_RELEASE, BUILDROOT_TREE,
    BUILDROOT_VERSION,
};

/// Berth's BR2_EXTERNAL tree, in a checkout.
const BR2_EXTERNAL: &str = "br2-external";

/// A verified Buildroot tree.
#[derive(Debug, Clone)]
pub struct Buildroot {
    pub root: PathBuf,
    /// The BR2_EXTERNAL tree every `make` gets (the checkout's `br2-external/`).
    pub external: PathBuf,
    /// The commit whose files the tree holds (always the pinned one once verified).
    pub commit: String,
    /// Berth's patch series applied to the tree (None: the series is empty).
    pub series: Option<AppliedSeries>,
}

/// What `patches/buildroot` put on top of the pinned commit.
#[derive(Debug, Clone)]
pub struct AppliedSeries {
    pub patches: usize,
    /// `series::digest` of the series.
    pub sha256: String,
}

/// Where a tree came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--buildroot DIR`
    Argument,
    /// the `BERTH_BUILDROOT` environment variable
    Environment,
    /// Berth's cache folder
    Cache,
}

/// The cache clone's folder in Berth's cache folder `cache`: `<cache>/buildroot-<version>`.
pub fn cache_path(cache: &Path) -> PathBuf {
    cache.join(format!("buildroot-{BUILDROOT_REF}"))
}

fn sibling(tree: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", tree.display()))
}

fn marker_path(tree: &Path) -> PathBuf {
    sibling(tree, "complete")
}

/// The tree to build the checkout `repo` with on `host`: the pinned tree (`explicit`, else the
/// host's `BERTH_BUILDROOT`, else the clone in the host's cache folder, fetched when `fetch` is
/// true) with the checkout's patch series applied in Berth's own copy, in that cache folder.
pub fn resolve(
    repo: &Repo,
    host: &Host,
    explicit: Option<&Path>,
    fetch: bool,
) -> Result<Buildroot> {
    let sh = host.shell()?;
    let cache = host.cache()?;
    let given = explicit.map(|dir| (dir, Origin::Argument)).or_else(|| {
        host.buildroot
            .as_deref()
            .map(|dir| (dir, Origin::Environment))
    });
    let tree = match given {
        Some((dir, origin)) => verify(&sh, repo, dir, origin)?,
        None => cached(&sh, repo, &cache_path(cache), fetch)?,
    };
    with_series(&sh, repo, tree, cache)
}

/// The clone at `cache`. When it is missing, partial or mismatched, it is (re)fetched if `fetch`
/// is true and refused otherwise.
fn cached(sh: &Shell, repo: &Repo, cache: &Path, fetch: bool) -> Result<Buildroot> {
    let complete = std::fs::read_to_string(marker_path(cache))
        .map(|m| m.trim() == BUILDROOT_COMMIT)
        .unwrap_or(false);
    let problem = if !cache.exists() {
        format!(
            "there is no Buildroot {BUILDROOT_RELEASE} in the cache ({})",
            cache.display()
        )
    } else if !complete {
        format!(
            "the cached Buildroot at {} is incomplete (an interrupted fetch?)",
            cache.display()
        )
    } else {
        match verify(sh, repo, cache, Origin::Cache) {
            Ok(tree) => return Ok(tree),
            Err(err) => format!("the cached Buildroot is not usable: {err:#}"),
        }
    };
    if !fetch {
        bail!(
            "{problem}; run `cargo xtask image` to fetch it, or pass --buildroot DIR \
             (or set BERTH_BUILDROOT) to a Buildroot {BUILDROOT_RELEASE} checkout at {BUILDROOT_COMMIT}"
        );
    }
    eprintln!("{problem}: fetching it from {BUILDROOT_GIT_URL}");
    // A failed fetch says what sent it to the network.
    fetch_into(sh, cache).context(problem)?;
    verify(sh, repo, cache, Origin::Cache)
}

/// `tree` with the series applied: Berth's copy when it is current, else a new one. An empty
/// series leaves the verified tree as it is.
fn with_series(sh: &Shell, repo: &Repo, tree: Buildroot, cache: &Path) -> Result<Buildroot> {
    let patches = series::read(repo.root())?;
    if patches.is_empty() {
        return Ok(tree);
    }
    let digest = series::digest(&patches);
    let (copy, marker_path) = series::copy_paths(cache, &tree.commit);
    let patched = |root: PathBuf| Buildroot {
        root,
        external: tree.external.clone(),
        commit: tree.commit.clone(),
        series: Some(AppliedSeries {
            patches: patches.len(),
            sha256: digest.clone(),
        }),
    };
    // Two xtask processes (tests run in parallel; a user may run check beside image) must not
    // make the copy at once: each would remove the other's half-made one.
    let lock_path = sibling(&copy, "lock");
    let cache = copy
        .parent()
        .context("the cache path has no parent folder")?;
    std::fs::create_dir_all(cache)
        .with_context(|| format!("could not create the cache folder {}", cache.display()))?;
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("could not create the lock file {}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("could not lock {}", lock_path.display()))?;
    let marker = std::fs::read_to_string(&marker_path)
        .ok()
        .and_then(|text| series::Marker::parse(&text));
    if let Some(marker) = marker {
        let current = marker.commit == tree.commit
            && marker.series == digest
            && copy.is_dir()
            && crate::git_tree::id(&copy)? == marker.tree;
        if current {
            return Ok(patched(copy));
        }
        eprintln!(
            "The patched Buildroot copy {} no longer matches the pinned commit and {} \
             (changed series or files): making it again",
            copy.display(),
            series::SERIES_DIR
        );
    }
    let _ = std::fs::remove_file(&marker_path);
    let partial = sibling(&copy, "partial");
    for stale in [&partial, &copy] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("could not remove the stale copy {}", stale.display()))?;
        }
    }
    eprintln!(
        "Applying {} patch(es) from {} to a copy of Buildroot {BUILDROOT_COMMIT} in {}",
        patches.len(),
        series::SERIES_DIR,
        copy.display()
    );
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("could not create {}", partial.display()))?;
    let copied = copy_pinned_files(sh, &tree.root, &partial)
        .and_then(|()| series::apply(sh, &partial, &patches));
    if let Err(err) = copied {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(err);
    }
    let tree_id = crate::git_tree::id(&partial)?;
    std::fs::rename(&partial, &copy)
        .with_context(|| format!("could not move the patched copy into {}", copy.display()))?;
    let marker = series::Marker {
        commit: tree.commit.clone(),
        series: digest.clone(),
        tree: tree_id,
    };
    std::fs::write(&marker_path, marker.render())
        .with_context(|| format!("could not write {}", marker_path.display()))?;
    Ok(patched(copy))
}

/// Whether `dir` is a git checkout of its own: `.git` is a folder in a clone and a file
/// (`gitdir: …`) in a worktree made with `git worktree add`; git answers for both alike.
fn is_git_checkout(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// Copy the files of the verified tree `tree` into the empty folder `to`: a git checkout's
/// committed files (not its `.git`, nor untracked files such as an in-tree `output/`, which
/// Buildroot's Makefiles would read), else the whole export. The copy must hash to the pinned
/// tree id, whatever git's filters or the copy did.
fn copy_pinned_files(sh: &Shell, tree: &Path, to: &Path) -> Result<()> {
    let failed = || format!("could not copy {} to {}", tree.display(), to.display());
    if is_git_checkout(tree) {
        // `--prefix` is read from inside `tree`, so it must not be relative.
        let to = std::path::absolute(to).with_context(failed)?;
        let prefix = format!("{}/", to.display());
        cmd!(
            sh,
            "git -C {tree} checkout-index --all --ignore-skip-worktree-bits --prefix={prefix}"
        )
        .quiet()
        .run()
        .with_context(failed)?;
    } else {
        let from = tree.join(".");
        cmd!(sh, "cp -a {from} {to}")
            .quiet()
            .run()
            .with_context(failed)?;
    }
    let copied = crate::git_tree::id(to)?;
    if copied != BUILDROOT_TREE {
        bail!(
            "the copy of {} in {} does not hold the files of commit {BUILDROOT_COMMIT}: their \
             git tree id is {copied}, the commit's is {BUILDROOT_TREE} (a git filter or \
             core.autocrlf changing files on checkout?)",
            tree.display(),
            to.display()
        );
    }
    Ok(())
}

/// Check that `dir` is Buildroot at the pinned version (and commit, for a git checkout), to build
/// the checkout `repo` with.
pub fn verify(sh: &Shell, repo: &Repo, dir: &Path, origin: Origin) -> Result<Buildroot> {
    let what = match origin {
        Origin::Argument => "the Buildroot tree given with --buildroot",
        Origin::Environment => "the Buildroot tree named by BERTH_BUILDROOT",
        Origin::Cache => "the cached Buildroot tree",
    };
    let makefile = dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile).with_context(|| {
        format!(
            "{what} ({}) has no readable Makefile: is it a Buildroot tree?",
            dir.display()
        )
    })?;
    let version = makefile_variable(&text, "BR2_VERSION").with_context(|| {
        format!(
            "{what} ({}) does not look like Buildroot: its Makefile sets no BR2_VERSION",
            dir.display()
        )
    })?;
    if version != BUILDROOT_VERSION {
        bail!(
            "{what} ({}) is Buildroot {version}, but Berth is pinned to {BUILDROOT_RELEASE} \
             at {BUILDROOT_COMMIT}, whose Makefile says {BUILDROOT_VERSION}",
            dir.display()
        );
    }
    if !is_git_checkout(dir) {
        let tree = crate::git_tree::id(dir)
            .with_context(|| format!("could not hash the files of {what} ({})", dir.display()))?;
        if tree != BUILDROOT_TREE {
            bail!(
                "{what} ({}) has no .git and its files are not those of commit {BUILDROOT_COMMIT}: \
                 their git tree id is {tree}, the commit's is {BUILDROOT_TREE} (a release tarball \
                 with generated files, or a changed or added file?); use a git checkout of \
                 {BUILDROOT_RELEASE} or `git archive {BUILDROOT_COMMIT}` unpacked as it is",
                dir.display()
            );
        }
        return Ok(Buildroot {
            root: dir.to_path_buf(),
            external: repo.path(BR2_EXTERNAL),
            commit: BUILDROOT_COMMIT.to_string(),
            series: None,
        });
    }
    let head = cmd!(sh, "git -C {dir} rev-parse HEAD")
        .quiet()
        .read()
        .with_context(|| {
            format!(
                "could not read the git commit of {what} ({})",
                dir.display()
            )
        })?;
    if head != BUILDROOT_COMMIT {
        bail!(
            "{what} ({}) is at commit {head}, not {BUILDROOT_COMMIT} ({BUILDROOT_REF})",
            dir.display()
        );
    }
    let changes = cmd!(sh, "git -C {dir} status --porcelain --untracked-files=no")
        .quiet()
        .read()
        .with_context(|| format!("could not ask git whether {what} has local changes"))?;
    if !changes.is_empty() {
        let first: Vec<&str> = changes.lines().take(5).collect();
        bail!(
            "{what} ({}) has local changes to tracked files, so it is not the pinned Buildroot: {}",
            dir.display(),
            first.join("; ")
        );
    }
    Ok(Buildroot {
        root: dir.to_path_buf(),
        external: repo.path(BR2_EXTERNAL),
        commit: head,
        series: None,
    })
}

/// Fetch the pinned commit beside `dest` and check it out, then move it into place.
fn fetch_into(sh: &Shell, dest: &Path) -> Result<()> {
    let parent = dest
        .parent()
        .context("the cache path has no parent folder")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("could not create the cache folder {}", parent.display()))?;
    let partial = sibling(dest, "partial");
    let marker = marker_path(dest);
    for stale in [&partial, dest] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("could not remove the stale tree {}", stale.display()))?;
        }
    }
    let _ = std::fs::remove_file(&marker);
    let started = std::time::Instant::now();
    // A stalled connection must not hang the build: give up below 1 KiB/s for 20 s.
    let _low_speed = sh.push_env("GIT_HTTP_LOW_SPEED_LIMIT", "1000");
    let _low_time = sh.push_env("GIT_HTTP_LOW_SPEED_TIME", "20");
    let _no_prompt = sh.push_env("GIT_TERMINAL_PROMPT", "0");
    let failed = |err: xshell::Error| {
        anyhow::Error::new(err).context(format!(
            "could not fetch Buildroot {BUILDROOT_RELEASE} from {BUILDROOT_GIT_URL} (gave up after {:.1}s; \
             no network? pass --buildroot DIR to use a tree you already have)",
            started.elapsed().as_secs_f32()
        ))
    };
    cmd!(sh, "git init --quiet {partial}")
        .run()
        .map_err(failed)?;
    // Servers hand out a reachable commit by its id, which fetches one commit, not a history; a
    // server that refuses gets asked for the whole ref the commit lives on.
    let by_id = cmd!(
        sh,
        "git -C {partial} fetch --quiet --depth 1 {BUILDROOT_GIT_URL} {BUILDROOT_COMMIT}"
    )
    .run();
    if by_id.is_err() {
        cmd!(
            sh,
            "git -C {partial} fetch --quiet {BUILDROOT_GIT_URL} {BUILDROOT_REF}"
        )
        .run()
        .map_err(failed)?;
    }
    let checkout = cmd!(
        sh,
        "git -C {partial} -c advice.detachedHead=false checkout --quiet --detach {BUILDROOT_COMMIT}"
    )
    .quiet()
    .run();
    if checkout.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "{BUILDROOT_GIT_URL} has no commit {BUILDROOT_COMMIT} on {BUILDROOT_REF}: \
             refusing to use anything else (was the ref rewritten?)"
        );
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("could not move the fetched tree into {}", dest.display()))?;
    std::fs::write(&marker, format!("{BUILDROOT_COMMIT}\n"))
        .with_context(|| format!("could not write {}", marker.display()))?;
    Ok(())
}

impl std::fmt::Display for Buildroot {
    /// The tree's path and what it holds: `<path> (commit <id> + N patch(es) from …)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (commit {}", self.root.display(), self.commit)?;
        if let Some(applied) = &self.series {
            write!(
                f,
                " + {} patch(es) from {}, series sha256 {}",
                applied.patches,
                series::SERIES_DIR,
                applied.sha256
            )?;
        }
        f.write_str(")")
    }
}

impl Buildroot {
    /// `make -C <tree> O=<output> BR2_EXTERNAL=<external> <targets>`.
    pub fn make<'a>(&self, sh: &'a Shell, output: &Path, targets: &[&str]) -> xshell::Cmd<'a> {
        let root = &self.root;
        let out = format!("O={}", output.display());
        let ext = format!("BR2_EXTERNAL={}", self.external.display());
        cmd!(
            sh,
            "make --no-print-directory -C {root} {out} {ext} {targets...}"
        )
    }

    /// Configure `output` from one of our defconfigs (`configs/<name>`).
    pub fn load_defconfig(&self, sh: &Shell, output: &Path, defconfig: &Path) -> Result<()> {
        let arg = format!("BR2_DEFCONFIG={}", defconfig.display());
        self.make(sh, output, &[&arg, "defconfig"])
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "Buildroot could not load the defconfig {}",
                    defconfig.display()
                )
            })
    }

    /// Write the minimal defconfig of the configured `output` to `defconfig` (`make savedefconfig`).
    pub fn save_defconfig(&self, sh: &Shell, output: &Path, defconfig: &Path) -> Result<()> {
        let arg = format!("BR2_DEFCONFIG={}", defconfig.display());
        self.make(sh, output, &[&arg, "savedefconfig"])
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "Buildroot could not save a defconfig to {}",
                    defconfig.display()
                )
            })
    }

    /// Buildroot's own description of every selected package (`make show-info`), as JSON.
    pub fn show_info(&self, sh: &Shell, output: &Path) -> Result<serde_json::Value> {
        let json = self
            .make(sh, output, &["-s", "show-info"])
            .quiet()
            .read()
            .context("`make show-info` failed in the configured output folder")?;
        serde_json::from_str(&json).context("`make show-info` did not print valid JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_sits_beside_the_tree() {
        assert_eq!(
            marker_path(Path::new("/c/berth/buildroot-2026.02.3")),
            PathBuf::from("/c/berth/buildroot-2026.02.3.complete")
        );
    }
}
