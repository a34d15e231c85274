//! Which Buildroot tree the xtask accepts: only the pinned release, and for a git checkout only the pinned
//! commit; a cache clone that is partial or mismatched is never used.

mod common;

use std::path::Path;
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
