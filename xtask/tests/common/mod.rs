//! Shared by the integration tests: finding the xtask binary, the repository, external trees and
//! tools, and saying clearly (one line, never swallowed by the test harness) what was skipped.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An SSH public key for `image --ssh-authorized-keys` (no one holds its private half).
pub const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0b3hYbEtWc3Jtc0N6b2ZxVnVGbUJ6a0hUa1ZvRHVx test@berth\n";

/// The checkout under test (the library's own idea of it).
pub fn repo_root() -> PathBuf {
    xtask::project::Repo::checkout().root().to_path_buf()
}

/// The xtask binary under test, run from the repository root.
pub fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(repo_root());
    cmd
}

/// One line on the real stderr (not captured by libtest), so skips show in every run.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

fn tree_from_env(var: &str, test: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if Path::new(&p).is_dir() => Some(PathBuf::from(p)),
        Some(p) => {
            skip(
                test,
                &format!(
                    "{var}={} is not a folder ({what} needed)",
                    Path::new(&p).display()
                ),
            );
            None
        }
        None => {
            skip(test, &format!("{var} is not set ({what} needed)"));
            None
        }
    }
}

/// A tree of the pinned Buildroot named by BERTH_BUILDROOT, or a printed skip.
pub fn buildroot_tree(test: &str) -> Option<PathBuf> {
    tree_from_env("BERTH_BUILDROOT", test, "a tree of the pinned Buildroot")
}

/// A Linux 6.12 source tree named by BERTH_LINUX_SRC, or a printed skip.
pub fn linux_tree(test: &str) -> Option<PathBuf> {
    tree_from_env("BERTH_LINUX_SRC", test, "a Linux 6.12 source tree")
}

/// A U-Boot 2026.01 source tree named by BERTH_UBOOT_SRC, or a printed skip.
pub fn uboot_tree(test: &str) -> Option<PathBuf> {
    tree_from_env("BERTH_UBOOT_SRC", test, "a U-Boot 2026.01 source tree")
}

/// True when `tool` is on PATH; otherwise prints a skip naming the Debian package.
pub fn have_tool(test: &str, tool: &str, debian_package: &str) -> bool {
    have_tool_from(test, tool, &format!("apt-get install {debian_package}"))
}

/// True when `tool` is on PATH; otherwise prints a skip with the command that installs it.
pub fn have_tool_from(test: &str, tool: &str, install_command: &str) -> bool {
    let found = which::which(tool).is_ok();
    if !found {
        skip(
            test,
            &format!("{tool} is not installed ({install_command})"),
        );
    }
    found
}

/// True when running as root; otherwise prints a skip.
pub fn is_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        skip(test, "needs root (loop devices, mounts)");
    }
    root
}

/// Run `cmd`, failing the test with its output when it cannot start or exits non-zero.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        output_text(&out)
    );
    out
}

/// [`run_ok`] with `input` on the command's standard input (sfdisk scripts, say).
pub fn run_ok_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .unwrap_or_else(|e| panic!("could not write to {cmd:?}: {e}"));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        output_text(&out)
    );
    out
}

/// `git` in `dir` as a test identity, failing the test when it fails; its output.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=Berth Test",
                "-c",
                "user.email=test@berth.invalid",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir),
    )
}

/// A fresh git repository committing everything in `dir`.
pub fn commit_all(dir: &Path, message: &str) {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// stdout then stderr, as one string.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Write a file (creating its folder) with the given mode.
pub fn write_file(path: &Path, body: impl AsRef<[u8]>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Copy a folder tree (regular files and folders).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A worktree made with `git worktree add` (its `.git` a file, `gitdir: …`) of a repository whose
/// HEAD is the pinned Buildroot commit, holding the files of `export` (an unpacked `git archive`
/// of that commit), in `dir`. The real commit cannot be fetched offline, so a commit of the
/// export's files stands in for it through a replace ref: git reads the stand-in wherever the
/// pinned commit is named, while `rev-parse HEAD` still prints the pinned id. The stand-in's tree
/// must be the pinned tree id, or it would prove nothing.
pub fn pinned_buildroot_worktree(export: &Path, dir: &Path) -> PathBuf {
    let repo = dir.join("buildroot.git");
    let worktree = dir.join("buildroot");
    let git_dir = format!("--git-dir={}", repo.display());
    let in_repo = |args: &[&str]| {
        let out = git(dir, &[&[git_dir.as_str()], args].concat());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    in_repo(&["init", "-q", "--bare"]);
    let work_tree = format!("--work-tree={}", export.display());
    in_repo(&[&work_tree, "add", "-A"]);
    let tree = in_repo(&["write-tree"]);
    assert_eq!(
        tree,
        xtask::project::BUILDROOT_TREE,
        "{} is not an export of the pinned commit",
        export.display()
    );
    let pinned = xtask::project::BUILDROOT_COMMIT;
    let stand_in = in_repo(&[
        "commit-tree",
        "-m",
        "stands in for the pinned commit",
        &tree,
    ]);
    in_repo(&["update-ref", &format!("refs/replace/{pinned}"), &stand_in]);
    let path = worktree.to_str().expect("a UTF-8 temporary path");
    in_repo(&["worktree", "add", "-q", "--detach", path, pinned]);
    assert!(
        worktree.join(".git").is_file(),
        "a worktree's .git is a file"
    );
    worktree
}
