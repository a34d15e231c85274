//! Read access to the root filesystem as it will be on the card, shared by `cargo xtask audit`
//! and `cargo xtask diff`.
//!
//! Paths are resolved the way the running system resolves them ([`RootFs`]): `..`, and symbolic
//! links anywhere in a path, absolute targets taken from the filesystem's own root. Buildroot
//! builds the target folder as the build user and fixes ownership only inside fakeroot while
//! making the image, so ownership and modes are read from the EROFS image itself
//! ([`crate::erofs::ErofsImage`]: no mount, no root), never from `output/target`.

use anyhow::Result;

/// Ownership and permission bits of one file in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits only (no file type).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
    pub is_symlink: bool,
}

/// Names and ownership of a folder's entries; `None` when the folder does not exist.
pub type Listing = Option<Vec<(String, Stat)>>;

/// Symbolic links followed on one lookup before giving up, as Linux does (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Read access to a root filesystem by absolute path, resolved the way the running system
/// resolves it: `..`, and symbolic links anywhere in the path (`/usr/sbin -> bin` of a merged
/// bin), absolute targets taken from the filesystem's own root. An implementation gives only
/// the primitives on real paths (paths with no link and no `..` in them).
pub trait RootFs {
    /// Entries of the folder at a real path; `None` when it does not exist or is no folder.
    fn raw_entries(&self, real_dir: &str) -> Result<Listing>;
    /// Target of the symbolic link at a real path.
    fn raw_readlink(&self, real: &str) -> Result<String>;
    /// Contents of the regular file at a real path.
    fn raw_read(&self, real: &str) -> Result<Vec<u8>>;

    /// The real path of `path`, every link followed (the last one too when `follow_last`), and
    /// what is there; `None` when some part of it does not exist.
    fn resolve(&self, path: &str, follow_last: bool) -> Result<Option<(String, Stat)>> {
        let root = Stat {
            mode: 0o755,
            uid: 0,
            gid: 0,
            is_dir: true,
            is_symlink: false,
        };
        let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut real: Vec<(String, Stat)> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "" | "." => continue,
                ".." => {
                    real.pop();
                    continue;
                }
                _ => {}
            }
            let dir = real_path(&real);
            let Some(entries) = self.raw_entries(&dir)? else {
                return Ok(None);
            };
            let Some((_, stat)) = entries.into_iter().find(|(n, _)| *n == name) else {
                return Ok(None);
            };
            let last = pending.iter().all(|p| p.is_empty() || p == ".");
            if stat.is_symlink && (follow_last || !last) {
                links += 1;
                anyhow::ensure!(
                    links <= MAX_SYMLINKS,
                    "too many levels of symbolic links in {path}"
                );
                let target = self.raw_readlink(&child_path(&dir, &name))?;
                if target.starts_with('/') {
                    real.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
                continue;
            }
            real.push((name, stat));
        }
        let stat = real.last().map(|(_, s)| *s).unwrap_or(root);
        Ok(Some((real_path(&real), stat)))
    }

    /// What `stat(2)` sees: links followed.
    fn stat(&self, path: &str) -> Result<Option<Stat>> {
        Ok(self.resolve(path, true)?.map(|(_, s)| s))
    }

    /// What `lstat(2)` sees: a link itself.
    fn lstat(&self, path: &str) -> Result<Option<Stat>> {
        Ok(self.resolve(path, false)?.map(|(_, s)| s))
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.resolve(path, true)? {
            Some((real, s)) if !s.is_dir => Ok(Some(self.raw_read(&real)?)),
            _ => Ok(None),
        }
    }

    /// Names in a directory (without `.` and `..`); `None` when it does not exist.
    fn list(&self, dir: &str) -> Result<Option<Vec<String>>> {
        match self.resolve(dir, true)? {
            Some((real, s)) if s.is_dir => Ok(self
                .raw_entries(&real)?
                .map(|list| list.into_iter().map(|(n, _)| n).collect())),
            _ => Ok(None),
        }
    }
}

fn real_path(parts: &[(String, Stat)]) -> String {
    let mut path = String::new();
    for (name, _) in parts {
        path.push('/');
        path.push_str(name);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// The path of `name` inside the folder `dir`.
pub fn child_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

#[cfg(test)]
fn split_parent(path: &str) -> (&str, &str) {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => ("/", path),
    }
}

#[cfg(test)]
pub mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    pub struct MemFs {
        pub files: BTreeMap<String, (Stat, Vec<u8>)>,
    }

    impl MemFs {
        pub fn file(&mut self, path: &str, mode: u32, body: &str) {
            self.insert(path, mode, false, body);
        }

        /// A symbolic link at `path` to `target`.
        pub fn link(&mut self, path: &str, target: &str) {
            self.insert(path, 0o777, true, target);
        }

        fn insert(&mut self, path: &str, mode: u32, is_symlink: bool, body: &str) {
            let stat = Stat {
                mode,
                uid: 0,
                gid: 0,
                is_dir: false,
                is_symlink,
            };
            self.files
                .insert(path.to_string(), (stat, body.as_bytes().to_vec()));
            let mut dir = split_parent(path).0.to_string();
            loop {
                self.files.entry(dir.clone()).or_insert((
                    Stat {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        is_dir: true,
                        is_symlink: false,
                    },
                    vec![],
                ));
                if dir == "/" {
                    break;
                }
                dir = split_parent(&dir).0.to_string();
            }
        }
    }

    impl RootFs for MemFs {
        fn raw_entries(&self, dir: &str) -> Result<Listing> {
            if !self.files.get(dir).is_some_and(|(s, _)| s.is_dir) {
                return Ok(None);
            }
            Ok(Some(
                self.files
                    .iter()
                    .filter(|(p, _)| p.as_str() != dir && split_parent(p).0 == dir)
                    .map(|(p, (s, _))| (split_parent(p).1.to_string(), *s))
                    .collect(),
            ))
        }
        fn raw_readlink(&self, real: &str) -> Result<String> {
            Ok(String::from_utf8_lossy(&self.files[real].1).into_owned())
        }
        fn raw_read(&self, real: &str) -> Result<Vec<u8>> {
            Ok(self.files[real].1.clone())
        }
    }

    #[test]
    fn paths_resolve_through_links_like_the_running_system() {
        let mut fs = MemFs::default();
        fs.link("/usr/sbin", "bin");
        fs.file("/usr/bin/auditd", 0o755, "elf");
        fs.link("/lib", "usr/lib");
        fs.file("/usr/lib/libc.so.6", 0o755, "elf");
        fs.link("/etc/os-release", "../usr/lib/os-release");
        fs.file("/usr/lib/os-release", 0o644, "NAME=Buildroot\n");
        fs.link("/loop", "/loop");
        assert!(fs.stat("/usr/sbin/auditd").unwrap().is_some());
        assert_eq!(fs.list("/usr/sbin").unwrap().unwrap(), ["auditd"]);
        assert!(fs.stat("/lib/libc.so.6").unwrap().is_some());
        assert_eq!(
            fs.read("/etc/os-release").unwrap().unwrap(),
            b"NAME=Buildroot\n"
        );
        assert_eq!(
            fs.resolve("/usr/sbin/../lib/./libc.so.6", true)
                .unwrap()
                .unwrap()
                .0,
            "/usr/lib/libc.so.6"
        );
        assert!(fs.lstat("/usr/sbin").unwrap().unwrap().is_symlink);
        assert!(fs.stat("/usr/sbin").unwrap().unwrap().is_dir);
        assert!(fs.stat("/usr/sbin/nope").unwrap().is_none());
        assert!(format!("{:#}", fs.stat("/loop").unwrap_err()).contains("symbolic links"));
    }
}
