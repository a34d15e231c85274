//! Which files of the checkout the style stages look at: every file under a folder but build
//! products, and the shell scripts among them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use walkdir::WalkDir;

/// `path` from the checkout root, for messages and for tools run there.
pub fn relative<'a>(repo: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(repo).unwrap_or(path)
}

/// Folders that hold build products or other trees, never our scripts.
fn skipped_dir(name: &str) -> bool {
    matches!(name, ".git" | "target" | "output")
}

/// Every regular file under `dir` (links are not followed), sorted, build products left out.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walk = WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() && skipped_dir(&e.file_name().to_string_lossy()))
        });
    for entry in walk {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Whether a file is a shell script: by its `.sh` name or a sh/bash/dash/ksh shebang.
fn is_shell_script(file_name: &str, first_line: &str) -> bool {
    if file_name.ends_with(".sh") {
        return true;
    }
    let Some(shebang) = first_line.strip_prefix("#!") else {
        return false;
    };
    let mut words = shebang.split_whitespace();
    let Some(mut interpreter) = words.next() else {
        return false;
    };
    if interpreter.rsplit('/').next() == Some("env") {
        interpreter = match words.find(|w| !w.starts_with('-')) {
            Some(w) => w,
            None => return false,
        };
    }
    matches!(
        interpreter.rsplit('/').next(),
        Some("sh" | "bash" | "dash" | "ksh")
    )
}

fn first_line(path: &Path) -> Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut line = Vec::new();
    BufReader::new(file.take(256))
        .read_until(b'\n', &mut line)
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// The shell scripts under `dir`, sorted.
pub fn shell_scripts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut scripts = Vec::new();
    for path in files_under(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_shell_script(&name, &first_line(&path)?) {
            scripts.push(path);
        }
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_shell_scripts_by_name_and_shebang() {
        assert!(is_shell_script("post-build.sh", ""));
        assert!(is_shell_script("run", "#!/usr/bin/env bash"));
        assert!(is_shell_script("run", "#!/usr/bin/env -S bash -e"));
        assert!(is_shell_script("run", "#!/bin/sh -e"));
        assert!(is_shell_script("run", "#! /bin/dash"));
        assert!(!is_shell_script("run", "#!/usr/bin/env python3"));
        assert!(!is_shell_script("run", "#!/bin/bashful"));
        assert!(!is_shell_script("genimage.cfg", "# sh is mentioned here"));
        assert!(!is_shell_script("empty", ""));
    }

    #[test]
    fn skips_build_products_but_not_dot_folders() {
        assert!(skipped_dir("target"));
        assert!(skipped_dir("output"));
        assert!(skipped_dir(".git"));
        assert!(!skipped_dir(".ci"));
        assert!(!skipped_dir("board"));
    }

    #[test]
    fn finds_scripts_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("board/b/post-build.sh", "echo\n"),
            (".ci/run", "#!/usr/bin/env bash\n"),
            ("tools/gen.py", "#!/usr/bin/env python3\n"),
            ("target/debug/x.sh", "echo\n"),
            ("output/odroid-xu4/build/y.sh", "echo\n"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let found: Vec<_> = shell_scripts(root)
            .unwrap()
            .iter()
            .map(|p| relative(root, p).display().to_string())
            .collect();
        assert_eq!(found, vec![".ci/run", "board/b/post-build.sh"]);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = files_under(Path::new("/nonexistent/berth")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/berth"), "{err:#}");
    }
}
