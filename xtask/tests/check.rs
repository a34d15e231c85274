//! `cargo xtask check` against the real Buildroot tree (when BERTH_BUILDROOT names one), a copy
//! of the repository with a bogus Kconfig symbol or a broken Buildroot patch (through the library,
//! on the copy), and a PATH without shellcheck.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use xtask::project::Repo;

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
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "check failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("[kconfig] configs/berth_odroid_xu4_defconfig: all"),
        "{stdout}"
    );
    for (package, version) in [
        ("linux", xtask::project::LINUX_VERSION.to_string()),
        ("uboot", xtask::project::UBOOT_VERSION.to_string()),
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

/// `check` of the checkout `repo` against the Buildroot tree `tree` only (no kernel or U-Boot).
/// The patched Buildroot copy of the real cache serves: the copy has the same series.
fn check_buildroot_only(repo: &Path, tree: PathBuf) -> anyhow::Result<()> {
    let inputs = xtask::check::Inputs {
        buildroot: Some(tree),
        linux: None,
        uboot: None,
        host: xtask::host::Host::from_process(),
    };
    xtask::check::check(&Repo::at(repo), &inputs)
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

    let err =
        check_buildroot_only(copy.path(), tree).expect_err("check passed with a bogus symbol");
    let err = format!("{err:#}");
    assert!(
        err.contains("[kconfig] configs/berth_odroid_xu4_defconfig:")
            && err.contains("BR2_BERTH_BOGUS_SYMBOL=y was dropped"),
        "the bogus symbol is not named:\n{err}"
    );
}

#[test]
fn a_defconfig_whose_root_is_writable_fails_naming_why() {
    let test = "a_defconfig_whose_root_is_writable_fails_naming_why";
    let Some(tree) = common::buildroot_tree(test) else {
        return;
    };
    let copy = repo_copy();
    let defconfig = copy.path().join("configs/berth_odroid_xu4_defconfig");
    let shipped = std::fs::read_to_string(&defconfig).unwrap();
    // Buildroot's default comes back: the root is remounted read-write during boot.
    let writable = shipped.replace("# BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is not set\n", "");
    assert_ne!(writable, shipped);
    std::fs::write(&defconfig, writable).unwrap();

    let err = check_buildroot_only(copy.path(), tree)
        .expect_err("check passed a root remounted read-write");
    let err = format!("{err:#}");
    assert!(
        err.contains(
            "configs/berth_odroid_xu4_defconfig: read-only root: \
             BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is y: the root would be remounted read-write"
        ),
        "the writable root is not named:\n{err}"
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

/// The series' patches in the repository copy, in the order they apply.
fn series(copy: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut patches: Vec<_> = std::fs::read_dir(copy.join("patches/buildroot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    patches
}

/// `patch` with the first context line of its first hunk removed.
fn drop_one_context_line(patch: &std::path::Path) {
    let text = std::fs::read_to_string(patch).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let hunk = lines.iter().position(|l| l.starts_with("@@ ")).unwrap();
    let context = hunk
        + 1
        + lines[hunk + 1..]
            .iter()
            .position(|l| l.starts_with(' '))
            .unwrap();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != context)
        .map(|(_, l)| *l)
        .collect();
    std::fs::write(patch, kept.join("\n") + "\n").unwrap();
}

/// The Buildroot `check` (and `image`) works with: the series applied to a copy in `cache`.
fn patched_buildroot(
    copy: &std::path::Path,
    tree: &std::path::Path,
    cache: &std::path::Path,
) -> anyhow::Result<xtask::buildroot::Buildroot> {
    let host = xtask::host::Host {
        cache: Some(cache.to_path_buf()),
        ..xtask::host::Host::default()
    };
    xtask::buildroot::resolve(&Repo::at(copy), &host, Some(tree), false)
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
    let patches = series(copy.path());
    assert!(!patches.is_empty(), "patches/buildroot holds no series");
    let cache = tempfile::tempdir().unwrap();
    let untouched = |relative: &str| std::fs::read(tree.join(relative)).unwrap();
    let runc_mk = untouched("package/runc/runc.mk");

    let patched =
        patched_buildroot(copy.path(), &tree, cache.path()).unwrap_or_else(|err| panic!("{err:#}"));
    let series_applied = patched.series.as_ref().expect("the series is applied");
    assert_eq!(series_applied.patches, patches.len());
    let patched_root = patched.root.clone();
    assert!(
        patched_root.starts_with(cache.path()),
        "{}",
        patched_root.display()
    );
    assert_eq!(patched.external, copy.path().join("br2-external"));
    assert_ne!(
        std::fs::read(patched_root.join("package/runc/runc.mk")).unwrap(),
        runc_mk,
        "the series bumps runc in the copy"
    );
    assert_eq!(
        untouched("package/runc/runc.mk"),
        runc_mk,
        "the tree passed in must never be patched"
    );

    // One line of context less in the last patch: its hunk no longer fits, and it is named.
    let last = patches.last().unwrap();
    drop_one_context_line(last);
    let err = patched_buildroot(copy.path(), &tree, cache.path())
        .expect_err("a broken series was applied");
    let err = format!("{err:#}");
    let name = format!(
        "patches/buildroot/{} does not apply to the pinned Buildroot",
        last.file_name().unwrap().to_string_lossy()
    );
    assert!(err.contains(&name), "{err}");
    assert!(err.contains("FAILED"), "the failed hunk is named:\n{err}");
    assert!(
        !patched_root.exists(),
        "a series that does not apply must leave no copy behind"
    );
}
