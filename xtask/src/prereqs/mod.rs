//! Host prerequisites Buildroot checks for (`support/dependencies/dependencies.sh`), checked up
//! front so a missing tool is named with the command that installs it, before any long step.

use std::path::PathBuf;

use xshell::{cmd, Shell};

mod problem;
mod python;
pub use problem::{report, Problem};
pub use python::{pick_python, python_with};

/// Every command Buildroot (and `image`'s signing) needs on the host, and its Debian package.
pub const TOOLS: &[(&str, &str)] = &[
    ("which", "debianutils"),
    ("sed", "sed"),
    ("make", "make"),
    ("gcc", "build-essential"),
    ("g++", "build-essential"),
    ("ld", "binutils"),
    ("diff", "diffutils"),
    ("cmp", "diffutils"),
    ("bash", "bash"),
    ("patch", "patch"),
    ("gzip", "gzip"),
    ("bzip2", "bzip2"),
    ("perl", "perl"),
    ("tar", "tar"),
    ("cpio", "cpio"),
    ("unzip", "unzip"),
    ("rsync", "rsync"),
    // libtool breaks unless it is exactly /usr/bin/file.
    ("/usr/bin/file", "file"),
    ("bc", "bc"),
    ("find", "findutils"),
    ("xargs", "findutils"),
    ("awk", "gawk"),
    ("wget", "wget"),
    ("git", "git"),
    ("flock", "util-linux"),
    // Not Buildroot's: the update bundles' signing pair (image/signing.rs).
    ("openssl", "openssl"),
];

/// Perl modules Buildroot requires (host-autoconf, host-automake, libopenssl...), all in Debian's `perl`.
pub const PERL_MODULES: &[&str] = &[
    "Data::Dumper",
    "English",
    "ExtUtils::MakeMaker",
    "Thread::Queue",
    "FindBin",
    "IPC::Cmd",
];

/// Minimum versions: (command, version arguments, minimum, package to upgrade).
const MINIMUM_VERSIONS: &[(&str, &str, (u32, u32), &str)] = &[
    ("make", "--version", (4, 0), "make"),
    ("gcc", "-dumpfullversion", (4, 8), "build-essential"),
    ("patch", "--version", (2, 7), "patch"),
    ("git", "--version", (2, 0), "git"),
];

/// `GNU Make 4.3`, `git version 2.39.5`, `GNU patch 2.7.6`, `12.2.0` → (major, minor).
pub fn parse_version(output: &str) -> Option<(u32, u32)> {
    let first = output.lines().next()?;
    let word = first
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = word.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Judge a version command's output against the minimum.
pub fn version_problem(
    tool: &str,
    output: &str,
    need: (u32, u32),
    package: &str,
) -> Option<Problem> {
    let gnu_only = tool == "patch";
    let first = output.lines().next().unwrap_or("").trim();
    let parsed = if gnu_only && !first.starts_with("GNU patch") {
        None
    } else {
        parse_version(output)
    };
    match parsed {
        None => Some(Problem::Unrecognised {
            tool: tool.into(),
            output: first.into(),
            package: package.into(),
        }),
        Some(found) if found < need => Some(Problem::TooOld {
            tool: tool.into(),
            found: format!("{}.{}", found.0, found.1),
            need,
            package: package.into(),
        }),
        Some(_) => None,
    }
}

/// What is wrong with a PATH value, in Buildroot's terms.
pub fn path_problems(path: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if path
        .split(':')
        .any(|entry| entry.is_empty() || entry == ".")
    {
        problems.push(Problem::Path(
            "contains the current directory (an empty entry or `.`), which breaks package builds"
                .into(),
        ));
    }
    if path.contains([' ', '\t', '\n']) {
        problems.push(Problem::Path(
            "contains spaces, tabs or newlines, which Buildroot cannot handle".into(),
        ));
    }
    problems
}

/// A [`Problem::Missing`] for each (tool, Debian package) of `tools` not on `path`.
pub fn missing_tools(tools: &[(&str, &str)], path: &str) -> Vec<Problem> {
    tools
        .iter()
        .filter(|(tool, _)| find_in_path(tool, path).is_none())
        .map(|(tool, package)| Problem::Missing {
            tool: tool.to_string(),
            package: package.to_string(),
        })
        .collect()
}

/// The executable `tool` on `path` (or itself when given as an absolute path).
pub fn find_in_path(tool: &str, path: &str) -> Option<PathBuf> {
    // The folder only matters for a relative name with a slash, which no caller passes.
    which::which_in(tool, Some(path), "/").ok()
}

/// Look at this machine: every tool, the versions that matter, Perl modules and PATH.
pub fn check_host(sh: &Shell) -> Vec<Problem> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut problems = path_problems(&path);
    problems.extend(missing_tools(TOOLS, &path));
    for (tool, arg, need, package) in MINIMUM_VERSIONS {
        if find_in_path(tool, &path).is_none() {
            continue;
        }
        let output = cmd!(sh, "{tool} {arg}")
            .quiet()
            .ignore_stderr()
            .read()
            .unwrap_or_default();
        problems.extend(version_problem(tool, &output, *need, package));
    }
    if find_in_path("perl", &path).is_some() {
        for module in PERL_MODULES {
            let require = format!("require {module}");
            if cmd!(sh, "perl -e {require}")
                .quiet()
                .ignore_stderr()
                .ignore_stdout()
                .run()
                .is_err()
            {
                problems.push(Problem::PerlModule {
                    module: module.to_string(),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_maps_to_a_debian_package() {
        let package = |tool: &str| TOOLS.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p);
        assert_eq!(package("cpio"), Some("cpio"));
        assert_eq!(package("g++"), Some("build-essential"));
        assert_eq!(package("cmp"), Some("diffutils"));
        assert_eq!(package("xargs"), Some("findutils"));
        assert_eq!(package("/usr/bin/file"), Some("file"));
        assert_eq!(package("ld"), Some("binutils"));
        for tool in [
            "which", "sed", "make", "bash", "patch", "gzip", "bzip2", "perl", "tar", "unzip",
            "rsync", "bc", "wget", "git",
        ] {
            assert!(package(tool).is_some(), "{tool} must be checked");
        }
    }

    #[test]
    fn parses_versions_of_the_tools_we_check() {
        assert_eq!(
            parse_version("GNU Make 4.3\nBuilt for x86_64-pc-linux-gnu"),
            Some((4, 3))
        );
        assert_eq!(parse_version("git version 2.39.5"), Some((2, 39)));
        assert_eq!(parse_version("GNU patch 2.7.6\nCopyright"), Some((2, 7)));
        assert_eq!(parse_version("12.2.0"), Some((12, 2)));
        assert_eq!(parse_version("14"), Some((14, 0)));
        assert_eq!(parse_version("no digits here"), None);
    }

    #[test]
    fn old_or_foreign_versions_are_problems() {
        assert_eq!(
            version_problem("make", "GNU Make 4.3", (4, 0), "make"),
            None
        );
        assert_eq!(
            version_problem("make", "GNU Make 3.81", (4, 0), "make"),
            Some(Problem::TooOld {
                tool: "make".into(),
                found: "3.81".into(),
                need: (4, 0),
                package: "make".into()
            })
        );
        assert!(matches!(
            version_problem("patch", "patch 2.0-12u11-Apple", (2, 7), "patch"),
            Some(Problem::Unrecognised { .. })
        ));
        assert!(matches!(
            version_problem("git", "", (2, 0), "git"),
            Some(Problem::Unrecognised { .. })
        ));
    }

    #[test]
    fn path_with_current_directory_or_spaces_is_refused() {
        assert!(path_problems("/usr/bin:/bin").is_empty());
        assert_eq!(path_problems("/usr/bin::/bin").len(), 1);
        assert_eq!(path_problems(".:/usr/bin").len(), 1);
        assert_eq!(path_problems("/usr/bin:/opt/my tools/bin").len(), 1);
    }

    #[test]
    fn report_names_each_problem_and_one_apt_command() {
        let problems = vec![
            Problem::Missing {
                tool: "rsync".into(),
                package: "rsync".into(),
            },
            Problem::Missing {
                tool: "cpio".into(),
                package: "cpio".into(),
            },
            Problem::Missing {
                tool: "cmp".into(),
                package: "diffutils".into(),
            },
            Problem::Missing {
                tool: "diff".into(),
                package: "diffutils".into(),
            },
            Problem::PerlModule {
                module: "IPC::Cmd".into(),
            },
            Problem::Path("contains the current directory".into()),
        ];
        let text = report(&problems, "Buildroot needs to build the image").unwrap();
        assert!(text.contains("  - `rsync` is not installed\n"), "{text}");
        assert!(
            text.contains("  - the Perl module IPC::Cmd is missing\n"),
            "{text}"
        );
        assert!(
            text.contains("  - PATH contains the current directory\n"),
            "{text}"
        );
        assert!(
            text.contains("Install them with: sudo apt-get install cpio diffutils perl rsync\n"),
            "{text}"
        );
        assert_eq!(report(&[], "x"), None);
    }

    #[test]
    fn path_problem_alone_has_no_apt_command() {
        let text = report(&[Problem::Path("contains spaces".into())], "x").unwrap();
        assert!(!text.contains("apt-get"), "{text}");
    }

    #[test]
    fn finds_executable_tools_on_a_given_path_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cpio = dir.path().join("cpio");
        std::fs::write(&cpio, "").unwrap();
        std::fs::set_permissions(&cpio, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("rsync"), "not executable").unwrap();
        let path = dir.path().display().to_string();
        assert_eq!(find_in_path("cpio", &path), Some(cpio.clone()));
        assert_eq!(find_in_path(cpio.to_str().unwrap(), ""), Some(cpio));
        assert_eq!(find_in_path("rsync", &path), None);
        assert_eq!(find_in_path("tar", &path), None);
    }
}
