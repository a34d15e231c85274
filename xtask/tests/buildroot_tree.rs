//! Which Buildroot tree the xtask accepts: only the pinned release, and for a git checkout (a clone
//! or a worktree) only the pinned commit; a cache clone that is partial or mismatched is never used.
//! `cargo xtask buildroot --print-path` hands out the patched copy `image` builds with.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The pinned commit and Buildroot version, as project.rs has them.
fn pinned() -> (String, String) {
    (
        xtask::project::BUILDROOT_COMMIT.to_string(),
        xtask::project::BUILDROOT_VERSION.to_string(),
    )
}

fn makefile(version: &str) -> String {
    format!("# stand-in\nexport BR2_VERSION := {version}\nall:\n")
}

/// `cargo xtask check`, which resolves the tree without fetching, with the given cache home.
fn check(buildroot: Option<&Path>, cache: &Path) -> Output {
    let mut cmd = common::xtask();
    cmd.env_remove("BERTH_BUILDROOT")
        .env_remove("BERTH_LINUX_SRC")
        .env_remove("BERTH_UBOOT_SRC")
        .env("XDG_CACHE_HOME", cache)
        .arg("check");
    if let Some(tree) = buildroot {
        cmd.arg("--buildroot").arg(tree);
    }
    cmd.output().unwrap()
}

/// `cargo xtask buildroot --print-path` (from `buildroot`, else the cache) with the given cache
/// home.
fn print_path(buildroot: Option<&Path>, cache: &Path) -> Output {
    let mut cmd = common::xtask();
    cmd.env_remove("BERTH_BUILDROOT")
        .env("XDG_CACHE_HOME", cache)
        .args(["buildroot", "--print-path"]);
    if let Some(tree) = buildroot {
        cmd.arg("--buildroot").arg(tree);
    }
    cmd.output().unwrap()
}

/// The one path `print_path` printed, after checking it succeeded.
fn printed_path(out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", common::output_text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout, not:\n{stdout}");
    PathBuf::from(lines[0])
}

/// Where Berth's patched copy of the pinned commit lives under the cache home `cache`.
fn patched_copy(cache: &Path) -> PathBuf {
    let short = &xtask::project::BUILDROOT_COMMIT[..12];
    cache.join(format!("berth/buildroot-{short}-berth"))
}

#[test]
fn a_folder_that_is_not_buildroot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(Some(dir.path()), &dir.path().join("cache"));
    assert!(!out.status.success());
    let err = common::stderr_text(&out);
    assert!(err.contains("has no readable Makefile"), "{err}");
}

/// What `check --buildroot` says of a tree without `.git` holding only this Makefile; it must fail.
fn refusal_of_a_tree_saying(makefile: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("buildroot");
    common::write_file(&tree.join("Makefile"), makefile, 0o644);
    let out = check(Some(&tree), &dir.path().join("cache"));
    assert!(!out.status.success());
    common::stderr_text(&out)
}

#[test]
fn another_buildroot_release_is_refused() {
    let err = refusal_of_a_tree_saying(makefile("2025.02.9"));
    assert!(
        err.contains(&format!(
            "is Buildroot 2025.02.9, but Berth is pinned to {} at {}, whose Makefile says {}",
            xtask::project::BUILDROOT_RELEASE,
            pinned().0,
            pinned().1
        )),
        "{err}"
    );
}

#[test]
fn an_export_without_git_is_refused_unless_its_files_are_the_pinned_commits() {
    // The right version string, but not the pinned commit's files (a branch commit or a release
    // tarball would look the same to a version check).
    let err = refusal_of_a_tree_saying(makefile(xtask::project::BUILDROOT_VERSION));
    assert!(
        err.contains(&format!(
            "has no .git and its files are not those of commit {}",
            pinned().0
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the commit's is {}",
            xtask::project::BUILDROOT_TREE
        )),
        "{err}"
    );
}

#[test]
fn a_checkout_at_another_commit_is_refused() {
    let test = "a_checkout_at_another_commit_is_refused";
    if !common::have_tool(test, "git", "git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("buildroot");
    common::write_file(
        &tree.join("Makefile"),
        makefile(xtask::project::BUILDROOT_VERSION),
        0o644,
    );
    common::commit_all(&tree, "not the pinned commit");
    let out = check(Some(&tree), &dir.path().join("cache"));
    assert!(!out.status.success());
    let err = common::stderr_text(&out);
    assert!(
        err.contains(&format!(
            "not {} ({})",
            pinned().0,
            xtask::project::BUILDROOT_REF
        )),
        "{err}"
    );
}

#[test]
fn a_partial_cache_clone_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = cache.join(format!("berth/buildroot-{}", xtask::project::BUILDROOT_REF));
    // What an interrupted fetch leaves: a tree that looks right but has no completion marker.
    common::write_file(
        &tree.join("Makefile"),
        makefile(xtask::project::BUILDROOT_VERSION),
        0o644,
    );
    let out = check(None, &cache);
    assert!(!out.status.success());
    let err = common::stderr_text(&out);
    assert!(
        err.contains("is incomplete (an interrupted fetch?)"),
        "{err}"
    );
    assert!(err.contains("run `cargo xtask image` to fetch it"), "{err}");

    // A marker naming another commit is no better.
    common::write_file(
        &cache.join(format!(
            "berth/buildroot-{}.complete",
            xtask::project::BUILDROOT_REF
        )),
        "0000000000000000000000000000000000000000\n",
        0o644,
    );
    let err = common::stderr_text(&check(None, &cache));
    assert!(err.contains("is incomplete"), "{err}");
}

#[test]
fn a_cache_clone_at_another_commit_is_not_used() {
    let test = "a_cache_clone_at_another_commit_is_not_used";
    if !common::have_tool(test, "git", "git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = cache.join(format!("berth/buildroot-{}", xtask::project::BUILDROOT_REF));
    common::write_file(
        &tree.join("Makefile"),
        makefile(xtask::project::BUILDROOT_VERSION),
        0o644,
    );
    common::commit_all(&tree, "moved tag");
    common::write_file(
        &cache.join(format!(
            "berth/buildroot-{}.complete",
            xtask::project::BUILDROOT_REF
        )),
        format!("{}\n", pinned().0),
        0o644,
    );
    let out = check(None, &cache);
    assert!(!out.status.success());
    let err = common::stderr_text(&out);
    assert!(err.contains("the cached Buildroot is not usable"), "{err}");
    assert!(err.contains(&format!("not {}", pinned().0)), "{err}");
}

#[test]
fn check_image_and_the_buildroot_verb_accept_a_git_worktree_at_the_pinned_commit() {
    let test = "check_image_and_the_buildroot_verb_accept_a_git_worktree_at_the_pinned_commit";
    let Some(export) = common::buildroot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "git", "git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let worktree = common::pinned_buildroot_worktree(&export, dir.path());
    // An in-tree build's leftovers: untracked, so allowed, but not part of the pinned commit.
    common::write_file(&worktree.join("output/.config"), "BR2_arm=y\n", 0o644);

    // Each verb gets its own cache, so each makes its patched copy from the worktree.
    let cache = dir.path().join("cache-verb");
    let copy = printed_path(&print_path(Some(&worktree), &cache));
    assert_eq!(copy, patched_copy(&cache));
    assert!(copy.join("Makefile").is_file());
    for not_copied in [".git", "output"] {
        assert!(!copy.join(not_copied).exists(), "{not_copied} was copied");
    }

    let cache = dir.path().join("cache-check");
    let out = check(Some(&worktree), &cache);
    let text = common::output_text(&out);
    if text.contains("lacks what `cargo xtask check` runs") {
        common::skip(test, &format!("check's prerequisites are missing:\n{text}"));
    } else {
        assert!(out.status.success(), "{text}");
        let used = format!(
            "Buildroot: {} (commit {} + ",
            patched_copy(&cache).display(),
            pinned().0
        );
        assert!(text.contains(&used), "{text}");
    }

    // `image` goes past the tree and stops at the next step, an output folder it must not use.
    let cache = dir.path().join("cache-image");
    let (output, key) = (dir.path().join("not-an-output"), dir.path().join("key.pub"));
    common::write_file(&output.join("notes.txt"), "mine\n", 0o644);
    common::write_file(&key, common::PUBLIC_KEY, 0o644);
    let args = xtask::image::ImageArgs {
        buildroot: Some(worktree.clone()),
        output: Some(output),
        ssh_authorized_keys: Some(key),
        ..Default::default()
    };
    let host = xtask::host::Host {
        cache: Some(cache.join("berth")),
        ..Default::default()
    };
    let repo = xtask::project::Repo::checkout();
    let err = format!("{:#}", xtask::image::run(&repo, args, &host).unwrap_err());
    if err.contains("lacks what Buildroot needs") {
        common::skip(test, &format!("image's prerequisites are missing: {err}"));
        return;
    }
    assert!(
        err.contains("is not empty and is not a Buildroot output folder"),
        "{err}"
    );
    assert!(
        patched_copy(&cache).join("Makefile").is_file(),
        "image made its patched copy from the worktree before it stopped"
    );
}

/// The `+DOCKER_ENGINE_VERSION = …` line the series puts into docker-engine.mk.
fn docker_engine_line_of_the_series() -> String {
    let dir = common::repo_root().join(xtask::buildroot::SERIES_DIR);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .find_map(|patch| {
            patch.lines().find_map(|l| {
                l.strip_prefix("+DOCKER_ENGINE_VERSION = ")
                    .map(str::to_string)
            })
        })
        .map(|version| format!("DOCKER_ENGINE_VERSION = {version}"))
        .expect("a patch of the series sets DOCKER_ENGINE_VERSION")
}

fn docker_engine_line(tree: &Path) -> String {
    let mk = tree.join("package/docker-engine/docker-engine.mk");
    std::fs::read_to_string(&mk)
        .unwrap_or_else(|e| panic!("{}: {e}", mk.display()))
        .lines()
        .find(|l| l.starts_with("DOCKER_ENGINE_VERSION = "))
        .unwrap_or_else(|| panic!("{} sets no DOCKER_ENGINE_VERSION", mk.display()))
        .to_string()
}

#[test]
fn the_buildroot_verb_prints_the_patched_copy_and_makes_it_once() {
    let test = "the_buildroot_verb_prints_the_patched_copy_and_makes_it_once";
    let Some(export) = common::buildroot_tree(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let first = print_path(Some(&export), &cache);
    let copy = printed_path(&first);
    assert_eq!(copy, patched_copy(&cache));
    let series_line = docker_engine_line_of_the_series();
    assert_ne!(
        docker_engine_line(&export),
        series_line,
        "the export is unpatched"
    );
    assert_eq!(docker_engine_line(&copy), series_line);
    assert!(
        common::stderr_text(&first).contains("Applying "),
        "progress goes to stderr:\n{}",
        common::output_text(&first)
    );

    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(&copy).unwrap();
    let second = print_path(Some(&export), &cache);
    assert_eq!(printed_path(&second), copy);
    let found = std::fs::metadata(&copy).unwrap();
    assert!(
        !common::stderr_text(&second).contains("Applying "),
        "the second call made the copy again:\n{}",
        common::stderr_text(&second)
    );
    assert_eq!(
        (made.ino(), made.mtime_nsec()),
        (found.ino(), found.mtime_nsec()),
        "the copy is the same folder"
    );
}
