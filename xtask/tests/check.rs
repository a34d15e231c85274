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
    for (package, version) in [("linux", "6.12.91"), ("uboot", "2026.01")] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [package, version]),
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
