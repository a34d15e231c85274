//! A root filesystem that is a folder on this machine (Buildroot's `output/target`, or a board
//! overlay), read through [`RootFs`] so links resolve inside it the way the running system
//! resolves them, never into the build machine's own `/`.
//!
//! Ownership read here is the build user's, not the image's (see [`crate::rootfs`]): audits that
//! judge owners read the image; this serves the ones that judge contents.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::rootfs::{RootFs, Stat};

pub struct DirFs {
    root: PathBuf,
}

impl DirFs {
    pub fn new(root: &Path) -> Result<DirFs> {
        anyhow::ensure!(
            root.is_dir(),
            "{} is not a folder holding a root filesystem",
            root.display()
        );
        Ok(DirFs {
            root: root.to_path_buf(),
        })
    }

    fn host_path(&self, real: &str) -> PathBuf {
        self.root.join(real.trim_start_matches('/'))
    }
}

impl RootFs for DirFs {
    fn raw_entries(&self, real_dir: &str) -> Result<Option<Vec<(String, Stat)>>> {
        let dir = self.host_path(real_dir);
        if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .with_context(|| format!("could not read {}", entry.path().display()))?;
            let stat = Stat {
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                is_dir: meta.is_dir(),
                is_symlink: meta.file_type().is_symlink(),
            };
            entries.push((entry.file_name().to_string_lossy().into_owned(), stat));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(entries))
    }

    fn raw_readlink(&self, real: &str) -> Result<String> {
        let path = self.host_path(real);
        let target = std::fs::read_link(&path)
            .with_context(|| format!("could not read the link {}", path.display()))?;
        Ok(target.to_string_lossy().into_owned())
    }

    fn raw_read(&self, real: &str) -> Result<Vec<u8>> {
        let path = self.host_path(real);
        std::fs::read(&path).with_context(|| format!("could not read {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(dir.path().join("usr/lib/os-release"), "NAME=Berth\n").unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", dir.path().join("etc/os-release"))
            .unwrap();
        // Points at the build machine's /etc/hostname if followed outside the folder.
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("etc/name")).unwrap();
        let fs = DirFs::new(dir.path()).unwrap();
        assert_eq!(
            fs.read("/etc/os-release").unwrap().unwrap(),
            b"NAME=Berth\n"
        );
        assert!(fs.read("/etc/name").unwrap().is_none());
        assert_eq!(fs.list("/etc").unwrap().unwrap(), ["name", "os-release"]);
        assert!(DirFs::new(&dir.path().join("missing")).is_err());
    }
}
