//! Berth's numbered patch series against the pinned Buildroot (`patches/buildroot/NNNN-*.patch`):
//! container-stack bumps cherry-picked from upstream onto the LTS branch.
//!
//! The series is applied to Berth's own copy of the verified tree, never to a tree the user
//! passed in. The copy is made beside its final place and renamed only once every patch applied,
//! with a marker naming the commit, the series digest and the patched tree's git tree id: a
//! changed series, or a changed file in the copy, makes the copy again, and a series that does
//! not apply leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

/// The series' folder inside the repository.
pub const SERIES_DIR: &str = "patches/buildroot";

/// One patch of the series.
#[derive(Debug, Clone)]
pub struct Patch {
    /// `patches/buildroot/0001-….patch`, as messages name it.
    pub name: String,
    pub body: Vec<u8>,
}

/// The series in the repository, in file name order (Buildroot's own order for patch folders).
pub fn read(repo: &Path) -> Result<Vec<Patch>> {
    let dir = repo.join(SERIES_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("could not list {}", dir.display()))?;
    names.retain(|n| n.ends_with(".patch"));
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let body = std::fs::read(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            Ok(Patch {
                name: format!("{SERIES_DIR}/{name}"),
                body,
            })
        })
        .collect()
}

/// sha256 over every patch's name and content, in order: renaming, reordering or editing one
/// changes it.
pub fn digest(series: &[Patch]) -> String {
    let mut hasher = Sha256::new();
    for patch in series {
        hasher.update(patch.name.as_bytes());
        hasher.update([0]);
        hasher.update((patch.body.len() as u64).to_be_bytes());
        hasher.update(&patch.body);
    }
    crate::util::hex(&hasher.finalize())
}

/// What the marker beside a patched copy says: `<commit> <series digest> <tree id>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Marker {
    pub commit: String,
    pub series: String,
    pub tree: String,
}

impl Marker {
    pub fn parse(text: &str) -> Option<Marker> {
        let mut words = text.split_whitespace();
        let marker = Marker {
            commit: words.next()?.into(),
            series: words.next()?.into(),
            tree: words.next()?.into(),
        };
        words.next().is_none().then_some(marker)
    }

    pub fn render(&self) -> String {
        format!("{} {} {}\n", self.commit, self.series, self.tree)
    }
}

/// From GNU patch's output, the lines that say where it failed: the file and each failed hunk.
pub fn failure_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("patching file")
                || l.contains("FAILED")
                || l.starts_with("can't find file")
                || l.contains("malformed patch")
                || l.contains("Reversed (or previously applied)")
                || l.contains("No such file")
        })
        .collect()
}

/// Apply `series` to `tree` in place, as Buildroot's apply-patches.sh applies a patch but with no
/// fuzz: a carried series must fit its base exactly, or a moved base could take a hunk at the
/// wrong place. The error names the patch and the hunk that failed.
pub fn apply(sh: &Shell, tree: &Path, series: &[Patch]) -> Result<()> {
    for patch in series {
        let output = cmd!(
            sh,
            "patch -g0 -p1 -E --no-backup-if-mismatch --batch --forward --fuzz=0 -d {tree}"
        )
        .stdin(&patch.body)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not run GNU patch for {}", patch.name))?;
        if !output.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let lines = failure_lines(&text);
            let shown = if lines.is_empty() {
                text.trim().to_string()
            } else {
                lines.join("; ")
            };
            bail!(
                "{} does not apply to the pinned Buildroot: {shown}",
                patch.name
            );
        }
    }
    Ok(())
}

/// The folder and marker of the patched copy of `commit`.
pub fn copy_paths(cache: &Path, commit: &str) -> (PathBuf, PathBuf) {
    let dir = cache.join(format!(
        "buildroot-{}-berth",
        &commit[..12.min(commit.len())]
    ));
    let marker = PathBuf::from(format!("{}.complete", dir.display()));
    (dir, marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(name: &str, body: &str) -> Patch {
        Patch {
            name: format!("{SERIES_DIR}/{name}"),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_digest_follows_names_order_and_content() {
        let a = patch("0001-a.patch", "x");
        let b = patch("0002-b.patch", "y");
        let base = digest(&[a.clone(), b.clone()]);
        assert_eq!(base, digest(&[a.clone(), b.clone()]));
        assert_ne!(base, digest(&[b.clone(), a.clone()]));
        assert_ne!(base, digest(&[a.clone(), patch("0002-b.patch", "y\n")]));
        assert_ne!(base, digest(&[a.clone(), patch("0003-b.patch", "y")]));
        assert_ne!(base, digest(&[a]));
        // The boundary between a name and a body is not movable.
        assert_ne!(digest(&[patch("ab", "c")]), digest(&[patch("a", "bc")]));
    }

    #[test]
    fn the_marker_round_trips_and_refuses_other_text() {
        let m = Marker {
            commit: "c".repeat(40),
            series: "s".repeat(64),
            tree: "t".repeat(40),
        };
        assert_eq!(Marker::parse(&m.render()), Some(m));
        assert_eq!(Marker::parse("only-a-commit\n"), None);
        assert_eq!(Marker::parse("a b c d\n"), None);
    }

    #[test]
    fn failure_lines_name_the_file_and_hunk() {
        let out = "patching file package/runc/runc.mk\n\
                   Hunk #1 FAILED at 4.\n\
                   1 out of 1 hunk FAILED -- saving rejects to file package/runc/runc.mk.rej\n";
        assert_eq!(
            failure_lines(out),
            [
                "patching file package/runc/runc.mk",
                "Hunk #1 FAILED at 4.",
                "1 out of 1 hunk FAILED -- saving rejects to file package/runc/runc.mk.rej"
            ]
        );
    }
}
