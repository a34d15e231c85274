//! What makes two builds of the same commit bit-identical: the environment the xtask gives
//! Buildroot, genimage and mkfs (SOURCE_DATE_EPOCH from this repo's last commit, and so on).
//!
//! The rest of the recipe lives in data, not here: `BR2_REPRODUCIBLE=y` in the defconfig (which
//! makes Buildroot's fs/erofs/erofs.mk pass `mkfs.erofs -T $(SOURCE_DATE_EPOCH) -U 0000…`), the
//! verity salt taken from the root's own digest in `board/odroid-xu4/post-image.sh`, the MBR disk
//! signature and `mkdosfs --invariant -i` in `board/odroid-xu4/genimage.cfg`. The umask is not an environment variable: Buildroot's
//! top-level Makefile re-runs itself under `umask 0022`, so nothing needs doing for it here.
//! See docs/reproducibility.md.
//!
//! This file uses only std, anyhow and xshell so the integration tests can include it as is.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// Environment variables every build step runs with.
pub fn build_env(repo: &Path) -> Result<Vec<(String, String)>> {
    Ok(env_for_epoch(source_date_epoch(repo)?))
}

/// The commit time of `repo`'s HEAD (`git log -1 --format=%ct`), in seconds since 1970.
///
/// The committer date, not the author date: a rebase or cherry-pick makes a new commit whose
/// output should carry the time it was made.
pub fn source_date_epoch(repo: &Path) -> Result<u64> {
    let sh = Shell::new().context("could not start a shell to ask git for the commit time")?;
    let out = cmd!(sh, "git -C {repo} log -1 --format=%ct")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| {
            format!(
                "could not read the last commit time of {} with git: SOURCE_DATE_EPOCH comes from it, \
                 so builds must run in a git checkout with at least one commit",
                repo.display()
            )
        })?;
    parse_epoch(&out)
        .with_context(|| format!("git gave an unusable commit time for {}", repo.display()))
}

/// `"1700000000\n"` → 1700000000; anything else is an error naming the text.
pub fn parse_epoch(text: &str) -> Result<u64> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("the commit time is empty (a repository without commits?)");
    }
    let epoch: u64 = trimmed
        .parse()
        .with_context(|| format!("{trimmed:?} is not a number of seconds since 1970"))?;
    if epoch == 0 {
        bail!("a commit time of 0 is not believable");
    }
    Ok(epoch)
}

/// The variables, for a given SOURCE_DATE_EPOCH.
///
/// - `SOURCE_DATE_EPOCH`: Buildroot uses it instead of its own commit date (its Makefile only sets
///   it when unset), touches the target tree to it, stamps the kernel with it; mtools clamps
///   the vfat file times to it; mkfs.erofs takes the image's times from it (and from the `-T`
///   Buildroot passes); U-Boot and the Go toolchain read it.
/// - `TZ`, `LC_ALL`, `LANG`: date formatting and sort order; Buildroot sets them itself under
///   BR2_REPRODUCIBLE, but genimage and the post-image scripts run outside that.
pub fn env_for_epoch(epoch: u64) -> Vec<(String, String)> {
    let epoch = epoch.to_string();
    [
        ("SOURCE_DATE_EPOCH", epoch.as_str()),
        ("TZ", "UTC"),
        ("LC_ALL", "C"),
        ("LANG", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_commit_time() {
        assert_eq!(parse_epoch("1700000000\n").unwrap(), 1_700_000_000);
        assert_eq!(parse_epoch("  42 ").unwrap(), 42);
    }

    #[test]
    fn refuses_unusable_commit_times() {
        assert!(parse_epoch("").is_err());
        assert!(parse_epoch("\n").is_err());
        assert!(parse_epoch("0").is_err());
        assert!(parse_epoch("-5").is_err());
        let err = format!(
            "{:#}",
            parse_epoch("fatal: not a git repository").unwrap_err()
        );
        assert!(err.contains("not a git repository"), "{err}");
    }

    #[test]
    fn every_time_source_gets_the_same_epoch() {
        let env = env_for_epoch(1_700_000_000);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SOURCE_DATE_EPOCH"), Some("1700000000"));
        assert_eq!(get("TZ"), Some("UTC"));
        assert_eq!(get("LC_ALL"), Some("C"));
        let mut names: Vec<_> = env.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), env.len(), "no variable is set twice");
    }

    #[test]
    fn epoch_comes_from_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let sh = Shell::new().unwrap();
        let repo = dir.path();
        let git = |args: &[&str]| {
            cmd!(sh, "git -C {repo} {args...}")
                .env("GIT_COMMITTER_DATE", "@1700000123 +0000")
                .env("GIT_AUTHOR_DATE", "@1600000000 +0000")
                .quiet()
                .ignore_stdout()
                .run()
                .unwrap()
        };
        git(&["init", "-q"]);
        assert!(
            source_date_epoch(repo).is_err(),
            "a repository without commits has no epoch"
        );
        std::fs::write(repo.join("f"), "x").unwrap();
        git(&["add", "f"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-q",
            "-m",
            "m",
        ]);
        assert_eq!(source_date_epoch(repo).unwrap(), 1_700_000_123);
        let env = build_env(repo).unwrap();
        assert!(env.contains(&("SOURCE_DATE_EPOCH".into(), "1700000123".into())));
    }
}
