//! The U-Boot stage of `cargo xtask check`: against a real U-Boot 2026.01 tree (BERTH_UBOOT_SRC)
//! the fragment round trip and the boot needs, and a broken fragment named line by line (the stage
//! called on a broken copy of the checkout); without one, the skip line and the errors for trees
//! that are not the pinned U-Boot.
//!
//! Each run of the command passes a missing `--buildroot` so the Buildroot stages stop at once
//! (they report that as their problem, so only the `[uboot]` lines are judged here) and keeps
//! BERTH_LINUX_SRC out.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `cargo xtask check` with the U-Boot stage as the only one that can pass or fail on its own.
fn check(cache: &Path) -> Command {
    let mut cmd = common::xtask();
    cmd.args(["check", "--buildroot"])
        .arg(cache.join("no-buildroot-here"))
        .env_remove("BERTH_LINUX_SRC")
        .env_remove("BERTH_UBOOT_SRC")
        .env_remove("CROSS_COMPILE")
        .env("XDG_CACHE_HOME", cache);
    cmd
}

/// The `[uboot]` entries of the problem list printed at the end.
fn uboot_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("[uboot]"))
        .collect()
}

#[test]
fn without_a_tree_the_stage_says_it_skipped() {
    let cache = tempfile::tempdir().unwrap();
    let output = check(cache.path()).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains("[uboot] skipped: no U-Boot 2026.01 tree named (pass --uboot DIR or set BERTH_UBOOT_SRC)"),
        "{stdout}"
    );
    assert!(uboot_problems(&stderr).is_empty(), "{stderr}");
}

#[test]
fn a_folder_that_is_not_the_pinned_uboot_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let output = check(cache.path())
        .arg("--uboot")
        .arg(empty.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    let problems = uboot_problems(&stderr);
    assert_eq!(problems.len(), 1, "{stderr}");
    assert!(
        problems[0].ends_with("is not a U-Boot source tree with configs/odroid-xu3_defconfig"),
        "{stderr}"
    );

    // A tree of another release is refused before Kconfig runs: it would judge other symbols.
    let older = tempfile::tempdir().unwrap();
    std::fs::write(
        older.path().join("Makefile"),
        "VERSION = 2025\nPATCHLEVEL = 10\nSUBLEVEL =\nEXTRAVERSION =\n",
    )
    .unwrap();
    std::fs::create_dir(older.path().join("configs")).unwrap();
    std::fs::write(
        older.path().join("configs/odroid-xu3_defconfig"),
        "CONFIG_ARM=y\n",
    )
    .unwrap();
    let output = check(cache.path())
        .arg("--uboot")
        .arg(older.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is U-Boot 2025.10, but Buildroot builds 2026.01 (BR2_TARGET_UBOOT_CUSTOM_VERSION_VALUE)"),
        "{stderr}"
    );
}

#[test]
fn real_tree_fragment_survives_and_the_image_can_boot() {
    let test = "real_tree_fragment_survives_and_the_image_can_boot";
    let Some(tree) = common::uboot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "make", "make") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let output = check(cache.path())
        .arg("--uboot")
        .arg(&tree)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(uboot_problems(&stderr).is_empty(), "{stdout}\n{stderr}");
    for line in [
        "uboot: U-Boot 2026.01 odroid-xu3_defconfig + 7 fragment settings",
        "uboot: every fragment line survived olddefconfig",
        "uboot: finds and runs boot.scr from the vfat p1, kernel and DTB from the A/B slots' EROFS, console on UART2, environment nowhere",
        "uboot (QEMU twin): U-Boot 2026.01 qemu_arm_defconfig + 8 fragment settings",
        "uboot (QEMU twin): every fragment line survived olddefconfig",
        "uboot (QEMU twin): finds and runs boot.scr from the vfat p1, kernel and DTB from the A/B slots' EROFS, QEMU's device tree, console on the PL011, environment nowhere",
        "[uboot] fragment and boot needs resolve in",
    ] {
        assert!(stdout.contains(line), "missing '{line}':\n{stdout}");
    }
    // The twin's U-Boot keeps no environment in QEMU's flash, as the board keeps none on the card.
    let twin = std::fs::read_to_string(cache.path().join("berth/uboot-twin-check/resolved.config"))
        .unwrap();
    assert!(
        twin.lines().any(|l| l == "CONFIG_ENV_IS_NOWHERE=y"),
        "{twin}"
    );
    assert!(
        twin.lines()
            .any(|l| l == "# CONFIG_ENV_IS_IN_FLASH is not set"),
        "{twin}"
    );
    // Nothing is kept at 0x310000 any more: the offset only exists for an MMC environment.
    let resolved =
        std::fs::read_to_string(cache.path().join("berth/uboot-check/resolved.config")).unwrap();
    assert!(
        resolved.lines().any(|l| l == "CONFIG_ENV_IS_NOWHERE=y"),
        "{resolved}"
    );
    assert!(
        !resolved
            .lines()
            .any(|l| l.starts_with("CONFIG_ENV_OFFSET=")),
        "{resolved}"
    );
}

#[test]
fn real_tree_a_broken_fragment_is_named_line_by_line() {
    let test = "real_tree_a_broken_fragment_is_named_line_by_line";
    let Some(tree) = common::uboot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "make", "make") {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    for part in ["configs", "br2-external", "board"] {
        common::copy_tree(&common::repo_root().join(part), &repo.path().join(part));
    }
    let fragment = repo.path().join("configs/uboot.fragment");
    let mut lines = std::fs::read_to_string(&fragment).unwrap();
    lines.push_str("CONFIG_BERTH_NO_SUCH_SYMBOL=y\n# CONFIG_ENV_IS_NOWHERE is not set\nCONFIG_ENV_IS_IN_FAT=y\n");
    std::fs::write(&fragment, &lines).unwrap();
    let bogus_line = lines.lines().count() - 2;
    // Only the twin's own fragment: only the twin is judged unbootable for it.
    let twin_fragment = repo.path().join("board/qemu-twin/uboot.fragment");
    let twin_lines =
        std::fs::read_to_string(&twin_fragment).unwrap() + "CONFIG_ENV_IS_IN_FLASH=y\n";
    std::fs::write(&twin_fragment, twin_lines).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let err =
        xtask::check::uboot::check(&xtask::project::Repo::at(repo.path()), &tree, cache.path())
            .expect_err("a broken fragment passed");
    let stderr = format!("{err:#}");
    // Three for each U-Boot from the shared fragment, and the twin's flash environment.
    assert!(stderr.contains("7 U-Boot problem(s)"), "{stderr}");
    for who in ["uboot", "uboot (QEMU twin)"] {
        for named in [
            format!("configs/uboot.fragment:{bogus_line}: CONFIG_BERTH_NO_SUCH_SYMBOL=y was dropped"),
            "CONFIG_ENV_IS_NOWHERE=y is needed: the environment is never read from or written to the card".to_string(),
            "CONFIG_ENV_IS_IN_FAT is set".to_string(),
        ] {
            let line = format!("{who}: {named}");
            assert!(stderr.contains(&line), "missing '{line}':\n{stderr}");
        }
    }
    assert!(
        stderr.contains("uboot (QEMU twin): CONFIG_ENV_IS_IN_FLASH is set"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("uboot: CONFIG_ENV_IS_IN_FLASH is set"),
        "{stderr}"
    );
}
