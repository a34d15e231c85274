//! `cargo xtask check` against the real Buildroot tree (when BERTH_BUILDROOT names one), a copy
//! of the repository with a bogus Kconfig symbol, and a PATH without shellcheck.

mod common;

use std::process::Output;

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The parts of the repository `cargo xtask check` reads, copied so a test can break them.
fn repo_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for part in ["configs", "br2-external", "board", "patches"] {
        common::copy_tree(&common::repo_root().join(part), &copy.path().join(part));
    }
    copy
}

#[test]
fn check_passes_with_the_pinned_buildroot() {
    let test = "check_passes_with_the_pinned_buildroot";
    let Some(tree) = common::buildroot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "shellcheck", "shellcheck") {
        return;
    }
    let output = common::xtask()
        .args(["check", "--buildroot"])
        .arg(&tree)
        .env_remove("BERTH_LINUX_SRC")
        .env_remove("BERTH_REPO_ROOT")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "check failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("[kconfig] configs/berth_odroid_xu4_defconfig: all"),
        "{stdout}"
    );
    for (package, version) in [
        ("linux", common::pin("LINUX_VERSION")),
        ("uboot", common::pin("UBOOT_VERSION")),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [package, &version]),
            "{package} {version} missing from the package list:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("[check-package]") && stdout.contains("clean"),
        "{stdout}"
    );
    assert!(stdout.contains("[kernel] skipped"), "{stdout}");
}

#[test]
fn a_bogus_symbol_fails_naming_it() {
    let test = "a_bogus_symbol_fails_naming_it";
    let Some(tree) = common::buildroot_tree(test) else {
        return;
    };
    let copy = repo_copy();
    let defconfig = copy.path().join("configs/berth_odroid_xu4_defconfig");
    let mut text_in = std::fs::read_to_string(&defconfig).unwrap();
    text_in.push_str("BR2_BERTH_BOGUS_SYMBOL=y\n");
    std::fs::write(&defconfig, text_in).unwrap();

    let output = common::xtask()
        .args(["check", "--buildroot"])
        .arg(&tree)
        .env("BERTH_REPO_ROOT", copy.path())
        .env_remove("BERTH_LINUX_SRC")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        !output.status.success(),
        "check passed with a bogus symbol:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("[kconfig] configs/berth_odroid_xu4_defconfig:")
            && stderr.contains("BR2_BERTH_BOGUS_SYMBOL=y was dropped"),
        "the bogus symbol is not named:\n{stderr}"
    );
}

#[test]
fn missing_shellcheck_fails_first_with_the_apt_command() {
    let empty = tempfile::tempdir().unwrap();
    // No tools on PATH: check stops before any stage, naming shellcheck and its package.
    let output = common::xtask()
        .arg("check")
        .env("PATH", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .env_remove("BERTH_BUILDROOT")
        .env_remove("BERTH_LINUX_SRC")
        .env_remove("BERTH_REPO_ROOT")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        !output.status.success(),
        "check passed without shellcheck:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("this machine lacks what `cargo xtask check` runs")
            && stderr.contains("`shellcheck` is not installed"),
        "{stderr}"
    );
    let apt = stderr
        .lines()
        .find(|l| l.starts_with("Install them with: sudo apt-get install "))
        .unwrap_or_else(|| panic!("no apt-get line:\n{stderr}"));
    assert!(apt.split_whitespace().any(|w| w == "shellcheck"), "{apt}");
    assert!(!stdout.contains("[kconfig]"), "a stage ran:\n{stdout}");
}

/// A one-patch series against the real tree's runc.mk, made with diff so it fits any pin.
fn write_series(copy: &std::path::Path, buildroot: &std::path::Path) -> std::path::PathBuf {
    let original = std::fs::read_to_string(buildroot.join("package/runc/runc.mk")).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    // Change the first line and keep three lines of context after it, as diff -u does.
    let mut patch = String::from(
        "Subject: [PATCH] package/runc: a comment\n\nUpstream: test only\n---\n\
         --- a/package/runc/runc.mk\n+++ b/package/runc/runc.mk\n@@ -1,4 +1,4 @@\n",
    );
    patch.push_str(&format!("-{}\n+# Berth test series\n", lines[0]));
    for line in &lines[1..4] {
        patch.push_str(&format!(" {line}\n"));
    }
    let path = copy.join("patches/buildroot/0001-runc-comment.patch");
    common::write_file(&path, patch, 0o644);
    path
}

#[test]
fn the_buildroot_series_is_applied_to_a_copy_and_a_broken_patch_is_named() {
    let test = "the_buildroot_series_is_applied_to_a_copy_and_a_broken_patch_is_named";
    let Some(tree) = common::buildroot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "patch", "patch") {
        return;
    }
    let copy = repo_copy();
    let cache = tempfile::tempdir().unwrap();
    let patch = write_series(copy.path(), &tree);
    let check = || {
        common::xtask()
            .args(["check", "--buildroot"])
            .arg(&tree)
            .env("BERTH_REPO_ROOT", copy.path())
            .env("XDG_CACHE_HOME", cache.path())
            .env_remove("BERTH_LINUX_SRC")
            .env_remove("BERTH_UBOOT_SRC")
            .output()
            .unwrap()
    };
    let runc_mk = std::fs::read_to_string(tree.join("package/runc/runc.mk")).unwrap();

    let output = check();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let applied = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Buildroot: "))
        .unwrap_or_else(|| panic!("no Buildroot line:\n{stdout}"));
    assert!(
        applied.contains("+ 1 patch(es) from patches/buildroot"),
        "{stdout}"
    );
    let patched_root = std::path::PathBuf::from(applied.split(' ').next().unwrap());
    assert!(patched_root.starts_with(cache.path()), "{applied}");
    assert!(
        std::fs::read_to_string(patched_root.join("package/runc/runc.mk"))
            .unwrap()
            .starts_with("# Berth test series\n")
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("package/runc/runc.mk")).unwrap(),
        runc_mk,
        "the tree passed in must never be patched"
    );

    // One line of context less: the hunk no longer fits, and check names the patch.
    let text_in = std::fs::read_to_string(&patch).unwrap();
    let mut broken: Vec<&str> = text_in.lines().collect();
    broken.remove(broken.len() - 2);
    std::fs::write(&patch, broken.join("\n") + "\n").unwrap();
    let output = check();
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "patches/buildroot/0001-runc-comment.patch does not apply to the pinned Buildroot"
        ),
        "{stderr}"
    );
    assert!(
        !patched_root.exists(),
        "a series that does not apply must leave no copy behind"
    );
}
