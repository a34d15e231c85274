//! Library search paths (DT_RPATH, DT_RUNPATH) judged by the folders they name in the image.

use anyhow::Result;

use crate::rootfs::RootFs;

/// A library search path is a threat when someone other than root can put a library where it
/// points, or when where it points is not fixed: judge each entry by the folder it names in the
/// image. A root-owned folder that only root can write (systemd's /usr/lib/systemd) is as safe
/// as /usr/lib; an empty entry, a relative path, $ORIGIN climbing out with `..`, a build-tree
/// path the image does not have, or a writable folder (/tmp) is not.
pub(super) fn judge_search_path(
    tag: &str,
    entries: &[String],
    file: &str,
    image: &dyn RootFs,
) -> Result<(bool, String)> {
    if entries.is_empty() {
        return Ok((true, format!("no {tag}")));
    }
    let mut problems = Vec::new();
    for list in entries {
        // An empty DT_RUNPATH string is one empty entry; "a::b" holds one in the middle.
        for entry in list.split(':') {
            if let Some(problem) = search_dir_problem(entry, file, image)? {
                problems.push(format!("'{entry}': {problem}"));
            }
        }
    }
    Ok(if problems.is_empty() {
        (
            true,
            format!("{tag} {entries:?}: root-owned folders only root can write"),
        )
    } else {
        (false, format!("{tag} {}", problems.join("; ")))
    })
}

fn search_dir_problem(entry: &str, file: &str, image: &dyn RootFs) -> Result<Option<String>> {
    let origin = ["$ORIGIN", "${ORIGIN}"]
        .iter()
        .find_map(|token| entry.strip_prefix(token));
    let dir = match origin {
        _ if entry.is_empty() => {
            return Ok(Some(
                "empty entry (Buildroot's fix-rpath empties a build-tree path): remove it".into(),
            ))
        }
        Some(rest) if rest.split('/').any(|part| part == "..") => {
            return Ok(Some(
                "$ORIGIN with '..' reaches outside the file's own folder".into(),
            ))
        }
        Some(rest) => format!("{}{rest}", file.rsplit_once('/').map_or("", |(dir, _)| dir)),
        None if entry.contains('$') => {
            return Ok(Some(
                "a token other than $ORIGIN: the folder depends on the machine".into(),
            ))
        }
        None if !entry.starts_with('/') => {
            return Ok(Some(
                "relative: resolved against the working directory".into(),
            ))
        }
        None => entry.to_string(),
    };
    let Some((real, stat)) = image.resolve(&dir, true)? else {
        return Ok(Some(format!(
            "{dir} is not in the image (a build-tree path?)"
        )));
    };
    if !stat.is_dir {
        return Ok(Some(format!("{dir} is not a folder in the image")));
    }
    // Every folder on the way must be root's alone: whoever can write one can swap what is below.
    let mut prefix = String::new();
    for part in std::iter::once("").chain(real.split('/').filter(|p| !p.is_empty())) {
        if !part.is_empty() {
            prefix.push('/');
            prefix.push_str(part);
        }
        let shown = if prefix.is_empty() { "/" } else { &prefix };
        let Some(s) = image.lstat(shown)? else {
            return Ok(Some(format!("{shown} vanished while reading the image")));
        };
        if s.uid != 0 || s.mode & 0o022 != 0 {
            return Ok(Some(format!(
                "{shown} is owned by uid {} with mode {:04o}: not root's alone",
                s.uid, s.mode
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tests::MemFs;

    #[test]
    fn search_paths_are_judged_by_the_folder_they_name() {
        let mut image = MemFs::default();
        image.file("/usr/lib/systemd/libsystemd-shared-257.so", 0o755, "elf");
        image.file("/usr/bin/app", 0o755, "elf");
        image.file("/usr/bin/plugins/p.so", 0o755, "elf");
        image.file("/tmp/x/lib.so", 0o644, "elf");
        image.files.get_mut("/tmp").unwrap().0.mode = 0o1777;
        image.file("/home/builder/lib/l.so", 0o644, "elf");
        image.files.get_mut("/home/builder").unwrap().0.uid = 1000;
        image.link("/lib", "usr/lib");
        let judge = |entries: &[&str]| {
            let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            judge_search_path("DT_RUNPATH", &entries, "/usr/bin/app", &image).unwrap()
        };
        assert!(judge(&[]).0);
        assert!(
            judge(&["/usr/lib/systemd"]).0,
            "{}",
            judge(&["/usr/lib/systemd"]).1
        );
        assert!(
            judge(&["/lib/systemd"]).0,
            "through the /lib -> usr/lib link"
        );
        assert!(judge(&["$ORIGIN/plugins"]).0);
        for bad in [
            "",
            "/usr/lib/systemd::/usr/lib",
            "$ORIGIN/../..",
            "/tmp/x",
            "/opt/lib",
            "/home/builder/lib",
            "lib",
            "$LIB/x",
            "/usr/bin/app",
        ] {
            let (ok, detail) = judge(&[bad]);
            assert!(!ok, "'{bad}' passed: {detail}");
        }
        assert!(judge(&["/tmp/x"]).1.contains("/tmp"));
    }
}
