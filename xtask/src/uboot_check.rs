//! The U-Boot stage of `cargo xtask check`: resolve the board defconfig plus our fragment in a
//! real U-Boot tree the way Buildroot does, name every fragment line that did not survive, and
//! check that the result can boot Berth's image (extlinux.conf on the bootable vfat p1, serial
//! console, environment stored nowhere).
//!
//! Which board defconfig, fragments and version are read from the Buildroot defconfig, so they are
//! stated once. The source tree is only read: Kconfig runs with `O=` a temporary folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use xshell::Shell;

use crate::kconfig::{self, Resolved, Setting, Value};
use crate::kernel_check::{arm_cross_compile, make_arm_config, read_kconfig};

/// What Buildroot is told to build, from `BR2_TARGET_UBOOT_*` in our defconfig.
#[derive(Debug, PartialEq, Eq)]
pub struct UbootPlan {
    /// `configs/<this>_defconfig` in the U-Boot tree.
    pub board_defconfig: String,
    /// Our fragments, in the order Buildroot merges them.
    pub fragments: Vec<PathBuf>,
    pub version: String,
}

/// Read the U-Boot settings of a Buildroot defconfig; `$(BR2_EXTERNAL_BERTH_PATH)` in fragment
/// paths stands for `br2_external`.
pub fn plan(defconfig: &Resolved, br2_external: &Path) -> Result<UbootPlan> {
    let string = |symbol: &str| match defconfig.get(symbol) {
        Some(Value::Str(s)) if !s.is_empty() => Ok(s.clone()),
        _ => bail!("the Buildroot defconfig does not set {symbol}"),
    };
    ensure!(
        defconfig.is_enabled("BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG"),
        "the Buildroot defconfig does not build U-Boot with Kconfig (BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG)"
    );
    let external = br2_external.display().to_string();
    let fragments = string("BR2_TARGET_UBOOT_CONFIG_FRAGMENT_FILES")?
        .split_whitespace()
        .map(|f| {
            without_dot_dot(Path::new(
                &f.replace("$(BR2_EXTERNAL_BERTH_PATH)", &external),
            ))
        })
        .collect();
    Ok(UbootPlan {
        board_defconfig: format!("{}_defconfig", string("BR2_TARGET_UBOOT_BOARD_DEFCONFIG")?),
        fragments,
        version: string("BR2_TARGET_UBOOT_CUSTOM_VERSION_VALUE")?,
    })
}

/// `a/b/../c` as `a/c`, so messages name `configs/uboot.fragment` rather than a detour.
fn without_dot_dot(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The release a U-Boot tree's top Makefile declares, e.g. `2026.01` or `2026.04-rc2`.
pub fn makefile_version(makefile: &str) -> Option<String> {
    let field = |name: &str| {
        makefile.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let (version, patchlevel) = (field("VERSION")?, field("PATCHLEVEL")?);
    if version.is_empty() || patchlevel.is_empty() {
        return None;
    }
    let sublevel = field("SUBLEVEL")
        .filter(|s| !s.is_empty())
        .map(|s| format!(".{s}"))
        .unwrap_or_default();
    Some(format!(
        "{version}.{patchlevel}{sublevel}{}",
        field("EXTRAVERSION").unwrap_or_default()
    ))
}

/// One thing booting Berth's image needs from the resolved configuration.
enum Need {
    On(&'static str),
    Is(&'static str, &'static str),
}

/// What the boot chain relies on, each with why. The board code sets `fdtfile` for the board it
/// runs on; the legacy distro-boot script scans mmc2 (SD), mmc1, mmc0 (eMMC), on each the
/// bootable-flagged partitions (else partition 1) for /extlinux/extlinux.conf.
const BOOT_NEEDS: &[(&str, &[Need])] = &[
    (
        "the environment is never read from or written to the card",
        &[Need::On("CONFIG_ENV_IS_NOWHERE")],
    ),
    (
        "autoboot runs distro boot, which finds extlinux.conf (board/odroid-xu4/post-build.sh)",
        &[
            Need::On("CONFIG_AUTOBOOT"),
            Need::On("CONFIG_DISTRO_DEFAULTS"),
            Need::Is("CONFIG_BOOTCOMMAND", "run distro_bootcmd"),
            Need::On("CONFIG_CMD_SYSBOOT"),
        ],
    ),
    (
        "the bootable-flagged vfat p1 of the MBR is found and read",
        &[
            Need::On("CONFIG_DOS_PARTITION"),
            Need::On("CONFIG_CMD_PART"),
            Need::On("CONFIG_CMD_FS_GENERIC"),
            Need::On("CONFIG_FS_FAT"),
            Need::On("CONFIG_MMC_DW_EXYNOS"),
        ],
    ),
    ("the kernel is a zImage", &[Need::On("CONFIG_CMD_BOOTZ")]),
    (
        "fdtfile names the DTB of the board U-Boot runs on (fdtdir in extlinux.conf)",
        &[
            Need::On("CONFIG_BOARD_TYPES"),
            Need::On("CONFIG_ENV_VARS_UBOOT_RUNTIME_CONFIG"),
        ],
    ),
    (
        "the console is UART2 (ttySAC2; the console alias of U-Boot's odroidxu3 device tree) at 115200",
        &[
            Need::On("CONFIG_S5P_SERIAL"),
            Need::Is("CONFIG_DEFAULT_DEVICE_TREE", "exynos5422-odroidxu3"),
            Need::Is("CONFIG_BAUDRATE", "115200"),
        ],
    ),
];

/// Every boot need the resolved configuration misses, and every place it would store an
/// environment, as sentences.
pub fn boot_problems(resolved: &[Setting]) -> Vec<String> {
    let config = Resolved::from_settings(resolved.to_vec());
    let mut problems = Vec::new();
    for (why, needs) in BOOT_NEEDS {
        for need in *needs {
            let missing = match need {
                Need::On(symbol) if !config.is_enabled(symbol) => format!("{symbol}=y"),
                Need::Is(symbol, want) => {
                    let matches = match config.get(symbol) {
                        Some(Value::Str(s) | Value::Num(s)) => s == want,
                        _ => false,
                    };
                    if matches {
                        continue;
                    }
                    format!("{symbol}={want}")
                }
                Need::On(_) => continue,
            };
            problems.push(format!("{missing} is needed: {why}"));
        }
    }
    for stored in resolved
        .iter()
        .filter(|s| s.symbol.starts_with("CONFIG_ENV_IS_IN_"))
    {
        if matches!(stored.value, Value::Yes) {
            problems.push(format!(
                "{} is set: the environment must be stored nowhere, so a stale one on a card \
                 cannot redirect the boot",
                stored.symbol
            ));
        }
    }
    problems
}

pub fn check(uboot_src: &Path) -> Result<()> {
    let repo = crate::util::repo_root();
    let defconfig_path = repo
        .join("configs")
        .join(crate::project::default_board().defconfig);
    let defconfig = Resolved::from_settings(read_kconfig(&defconfig_path)?);
    let plan = plan(&defconfig, &repo.join("br2-external"))?;

    ensure!(
        uboot_src.join("Makefile").is_file()
            && uboot_src
                .join("configs")
                .join(&plan.board_defconfig)
                .is_file(),
        "{} is not a U-Boot source tree with configs/{}",
        uboot_src.display(),
        plan.board_defconfig
    );
    let makefile = std::fs::read_to_string(uboot_src.join("Makefile"))
        .with_context(|| format!("could not read {}/Makefile", uboot_src.display()))?;
    let version = makefile_version(&makefile).with_context(|| {
        format!(
            "{}/Makefile declares no VERSION and PATCHLEVEL",
            uboot_src.display()
        )
    })?;
    ensure!(
        version == plan.version,
        "{} is U-Boot {version}, but Buildroot builds {} (BR2_TARGET_UBOOT_CUSTOM_VERSION_VALUE)",
        uboot_src.display(),
        plan.version
    );

    let requested = {
        let layers = plan
            .fragments
            .iter()
            .map(|f| read_kconfig(f))
            .collect::<Result<Vec<_>>>()?;
        kconfig::merge(layers.iter().map(Vec::as_slice))
    };
    let resolved = resolve(uboot_src, &plan)?;
    println!(
        "uboot: U-Boot {version} {} + {} fragment settings, {} resolved symbols ({})",
        plan.board_defconfig,
        requested.len(),
        resolved.settings.len(),
        uboot_src.display()
    );

    let lost = kconfig::dropped(
        &requested,
        &Resolved::from_settings(resolved.settings.clone()),
    );
    let unbootable = boot_problems(&resolved.settings);
    println!(
        "uboot: resolved config kept at {}",
        resolved.config_path.display()
    );
    if lost.is_empty() {
        println!("uboot: every fragment line survived olddefconfig");
    }
    if unbootable.is_empty() {
        println!(
            "uboot: boots extlinux.conf from the bootable vfat p1 by distro boot, console on UART2, \
             environment nowhere"
        );
    }
    let problems: Vec<String> = lost
        .iter()
        .map(ToString::to_string)
        .chain(unbootable)
        .collect();
    ensure!(
        problems.is_empty(),
        "{} fragment line(s) did not survive olddefconfig, {} boot need(s) unmet:\n  {}",
        lost.len(),
        problems.len() - lost.len(),
        problems.join("\n  ")
    );
    Ok(())
}

struct ResolvedUboot {
    settings: Vec<Setting>,
    config_path: PathBuf,
}

/// As Buildroot's kconfig-package does: `make <board>_defconfig`, the fragments merged over the
/// resulting `.config`, then `make olddefconfig`; in a temporary `O=` folder.
fn resolve(uboot_src: &Path, plan: &UbootPlan) -> Result<ResolvedUboot> {
    let work = tempfile::Builder::new()
        .prefix("berth-uboot-check-")
        .tempdir()
        .context("could not create a temporary folder for U-Boot's Kconfig")?;
    let out = work.path();
    let sh = Shell::new()?;
    let cross = arm_cross_compile(&sh);
    make_arm_config(&sh, uboot_src, out, cross.as_deref(), &plan.board_defconfig)?;

    let dot_config = out.join(".config");
    let mut layers = vec![read_kconfig(&dot_config)?];
    for f in &plan.fragments {
        layers.push(read_kconfig(f)?);
    }
    let merged = kconfig::merge(layers.iter().map(Vec::as_slice));
    std::fs::write(&dot_config, kconfig::render(&merged)).with_context(|| {
        format!(
            "could not write the merged config to {}",
            dot_config.display()
        )
    })?;
    make_arm_config(&sh, uboot_src, out, cross.as_deref(), "olddefconfig")?;

    let text = std::fs::read_to_string(&dot_config)
        .with_context(|| format!("olddefconfig left no .config in {}", out.display()))?;
    let settings = kconfig::parse(&text, "resolved .config")?;

    let keep = crate::util::cache_dir()?.join("uboot-check");
    std::fs::create_dir_all(&keep)
        .with_context(|| format!("could not create {}", keep.display()))?;
    let config_path = keep.join("resolved.config");
    std::fs::write(&config_path, &text)
        .with_context(|| format!("could not write {}", config_path.display()))?;
    Ok(ResolvedUboot {
        settings,
        config_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BR_DEFCONFIG: &str = "\
BR2_TARGET_UBOOT=y
BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG=y
BR2_TARGET_UBOOT_CUSTOM_VERSION=y
BR2_TARGET_UBOOT_CUSTOM_VERSION_VALUE=\"2026.01\"
BR2_TARGET_UBOOT_BOARD_DEFCONFIG=\"odroid-xu3\"
BR2_TARGET_UBOOT_CONFIG_FRAGMENT_FILES=\"$(BR2_EXTERNAL_BERTH_PATH)/../configs/uboot.fragment $(BR2_EXTERNAL_BERTH_PATH)/extra.fragment\"
";

    #[test]
    fn reads_the_plan_from_the_buildroot_defconfig() {
        let defconfig = Resolved::parse(BR_DEFCONFIG, "defconfig").unwrap();
        let plan = plan(&defconfig, Path::new("/repo/br2-external")).unwrap();
        assert_eq!(
            plan,
            UbootPlan {
                board_defconfig: "odroid-xu3_defconfig".into(),
                fragments: vec![
                    PathBuf::from("/repo/configs/uboot.fragment"),
                    PathBuf::from("/repo/br2-external/extra.fragment"),
                ],
                version: "2026.01".into(),
            }
        );
    }

    #[test]
    fn a_defconfig_without_uboot_settings_is_an_error_naming_the_symbol() {
        let without = BR_DEFCONFIG.replace("BR2_TARGET_UBOOT_BOARD_DEFCONFIG=\"odroid-xu3\"\n", "");
        let err = plan(&Resolved::parse(&without, "d").unwrap(), Path::new("/x")).unwrap_err();
        assert!(
            err.to_string().contains("BR2_TARGET_UBOOT_BOARD_DEFCONFIG"),
            "{err}"
        );
        let legacy = BR_DEFCONFIG.replace("BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG=y\n", "");
        assert!(plan(&Resolved::parse(&legacy, "d").unwrap(), Path::new("/x")).is_err());
    }

    #[test]
    fn reads_the_release_from_the_top_makefile() {
        let release =
            "# SPDX\n\nVERSION = 2026\nPATCHLEVEL = 01\nSUBLEVEL =\nEXTRAVERSION =\nNAME =\n";
        assert_eq!(makefile_version(release).as_deref(), Some("2026.01"));
        let rc = release.replace("EXTRAVERSION =", "EXTRAVERSION = -rc2");
        assert_eq!(makefile_version(&rc).as_deref(), Some("2026.01-rc2"));
        assert_eq!(
            makefile_version("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 91\n").as_deref(),
            Some("6.12.91")
        );
        assert_eq!(makefile_version("all:\n\techo\n"), None);
    }

    /// The settings `boot_problems` looks at, as the real 2026.01 odroid-xu3 result has them.
    const BOOTABLE: &str = "\
CONFIG_ENV_IS_NOWHERE=y
# CONFIG_ENV_IS_IN_MMC is not set
# CONFIG_ENV_IS_IN_FAT is not set
CONFIG_AUTOBOOT=y
CONFIG_DISTRO_DEFAULTS=y
CONFIG_BOOTCOMMAND=\"run distro_bootcmd\"
CONFIG_CMD_SYSBOOT=y
CONFIG_DOS_PARTITION=y
CONFIG_CMD_PART=y
CONFIG_CMD_FS_GENERIC=y
CONFIG_FS_FAT=y
CONFIG_MMC_DW_EXYNOS=y
CONFIG_CMD_BOOTZ=y
CONFIG_BOARD_TYPES=y
CONFIG_ENV_VARS_UBOOT_RUNTIME_CONFIG=y
CONFIG_S5P_SERIAL=y
CONFIG_DEFAULT_DEVICE_TREE=\"exynos5422-odroidxu3\"
CONFIG_BAUDRATE=115200
";

    #[test]
    fn the_verified_configuration_can_boot() {
        assert_eq!(
            boot_problems(&kconfig::parse(BOOTABLE, ".config").unwrap()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn names_each_unmet_boot_need() {
        let broken = BOOTABLE
            .replace("CONFIG_ENV_IS_NOWHERE=y\n", "")
            .replace(
                "# CONFIG_ENV_IS_IN_MMC is not set",
                "CONFIG_ENV_IS_IN_MMC=y",
            )
            .replace("CONFIG_FS_FAT=y", "# CONFIG_FS_FAT is not set")
            .replace("run distro_bootcmd", "bootflow scan")
            .replace("CONFIG_BAUDRATE=115200", "CONFIG_BAUDRATE=9600");
        let problems = boot_problems(&kconfig::parse(&broken, ".config").unwrap());
        let starts: Vec<_> = problems
            .iter()
            .map(|p| p.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            starts,
            vec![
                "CONFIG_ENV_IS_NOWHERE=y",
                "CONFIG_BOOTCOMMAND=run",
                "CONFIG_FS_FAT=y",
                "CONFIG_BAUDRATE=115200",
                "CONFIG_ENV_IS_IN_MMC",
            ],
            "{problems:#?}"
        );
        assert!(problems[2].ends_with("the bootable-flagged vfat p1 of the MBR is found and read"));
    }
}
