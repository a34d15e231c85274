//! What a folder holds, path by path: the snapshot `cargo xtask diff` compares between two builds
//! (and between the filesystems dumped from their images) and the manifest digests the
//! repository folders a build reads from.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use walkdir::WalkDir;

use crate::util;

/// What is at one path of a tree, as far as comparing builds goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mode: u32,
        owner: (u32, u32),
    },
    File {
        size: u64,
        sha256: String,
        mode: u32,
        owner: (u32, u32),
    },
    Symlink {
        target: String,
    },
    Other {
        kind: String,
    },
}

/// Every path under `root` (relative, starting with `/`), with what is there. `with_owners`
/// records mode and owner (inside filesystems they matter; in an output folder they do not).
/// Symbolic links are recorded, never followed.
pub fn snapshot(root: &Path, with_owners: bool) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    for item in WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.with_context(|| format!("could not walk {}", root.display()))?;
        let path = item.path();
        let meta = item
            .metadata()
            .with_context(|| format!("could not stat {}", path.display()))?;
        let rel = format!(
            "/{}",
            path.strip_prefix(root)
                .expect("the walk stays under its root")
                .display()
        );
        let (mode, owner) = if with_owners {
            (meta.mode() & 0o7777, (meta.uid(), meta.gid()))
        } else {
            (0, (0, 0))
        };
        let ft = item.file_type();
        let entry = if ft.is_dir() {
            Entry::Dir { mode, owner }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path)
                .with_context(|| format!("could not read the link {}", path.display()))?;
            Entry::Symlink {
                target: target.display().to_string(),
            }
        } else if ft.is_file() {
            Entry::File {
                size: meta.len(),
                sha256: util::sha256_file(path)?,
                mode,
                owner,
            }
        } else {
            Entry::Other {
                kind: format!("special file (mode {:o})", meta.mode()),
            }
        };
        out.insert(rel, entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_files_folders_and_links_without_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "berth\n").unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("etc/link")).unwrap();
        let snap = snapshot(root, false).unwrap();
        assert_eq!(
            snap.keys().collect::<Vec<_>>(),
            ["/etc", "/etc/hostname", "/etc/link"]
        );
        assert_eq!(
            snap["/etc/hostname"],
            Entry::File {
                size: 6,
                sha256: util::sha256_hex(b"berth\n"),
                mode: 0,
                owner: (0, 0)
            }
        );
        assert_eq!(
            snap["/etc/link"],
            Entry::Symlink {
                target: "/nowhere".into()
            }
        );
        assert!(matches!(
            snapshot(root, true).unwrap()["/etc"],
            Entry::Dir { mode, .. } if mode != 0
        ));
        assert!(snapshot(&root.join("absent"), false).is_err());
    }
}
