//! Read access to the root filesystem as it will be on the card, shared by `cargo xtask audit`
//! and `cargo xtask diff`.
//!
//! Paths are resolved the way the running system resolves them ([`RootFs`]): `..`, and symbolic
//! links anywhere in a path, absolute targets taken from the filesystem's own root. Buildroot
//! builds the target folder as the build user and fixes ownership only inside fakeroot while
//! making the image, so ownership and modes are read from the ext4 image itself ([`Ext4Image`],
//! through `debugfs` from e2fsprogs: no mount, no root), never from `output/target`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

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

/// Symbolic links followed on one lookup before giving up, as Linux does (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Read access to a root filesystem by absolute path, resolved the way the running system
/// resolves it: `..`, and symbolic links anywhere in the path (`/usr/sbin -> bin` of a merged
/// bin), absolute targets taken from the filesystem's own root. An implementation gives only
/// the primitives on real paths (paths with no link and no `..` in them).
pub trait RootFs {
    /// Entries of the folder at a real path; `None` when it does not exist or is no folder.
    fn raw_entries(&self, real_dir: &str) -> Result<Option<Vec<(String, Stat)>>>;
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

/// Names and ownership of a folder's entries; `None` when the folder does not exist.
type Listing = Option<Vec<(String, Stat)>>;

/// An ext4 root filesystem image, read with `debugfs` (no mount, no root needed).
pub struct Ext4Image {
    image: PathBuf,
    dirs: RefCell<HashMap<String, Listing>>,
}

impl Ext4Image {
    pub fn open(image: &Path) -> Result<Self> {
        anyhow::ensure!(
            image.is_file(),
            "root filesystem image {} does not exist",
            image.display()
        );
        let fs = Ext4Image {
            image: image.to_path_buf(),
            dirs: RefCell::default(),
        };
        // Fails early and clearly on a file that is not an ext2/3/4 image.
        fs.debugfs("stats -h").with_context(|| {
            format!(
                "{} could not be read as an ext4 image by debugfs",
                image.display()
            )
        })?;
        Ok(fs)
    }

    /// Copy the whole filesystem into the folder `dest` (which must exist), as `debugfs rdump`
    /// does: contents, modes and symbolic links; device nodes, fifos and sockets are skipped.
    pub fn rdump(&self, dest: &Path) -> Result<()> {
        let request = format!("rdump / \"{}\"", dest.display());
        let (_, stderr) = self.debugfs_output(&request).with_context(|| {
            format!(
                "could not dump {} into {}",
                self.image.display(),
                dest.display()
            )
        })?;
        // debugfs exits 0 when rdump fails; what went wrong is only in its messages.
        let problems = rdump_problems(&stderr);
        if !problems.is_empty() {
            bail!(
                "debugfs could not dump {} into {}: {}",
                self.image.display(),
                dest.display(),
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// `debugfs -R <request> <image>`: its output on success.
    fn debugfs(&self, request: &str) -> Result<Vec<u8>> {
        Ok(self.debugfs_output(request)?.0)
    }

    /// The one place debugfs runs: its stdout and stderr, once it ran and read the image.
    fn debugfs_output(&self, request: &str) -> Result<(Vec<u8>, String)> {
        let sh = Shell::new().context("could not start a shell for debugfs")?;
        let image = &self.image;
        let out = cmd!(sh, "debugfs -R {request} {image}")
            .quiet()
            .ignore_status()
            .output()
            .context("could not run debugfs (apt-get install e2fsprogs)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("Bad magic number") {
            bail!(
                "debugfs -R '{request}' {} failed: {}",
                self.image.display(),
                stderr.trim()
            );
        }
        Ok((out.stdout, stderr.into_owned()))
    }
}

/// The lines of rdump's stderr that report a failure: all but debugfs's version banner.
fn rdump_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs "))
        .collect()
}

/// Parse `debugfs ls -p` output: `/inode/mode/uid/gid/name/size/` per line; empty when absent.
/// A listing always has `.`, so an empty result means the directory does not exist.
pub fn parse_debugfs_ls(text: &str) -> Listing {
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('/')) {
        let fields: Vec<&str> = line.split('/').collect();
        if fields.len() < 7 {
            continue;
        }
        let (Ok(mode), Ok(uid), Ok(gid)) = (
            u32::from_str_radix(fields[2], 8),
            fields[3].parse::<u32>(),
            fields[4].parse::<u32>(),
        ) else {
            continue;
        };
        let stat = Stat {
            mode: mode & 0o7777,
            uid,
            gid,
            is_dir: mode & 0o170000 == 0o040000,
            is_symlink: mode & 0o170000 == 0o120000,
        };
        entries.push((fields[5].to_string(), stat));
    }
    if entries.is_empty() {
        None
    } else {
        Some(
            entries
                .into_iter()
                .filter(|(n, _)| n != "." && n != "..")
                .collect(),
        )
    }
}

/// The target debugfs `stat` prints for a fast symbolic link (target stored in the inode).
pub fn parse_fast_link(stat_output: &str) -> Option<String> {
    let line = stat_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Fast link dest:"))?;
    let quoted = line.trim();
    Some(
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(quoted)
            .to_string(),
    )
}

#[cfg(test)]
fn split_parent(path: &str) -> (&str, &str) {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => ("/", path),
    }
}

impl RootFs for Ext4Image {
    fn raw_entries(&self, real_dir: &str) -> Result<Listing> {
        if let Some(cached) = self.dirs.borrow().get(real_dir) {
            return Ok(cached.clone());
        }
        let out = self.debugfs(&format!("ls -p \"{real_dir}\""))?;
        let listing = parse_debugfs_ls(&String::from_utf8_lossy(&out));
        self.dirs
            .borrow_mut()
            .insert(real_dir.to_string(), listing.clone());
        Ok(listing)
    }

    fn raw_readlink(&self, real: &str) -> Result<String> {
        let stat = self.debugfs(&format!("stat \"{real}\""))?;
        if let Some(target) = parse_fast_link(&String::from_utf8_lossy(&stat)) {
            return Ok(target);
        }
        // A long target lives in a data block, which `cat` prints.
        let target = self.debugfs(&format!("cat \"{real}\""))?;
        let target = String::from_utf8_lossy(&target)
            .trim_end_matches('\0')
            .to_string();
        anyhow::ensure!(
            !target.is_empty(),
            "debugfs shows no target for the symbolic link {real} in {}",
            self.image.display()
        );
        Ok(target)
    }

    fn raw_read(&self, real: &str) -> Result<Vec<u8>> {
        self.debugfs(&format!("cat \"{real}\""))
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
        assert_eq!(
            parse_fast_link("Inode: 12   Type: symlink\nFast link dest: \"bin\"\n").as_deref(),
            Some("bin")
        );
    }

    #[test]
    fn rdump_copies_the_filesystem_and_fails_into_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, image) = (dir.path().join("tree"), dir.path().join("root.ext4"));
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "berth\n").unwrap();
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("4M")
            .status();
        if !made.is_ok_and(|s| s.success()) {
            crate::util::skip(
                "rdump_copies_the_filesystem_and_fails_into_a_missing_folder",
                "mkfs.ext4 is not installed (apt-get install e2fsprogs)",
            );
            return;
        }
        let fs = Ext4Image::open(&image).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        fs.rdump(&out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
            "berth\n"
        );
        let err = format!("{:#}", fs.rdump(&dir.path().join("missing")).unwrap_err());
        assert!(err.contains("No such file or directory"), "{err}");
    }

    #[test]
    fn rdump_failures_are_read_from_its_messages() {
        assert!(rdump_problems("debugfs 1.47.0 (5-Feb-2023)\n").is_empty());
        assert_eq!(
            rdump_problems(
                "debugfs 1.47.0 (5-Feb-2023)\nrdump: No such file or directory while statting /x\n"
            ),
            ["rdump: No such file or directory while statting /x"]
        );
    }

    #[test]
    fn debugfs_listing_is_parsed_and_absence_is_none() {
        let listing = "/13/040755/5/7/.//\n/12/040755/0/0/..//\n/14/100664/0/0/daemon.json/3/\n\n";
        let entries = parse_debugfs_ls(listing).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "daemon.json");
        assert_eq!(
            entries[0].1,
            Stat {
                mode: 0o664,
                uid: 0,
                gid: 0,
                is_dir: false,
                is_symlink: false,
            }
        );
        assert!(parse_debugfs_ls("").is_none());
    }
}
