//! Stage (a) of `cargo xtask check`, the Kconfig round trip: each `configs/*_defconfig` is loaded
//! by the real Buildroot, every symbol we set that it dropped or changed is named, the options
//! Berth relies on must be on, and the file must be in savedefconfig form.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::buildroot::Buildroot;
use crate::kconfig::{self, Resolved};

/// A defconfig Buildroot loaded, and what is wrong with it.
pub struct Loaded {
    /// How many settings the defconfig makes.
    pub requested: usize,
    pub problems: Vec<String>,
}

/// Configure `output` from `defconfig` (named `name` in messages) and judge the result; an error
/// means Buildroot could not load it.
pub fn check(
    sh: &Shell,
    tree: &Buildroot,
    defconfig: &Path,
    name: &str,
    output: &Path,
) -> Result<Loaded> {
    let resolved = round_trip(sh, tree, output, defconfig, name)?;
    let mut problems: Vec<String> = resolved.dropped.iter().map(ToString::to_string).collect();
    for missing in missing_options(&resolved.config) {
        problems.push(format!("{name}: {missing}"));
    }
    let saved = output.join("savedefconfig");
    match tree.save_defconfig(sh, output, &saved).and_then(|()| {
        std::fs::read_to_string(&saved)
            .with_context(|| format!("could not read {}", saved.display()))
    }) {
        Ok(saved_text) => {
            for difference in savedefconfig_differences(&resolved.text, &saved_text) {
                problems.push(format!("{name}: not in savedefconfig form: {difference}"));
            }
        }
        Err(err) => problems.push(format!("{name}: {err:#}")),
    }
    Ok(Loaded {
        requested: resolved.requested,
        problems,
    })
}

struct RoundTrip {
    /// The defconfig as written.
    text: String,
    requested: usize,
    dropped: Vec<kconfig::Dropped>,
    config: Resolved,
}

fn round_trip(
    sh: &Shell,
    tree: &Buildroot,
    output: &Path,
    defconfig: &Path,
    name: &str,
) -> Result<RoundTrip> {
    let text =
        std::fs::read_to_string(defconfig).with_context(|| format!("could not read {name}"))?;
    let requested = kconfig::parse(&text, name)?;
    tree.load_defconfig(sh, output, defconfig)?;
    let dot_config = output.join(".config");
    let resolved_text = std::fs::read_to_string(&dot_config)
        .with_context(|| format!("Buildroot wrote no {} for {name}", dot_config.display()))?;
    let config = Resolved::parse(&resolved_text, ".config")?;
    Ok(RoundTrip {
        requested: requested.len(),
        dropped: kconfig::dropped(&requested, &config),
        config,
        text,
    })
}

/// The read-only root's configuration rules (`configs/hardening/readonly-root.toml`) judged on
/// the `.config` Buildroot resolved in `output`, each failure a problem naming why.
pub fn read_only_root(repo_root: &Path, output: &Path, name: &str) -> Vec<String> {
    let judged = (|| -> Result<Vec<String>> {
        let rules =
            crate::audit::root::RootRules::load(&repo_root.join(crate::audit::tables::ROOT_RULES))?;
        let dot_config = output.join(".config");
        let text = std::fs::read_to_string(&dot_config)
            .with_context(|| format!("could not read {}", dot_config.display()))?;
        let config = Resolved::parse(&text, ".config")?;
        Ok(crate::audit::root::config_findings(&rules, &config)
            .0
            .into_iter()
            .filter(|f| f.verdict == crate::audit::report::Verdict::Fail)
            .map(|f| format!("{name}: read-only root: {}", f.detail))
            .collect())
    })();
    judged.unwrap_or_else(|err| vec![format!("{name}: read-only root: {err:#}")])
}

/// How a defconfig differs from what `make savedefconfig` writes for it (the form the Buildroot
/// manual asks for, so a later savedefconfig never reshuffles it).
fn savedefconfig_differences(ours: &str, saved: &str) -> Vec<String> {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let (ours, saved) = (lines(ours), lines(saved));
    if ours == saved {
        return Vec::new();
    }
    let mut differences: Vec<String> = ours
        .iter()
        .filter(|l| !saved.contains(l))
        .map(|l| format!("'{l}' is not in savedefconfig's output (a default, or dropped)"))
        .collect();
    differences.extend(
        saved
            .iter()
            .filter(|l| !ours.contains(l))
            .map(|l| format!("savedefconfig adds '{l}'")),
    );
    if differences.is_empty() {
        differences
            .push("the lines are in a different order than savedefconfig writes them".into());
    }
    differences
}

/// Options Berth relies on whether or not the defconfig spells them out: savedefconfig leaves
/// out the ones that are Buildroot's defaults, so a changed default would otherwise go unseen.
const REQUIRED_OPTIONS: &[(&[&str], &str)] = &[
    (
        &["BR2_SSP_STRONG", "BR2_SSP_ALL"],
        "stack protector (strong or all)",
    ),
    (&["BR2_RELRO_FULL"], "full RELRO"),
    (
        &["BR2_FORTIFY_SOURCE_3", "BR2_FORTIFY_SOURCE_2"],
        "_FORTIFY_SOURCE (3, or 2)",
    ),
    (&["BR2_PIC_PIE"], "position-independent executables"),
    (&["BR2_REPRODUCIBLE"], "a reproducible build"),
    (&["BR2_INIT_SYSTEMD"], "systemd as init"),
    (&["BR2_PACKAGE_OPENSSH_SERVER"], "the SSH server"),
    (
        &["BR2_TARGET_ROOTFS_EROFS_LZ4HC"],
        "an LZ4HC-compressed EROFS root (U-Boot 2026.01 reads the kernel from it, and reads LZ4 but not LZMA)",
    ),
    // Selected by rauc-hawkbit-updater, so savedefconfig does not spell it out.
    (&["BR2_PACKAGE_RAUC"], "RAUC, which installs updates"),
    (
        &["BR2_PACKAGE_UBOOT_TOOLS_FWPRINTENV"],
        "fw_setenv, RAUC's U-Boot backend",
    ),
    (
        &["BR2_PACKAGE_HOST_RAUC"],
        "host rauc, which makes the bundle",
    ),
];

fn missing_options(config: &Resolved) -> Vec<String> {
    REQUIRED_OPTIONS
        .iter()
        .filter(|(any_of, _)| !any_of.iter().any(|s| config.is_enabled(s)))
        .map(|(any_of, what)| format!("{what} is off: Berth needs {}", any_of.join(" or ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_the_hardening_options() {
        let good = Resolved::parse(
            "BR2_SSP_STRONG=y\nBR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\nBR2_PIC_PIE=y\n\
             BR2_REPRODUCIBLE=y\nBR2_INIT_SYSTEMD=y\nBR2_PACKAGE_OPENSSH_SERVER=y\n\
             BR2_TARGET_ROOTFS_EROFS_LZ4HC=y\n\
             BR2_PACKAGE_RAUC=y\nBR2_PACKAGE_UBOOT_TOOLS_FWPRINTENV=y\nBR2_PACKAGE_HOST_RAUC=y\n",
            ".config",
        )
        .unwrap();
        assert_eq!(missing_options(&good), Vec::<String>::new());
        let weak = Resolved::parse(
            "BR2_SSP_REGULAR=y\nBR2_RELRO_PARTIAL=y\nBR2_FORTIFY_SOURCE_2=y\n# BR2_PIC_PIE is not set\n\
             BR2_REPRODUCIBLE=y\nBR2_INIT_SYSTEMD=y\nBR2_PACKAGE_OPENSSH_SERVER=y\n\
             BR2_TARGET_ROOTFS_EROFS_LZMA=y\n\
             BR2_PACKAGE_RAUC=y\nBR2_PACKAGE_UBOOT_TOOLS_FWPRINTENV=y\nBR2_PACKAGE_HOST_RAUC=y\n",
            ".config",
        )
        .unwrap();
        let missing = missing_options(&weak);
        assert_eq!(missing.len(), 4, "{missing:?}");
        assert!(missing[0].contains("BR2_SSP_STRONG or BR2_SSP_ALL"));
        assert!(missing[1].contains("BR2_RELRO_FULL"));
        assert!(missing[2].contains("BR2_PIC_PIE"));
        assert!(missing[3].contains("BR2_TARGET_ROOTFS_EROFS_LZ4HC"));
    }

    #[test]
    fn compares_with_savedefconfig_output() {
        let saved = "BR2_arm=y\nBR2_cortex_a15_a7=y\n# BR2_TARGET_ROOTFS_TAR is not set\n";
        assert!(savedefconfig_differences(saved, saved).is_empty());
        assert!(savedefconfig_differences(
            "BR2_arm=y\n\nBR2_cortex_a15_a7=y\n# BR2_TARGET_ROOTFS_TAR is not set",
            saved
        )
        .is_empty());
        let ours = "BR2_arm=y\nBR2_cortex_a15_a7=y\nBR2_PIC_PIE=y\n";
        assert_eq!(
            savedefconfig_differences(ours, saved),
            vec![
                "'BR2_PIC_PIE=y' is not in savedefconfig's output (a default, or dropped)"
                    .to_string(),
                "savedefconfig adds '# BR2_TARGET_ROOTFS_TAR is not set'".to_string(),
            ]
        );
        let reordered = "BR2_cortex_a15_a7=y\nBR2_arm=y\n# BR2_TARGET_ROOTFS_TAR is not set\n";
        assert_eq!(savedefconfig_differences(reordered, saved).len(), 1);
    }
}
