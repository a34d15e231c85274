//! The git tree id of a folder on disk: what `git write-tree` would print had every file in it
//! been added. It names a commit's files exactly (`git rev-parse <commit>^{tree}`), so it proves
//! that a tree without `.git` (a `git archive` export) holds the pinned commit's files and nothing
//! else, where a version string cannot: a branch commit and its last tag share one `BR2_VERSION`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha1::{Digest, Sha1};

/// git's own entry, a folder in a clone and a file (`gitdir: …`) in a worktree: git never
/// records it in a tree.
const GIT_ENTRY: &str = ".git";

/// Folders left out: the bytecode Python writes beside the scripts it runs.
const IGNORED_DIRS: &[&str] = &["__pycache__"];

/// One entry of a git tree object.
struct Entry {
    name: Vec<u8>,
    mode: &'static str,
    id: [u8; 20],
}

/// The id of a git object of `kind` holding `body`.
fn object_id(kind: &str, body: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(format!("{kind} {}\0", body.len()).as_bytes());
    hasher.update(body);
    hasher.finalize().into()
}

/// A tree object's body: entries sorted as git sorts them, a folder as if its name ended in '/'.
fn tree_body(mut entries: Vec<Entry>) -> Vec<u8> {
    let key = |e: &Entry| {
        let mut k = e.name.clone();
        if e.mode == "40000" {
            k.push(b'/');
        }
        k
    };
    entries.sort_by_key(key);
    let mut body = Vec::new();
    for e in entries {
        body.extend_from_slice(e.mode.as_bytes());
        body.push(b' ');
        body.extend_from_slice(&e.name);
        body.push(0);
        body.extend_from_slice(&e.id);
    }
    body
}

/// The tree id of `dir`, or None for a folder with no file below it (git records none).
fn tree_id(dir: &Path) -> Result<Option<[u8; 20]>> {
    let mut entries = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.as_bytes() == GIT_ENTRY.as_bytes() {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("could not stat {}", path.display()))?;
        let (mode, id) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("could not read the link {}", path.display()))?;
            ("120000", object_id("blob", target.as_os_str().as_bytes()))
        } else if meta.is_dir() {
            if IGNORED_DIRS.iter().any(|d| name.as_bytes() == d.as_bytes()) {
                continue;
            }
            match tree_id(&path)? {
                Some(id) => ("40000", id),
                None => continue,
            }
        } else if meta.is_file() {
            let body = std::fs::read(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let executable = meta.permissions().mode() & 0o100 != 0;
            (
                if executable { "100755" } else { "100644" },
                object_id("blob", &body),
            )
        } else {
            bail!(
                "{} is neither a file, a folder nor a link, so no git tree holds it",
                path.display()
            );
        };
        entries.push(Entry {
            name: name.as_bytes().to_vec(),
            mode,
            id,
        });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    Ok(Some(object_id("tree", &tree_body(entries))))
}

/// The git tree id of `dir` in hex (`.git`, and `__pycache__` folders, left out).
pub fn id(dir: &Path) -> Result<String> {
    let id = tree_id(dir)?.unwrap_or_else(|| object_id("tree", &[]));
    Ok(crate::util::hex(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_tree_has_gits_well_known_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            id(dir.path()).unwrap(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    #[test]
    fn a_blob_has_the_id_git_gives_it() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            crate::util::hex(&object_id("blob", b"hello\n")),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn agrees_with_git_write_tree() {
        let git = |dir: &Path, args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir)
                .output()
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        if git(root, &["--version"]).is_err() {
            crate::util::skip(
                "agrees_with_git_write_tree",
                "git is not installed (apt-get install git)",
            );
            return;
        }
        let write = |path: &str, body: &str, mode: u32| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("Makefile", "all:\n", 0o644);
        write("support/scripts/run", "#!/bin/sh\n", 0o755);
        write("support/scripts-extra/a", "a\n", 0o600);
        write("support/scripts.txt", "dot sorts before slash\n", 0o644);
        std::os::unix::fs::symlink("../Makefile", root.join("support/link")).unwrap();
        std::fs::create_dir_all(root.join("empty/nested")).unwrap();
        let ours = id(root).unwrap();

        let out = git(root, &["init", "-q"]).unwrap();
        assert!(out.status.success());
        assert!(git(root, &["add", "-A"]).unwrap().status.success());
        let theirs = git(root, &["write-tree"]).unwrap();
        assert_eq!(ours, String::from_utf8_lossy(&theirs.stdout).trim());

        // Python's bytecode beside a script and git's own folder are not part of the tree, nor
        // is the `.git` file of a worktree.
        write("support/__pycache__/run.cpython-311.pyc", "bytecode", 0o644);
        assert_eq!(id(root).unwrap(), ours);
        let worktree = tempfile::tempdir().unwrap();
        std::fs::remove_dir(worktree.path()).unwrap();
        let wt = worktree.path().to_str().unwrap();
        let identity = ["-c", "user.name=t", "-c", "user.email=t@t.invalid"];
        let commit = [
            &identity[..],
            &["-c", "commit.gpgsign=false", "commit", "-q", "-m", "t"],
        ];
        assert!(git(root, &commit.concat()).unwrap().status.success());
        let add = ["worktree", "add", "-q", "--detach", wt];
        assert!(git(root, &add).unwrap().status.success());
        assert!(worktree.path().join(".git").is_file());
        assert_eq!(id(worktree.path()).unwrap(), ours);
        // Any other change is.
        write("support/scripts/run", "#!/bin/sh\nexit 1\n", 0o755);
        assert_ne!(id(root).unwrap(), ours);
    }

    #[test]
    fn folders_sort_as_if_their_name_ended_in_a_slash() {
        let entry = |name: &str, mode| Entry {
            name: name.as_bytes().to_vec(),
            mode,
            id: [0; 20],
        };
        // "a-b" (0x2d) sorts before "a/" (0x2f), which sorts before "a0" (0x30).
        let body = tree_body(vec![
            entry("a0", "100644"),
            entry("a", "40000"),
            entry("a-b", "100644"),
        ]);
        let names: Vec<&[u8]> = body
            .split(|&b| b == 0)
            .filter_map(|chunk| {
                chunk
                    .iter()
                    .position(|&b| b == b' ')
                    .map(|p| &chunk[p + 1..])
            })
            .collect();
        assert_eq!(names, [&b"a-b"[..], b"a", b"a0"]);
    }
}
