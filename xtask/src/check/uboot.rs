//! Stage (f) of `cargo xtask check`: the U-Boot configuration as Buildroot resolves it
//! ([`kconfig::resolve()`]: the board defconfig, then our fragment over it) in a real U-Boot tree,
//! every fragment line that did not survive named, and a check that the result can boot Berth's
//! image (boot.scr on the bootable vfat p1 choosing slot A or B, kernel and DTB from the slot's
//! EROFS, serial console, environment stored nowhere).
//!
//! Which board defconfig, fragments and version are read from the Buildroot defconfig, so they are
//! stated once. The source tree is only read: Kconfig runs with `O=` a temporary folder.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::kconfig::{self, plan::Package, plan::Plan, Resolved, Setting, Value};
use crate::project::Repo;

/// One thing booting Berth's image needs from the resolved configuration.
enum Need {
    On(&'static str),
    Is(&'static str, &'static str),
}

/// What a boot need is for, and the settings it takes.
type Needs = &'static [(&'static str, &'static [Need])];

/// Which U-Boot is judged: the board's, or the QEMU twin's (br2-external/package/berth-twin-uboot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Board,
    Twin,
}

/// What both U-Boots need to run board/odroid-xu4/boot.cmd: it chooses slot A or B itself.
const ENV_NEEDS: Needs = &[(
    "the environment is never read from or written to the card",
    &[Need::On("CONFIG_ENV_IS_NOWHERE")],
)];
const SCRIPT_NEEDS: Needs = &[
    (
        "the bootable-flagged vfat p1 of the MBR is read, and the slots' PARTUUIDs named",
        &[
            Need::On("CONFIG_DOS_PARTITION"),
            Need::On("CONFIG_CMD_PART"),
            Need::On("CONFIG_PARTITION_UUIDS"),
            Need::On("CONFIG_CMD_FS_GENERIC"),
            Need::On("CONFIG_FS_FAT"),
        ],
    ),
    (
        "the boot script keeps BOOT_ORDER and the tries left in uboot.env and uboot-redund.env \
         on p1, the two copies of a redundant environment (env import -c / env export -c in \
         that layout, the copy's flag read with setexpr.b and set with mw.b, counted down with \
         setexpr, written in place with save)",
        &[
            Need::On("CONFIG_ENV_REDUNDANT"),
            Need::On("CONFIG_CMD_MEMORY"),
            Need::On("CONFIG_CMD_IMPORTENV"),
            Need::On("CONFIG_CMD_EXPORTENV"),
            Need::On("CONFIG_CMD_SETEXPR"),
            Need::On("CONFIG_FAT_WRITE"),
        ],
    ),
    (
        "the kernel and DTBs are read from the slot's LZ4-compressed EROFS root (/boot)",
        &[
            Need::On("CONFIG_FS_EROFS"),
            Need::On("CONFIG_FS_EROFS_ZIP"),
            Need::On("CONFIG_LZ4"),
        ],
    ),
    ("the kernel is a zImage", &[Need::On("CONFIG_CMD_BOOTZ")]),
];

/// The board: distro boot scans mmc2 (SD), mmc1, mmc0 (eMMC), on each the bootable-flagged
/// partitions (else partition 1) for /boot.scr, and sources it with devtype and devnum set.
const BOARD_FINDS_SCRIPT: Needs = &[(
    "autoboot runs distro boot, which finds boot.scr (board/odroid-xu4/boot.cmd) and sources it",
    &[
        Need::On("CONFIG_AUTOBOOT"),
        Need::On("CONFIG_DISTRO_DEFAULTS"),
        Need::Is("CONFIG_BOOTCOMMAND", "run distro_bootcmd"),
        Need::On("CONFIG_CMD_SOURCE"),
        Need::On("CONFIG_LEGACY_IMAGE_FORMAT"),
        Need::On("CONFIG_HUSH_PARSER"),
        // The parser xtask/tests/uboot_sandbox.rs runs boot.cmd with.
        Need::On("CONFIG_HUSH_OLD_PARSER"),
    ],
)];
const BOARD_HARDWARE: Needs = &[
    ("the SD card and eMMC are read", &[Need::On("CONFIG_MMC_DW_EXYNOS")]),
    (
        "fdtfile names the DTB of the board U-Boot runs on (/boot/${fdtfile} in the slot)",
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

/// The twin: bootstd's script bootmeth finds boot.scr on the virtio disk and sources it with
/// devtype and devnum set, as distro boot does on the board.
const TWIN_FINDS_SCRIPT: Needs = &[(
    "autoboot runs bootstd, whose script bootmeth finds boot.scr and sources it",
    &[
        Need::On("CONFIG_AUTOBOOT"),
        Need::On("CONFIG_BOOTSTD"),
        Need::On("CONFIG_BOOTMETH_SCRIPT"),
        Need::Is("CONFIG_BOOTCOMMAND", "bootflow scan -lb"),
        Need::On("CONFIG_CMD_SOURCE"),
        Need::On("CONFIG_LEGACY_IMAGE_FORMAT"),
        Need::On("CONFIG_HUSH_PARSER"),
        Need::On("CONFIG_HUSH_OLD_PARSER"),
    ],
)];
const TWIN_HARDWARE: Needs = &[
    (
        "the card is QEMU's first virtio-mmio disk",
        &[
            Need::On("CONFIG_VIRTIO_MMIO"),
            Need::On("CONFIG_VIRTIO_BLK"),
        ],
    ),
    (
        "the device tree is the one QEMU hands over at fdt_addr (boot.cmd runs `fdt addr`)",
        &[
            Need::On("CONFIG_ARCH_QEMU"),
            Need::On("CONFIG_OF_BOARD"),
            Need::On("CONFIG_CMD_FDT"),
        ],
    ),
    (
        "the console is the PL011 at 115200",
        &[
            Need::On("CONFIG_PL01X_SERIAL"),
            Need::Is("CONFIG_BAUDRATE", "115200"),
        ],
    ),
];

impl Firmware {
    /// Every need, in the order of the boot: the environment, finding the script, running it,
    /// the hardware.
    fn needs(self) -> impl Iterator<Item = &'static (&'static str, &'static [Need])> {
        let (finds, hardware) = match self {
            Firmware::Board => (BOARD_FINDS_SCRIPT, BOARD_HARDWARE),
            Firmware::Twin => (TWIN_FINDS_SCRIPT, TWIN_HARDWARE),
        };
        ENV_NEEDS
            .iter()
            .chain(finds)
            .chain(SCRIPT_NEEDS)
            .chain(hardware)
    }
}

/// Every boot need the resolved configuration misses, and every place it would store an
/// environment, as sentences.
pub fn boot_problems(resolved: &[Setting], firmware: Firmware) -> Vec<String> {
    let config = Resolved::from_settings(resolved.to_vec());
    let mut problems = Vec::new();
    for (why, needs) in firmware.needs() {
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

/// Resolve the U-Boot configuration of the checkout `repo` in `uboot_src` and judge it; the
/// resolved `.config` is kept in `<cache>/uboot-check/`.
pub fn check(repo: &Repo, uboot_src: &Path, cache: &Path) -> Result<()> {
    let plan = Plan::read(repo, Package::Uboot)?;
    ensure!(
        uboot_src.join("Makefile").is_file()
            && uboot_src.join("configs").join(&plan.defconfig).is_file(),
        "{} is not a U-Boot source tree with configs/{}",
        uboot_src.display(),
        plan.defconfig
    );
    let makefile = std::fs::read_to_string(uboot_src.join("Makefile"))
        .with_context(|| format!("could not read {}/Makefile", uboot_src.display()))?;
    let version = kconfig::kbuild_version(&makefile).with_context(|| {
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

    let make_args = kconfig::arm_make_args(kconfig::arm_cross_compile().as_deref());
    let twin = Plan::twin_uboot(repo)?;
    let mut problems = Vec::new();
    for (firmware, plan, keep) in [
        (Firmware::Board, &plan, "uboot-check"),
        (Firmware::Twin, &twin, "uboot-twin-check"),
    ] {
        problems.extend(judge(
            firmware,
            plan,
            uboot_src,
            &make_args,
            &cache.join(keep),
        )?);
    }
    ensure!(
        problems.is_empty(),
        "{} U-Boot problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    Ok(())
}

/// Resolve one U-Boot's plan and say what it lost and what it cannot boot.
fn judge(
    firmware: Firmware,
    plan: &Plan,
    uboot_src: &Path,
    make_args: &[String],
    keep: &Path,
) -> Result<Vec<String>> {
    let who = match firmware {
        Firmware::Board => "uboot",
        Firmware::Twin => "uboot (QEMU twin)",
    };
    let resolved = plan.resolve(uboot_src, make_args, keep)?;
    println!(
        "{who}: U-Boot {} {} + {} fragment settings, {} resolved symbols, kept at {}",
        plan.version,
        plan.defconfig,
        resolved.requested,
        resolved.settings.len(),
        resolved.config_path.display()
    );
    let unbootable = boot_problems(&resolved.settings, firmware);
    if resolved.lost.is_empty() {
        println!("{who}: every fragment line survived olddefconfig");
    }
    if unbootable.is_empty() {
        println!(
            "{who}: finds and runs boot.scr from the vfat p1, kernel and DTB from the A/B slots' \
             EROFS, {}, environment nowhere",
            match firmware {
                Firmware::Board => "console on UART2",
                Firmware::Twin => "QEMU's device tree, console on the PL011",
            }
        );
    }
    Ok(resolved
        .lost
        .iter()
        .map(|lost| format!("{who}: {lost}"))
        .chain(unbootable.into_iter().map(|p| format!("{who}: {p}")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings `boot_problems` looks at, as the real 2026.01 odroid-xu3 result has them.
    const BOOTABLE: &str = "\
CONFIG_ENV_IS_NOWHERE=y
# CONFIG_ENV_IS_IN_MMC is not set
# CONFIG_ENV_IS_IN_FAT is not set
CONFIG_AUTOBOOT=y
CONFIG_DISTRO_DEFAULTS=y
CONFIG_BOOTCOMMAND=\"run distro_bootcmd\"
CONFIG_CMD_SOURCE=y
CONFIG_LEGACY_IMAGE_FORMAT=y
CONFIG_HUSH_PARSER=y
CONFIG_HUSH_OLD_PARSER=y
CONFIG_DOS_PARTITION=y
CONFIG_CMD_PART=y
CONFIG_PARTITION_UUIDS=y
CONFIG_CMD_FS_GENERIC=y
CONFIG_FS_FAT=y
CONFIG_ENV_REDUNDANT=y
CONFIG_CMD_MEMORY=y
CONFIG_CMD_IMPORTENV=y
CONFIG_CMD_EXPORTENV=y
CONFIG_CMD_SETEXPR=y
CONFIG_FAT_WRITE=y
CONFIG_FS_EROFS=y
CONFIG_FS_EROFS_ZIP=y
CONFIG_LZ4=y
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
            boot_problems(
                &kconfig::parse(BOOTABLE, ".config").unwrap(),
                Firmware::Board
            ),
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
            .replace("CONFIG_ENV_REDUNDANT=y\n", "")
            .replace("CONFIG_FS_EROFS_ZIP=y", "# CONFIG_FS_EROFS_ZIP is not set")
            .replace("run distro_bootcmd", "bootflow scan")
            .replace("CONFIG_BAUDRATE=115200", "CONFIG_BAUDRATE=9600");
        let problems = boot_problems(
            &kconfig::parse(&broken, ".config").unwrap(),
            Firmware::Board,
        );
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
                "CONFIG_ENV_REDUNDANT=y",
                "CONFIG_FS_EROFS_ZIP=y",
                "CONFIG_BAUDRATE=115200",
                "CONFIG_ENV_IS_IN_MMC",
            ],
            "{problems:#?}"
        );
        assert!(problems[2].ends_with(
            "the bootable-flagged vfat p1 of the MBR is read, and the slots' PARTUUIDs named"
        ));
        assert!(problems[3].contains("the two copies of a redundant environment"));
        assert!(problems[4].ends_with("the slot's LZ4-compressed EROFS root (/boot)"));
    }
}
