//! What our Buildroot defconfig tells Buildroot to configure for a Kconfig package (the kernel or
//! U-Boot): which defconfig of the package's tree, which of our fragments over it, which release.
//! Read from the defconfig, so these facts are stated once; resolved with [`super::resolve`].

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::{Dropped, Resolved, Setting, Value};
use crate::project::Repo;

/// A Kconfig package Buildroot builds, by the prefix of its `BR2_*` symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    Linux,
    Uboot,
}

impl Package {
    fn symbol(self, suffix: &str) -> String {
        let prefix = match self {
            Package::Linux => "BR2_LINUX_KERNEL",
            Package::Uboot => "BR2_TARGET_UBOOT",
        };
        format!("{prefix}_{suffix}")
    }

    /// The symbol naming the package tree's defconfig, without its `_defconfig`.
    fn defconfig_symbol(self) -> String {
        match self {
            Package::Linux => self.symbol("DEFCONFIG"),
            Package::Uboot => self.symbol("BOARD_DEFCONFIG"),
        }
    }
}

/// What Buildroot is told to configure for one package.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The Kconfig target of the package's tree, e.g. `exynos_defconfig`.
    pub defconfig: String,
    /// Our fragments, in the order Buildroot merges them.
    pub fragments: Vec<PathBuf>,
    /// `*_CUSTOM_VERSION_VALUE`.
    pub version: String,
    /// Where fragment names in messages are taken relative to.
    root: PathBuf,
}

impl Plan {
    /// The plan of `package` in the default board's Buildroot defconfig of `repo`.
    pub fn read(repo: &Repo, package: Package) -> Result<Plan> {
        let path = repo
            .path("configs")
            .join(crate::project::default_board().defconfig);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let name = path.strip_prefix(repo.root()).unwrap_or(&path);
        let defconfig = Resolved::parse(&text, &name.display().to_string())?;
        let mut plan = Plan::from_defconfig(&defconfig, package, &repo.path("br2-external"))?;
        plan.root = repo.root().to_path_buf();
        Ok(plan)
    }

    /// Read the settings of `package` from a Buildroot defconfig; `$(BR2_EXTERNAL_BERTH_PATH)` in
    /// fragment paths stands for `br2_external`.
    pub fn from_defconfig(
        defconfig: &Resolved,
        package: Package,
        br2_external: &Path,
    ) -> Result<Plan> {
        let string = |symbol: &str| match defconfig.get(symbol) {
            Some(Value::Str(s)) if !s.is_empty() => Ok(s.clone()),
            _ => bail!("the Buildroot defconfig does not set {symbol}"),
        };
        if package == Package::Uboot {
            let kconfig = package.symbol("BUILD_SYSTEM_KCONFIG");
            ensure!(
                defconfig.is_enabled(&kconfig),
                "the Buildroot defconfig does not build U-Boot with Kconfig ({kconfig})"
            );
        }
        let external = br2_external.display().to_string();
        let fragments = string(&package.symbol("CONFIG_FRAGMENT_FILES"))?
            .split_whitespace()
            .map(|f| {
                without_dot_dot(Path::new(
                    &f.replace("$(BR2_EXTERNAL_BERTH_PATH)", &external),
                ))
            })
            .collect();
        Ok(Plan {
            defconfig: format!("{}_defconfig", string(&package.defconfig_symbol())?),
            fragments,
            version: string(&package.symbol("CUSTOM_VERSION_VALUE"))?,
            root: PathBuf::new(),
        })
    }

    /// The QEMU twin's U-Boot: the board's U-Boot plan (version and fragments) with the
    /// defconfig and the extra fragment that br2-external/package/berth-twin-uboot builds with,
    /// read from its `.mk`, their one home.
    pub fn twin_uboot(repo: &Repo) -> Result<Plan> {
        let board = Plan::read(repo, Package::Uboot)?;
        let mk = repo.path(TWIN_UBOOT_MK);
        let text = std::fs::read_to_string(&mk)
            .with_context(|| format!("could not read {}", mk.display()))?;
        let (defconfig, own) = twin_uboot_settings(&text, &repo.path("br2-external"))
            .with_context(|| {
                format!(
                    "{} does not say how the twin's U-Boot is configured",
                    mk.display()
                )
            })?;
        Ok(Plan {
            defconfig,
            fragments: board.fragments.into_iter().chain(own).collect(),
            ..board
        })
    }

    /// What the fragments ask for, merged (a later fragment's setting of a symbol replaces an
    /// earlier one's), each with its `file:line` in the checkout.
    pub fn requested(&self) -> Result<Vec<Setting>> {
        let layers = self
            .fragments
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                let name = path.strip_prefix(&self.root).unwrap_or(path);
                super::parse(&text, &name.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(super::merge(layers.iter().map(Vec::as_slice)))
    }

    /// Resolve the plan in the package tree `src` ([`super::resolve()`] in a temporary folder,
    /// `make_args` to every make), keep a copy of the resolved `.config` as
    /// `<keep>/resolved.config`, and name every fragment line that did not survive.
    pub fn resolve(&self, src: &Path, make_args: &[String], keep: &Path) -> Result<Resolution> {
        let requested = self.requested()?;
        let work = tempfile::Builder::new()
            .prefix("berth-kconfig-")
            .tempdir()
            .context("could not create a temporary folder for Kconfig")?;
        let settings = super::resolve(
            src,
            &self.defconfig,
            &self.fragments,
            work.path(),
            make_args,
        )?;
        std::fs::create_dir_all(keep)
            .with_context(|| format!("could not create {}", keep.display()))?;
        let config_path = keep.join("resolved.config");
        std::fs::copy(work.path().join(".config"), &config_path)
            .with_context(|| format!("could not write {}", config_path.display()))?;
        let lost = super::dropped(&requested, &Resolved::from_settings(settings.clone()));
        Ok(Resolution {
            requested: requested.len(),
            settings,
            lost,
            config_path,
        })
    }
}

/// A plan resolved in a package tree.
pub struct Resolution {
    /// How many settings the fragments make (merged).
    pub requested: usize,
    pub settings: Vec<Setting>,
    /// Every fragment line the resolved configuration does not hold.
    pub lost: Vec<Dropped>,
    /// A copy of the resolved `.config`, for inspection and the audit.
    pub config_path: PathBuf,
}

impl Resolution {
    /// An error listing every lost fragment line, when there is one; resolved in `src`.
    pub fn ensure_kept(&self, src: &Path) -> Result<()> {
        let lost: Vec<String> = self.lost.iter().map(ToString::to_string).collect();
        ensure!(
            lost.is_empty(),
            "{} fragment line(s) did not survive olddefconfig in {}:\n  {}",
            lost.len(),
            src.display(),
            lost.join("\n  ")
        );
        Ok(())
    }
}

/// `a/b/../c` as `a/c`, so messages name `configs/uboot.fragment` rather than a detour.
fn without_dot_dot(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The twin U-Boot package's makefile.
pub const TWIN_UBOOT_MK: &str = "br2-external/package/berth-twin-uboot/berth-twin-uboot.mk";

/// From the twin U-Boot package's makefile (pure): its Kconfig defconfig, and the fragments it
/// names in the BR2_EXTERNAL tree (`$(BR2_EXTERNAL_BERTH_PATH)/…`), which it merges after the
/// board's.
pub fn twin_uboot_settings(mk: &str, br2_external: &Path) -> Result<(String, Vec<PathBuf>)> {
    let defconfig = mk
        .lines()
        .find_map(|l| l.strip_prefix("BERTH_TWIN_UBOOT_KCONFIG_DEFCONFIG = "))
        .map(|v| v.trim().to_string())
        .context("no BERTH_TWIN_UBOOT_KCONFIG_DEFCONFIG")?;
    let external = br2_external.display().to_string();
    let fragments: Vec<PathBuf> = mk
        .split_whitespace()
        .filter(|w| w.starts_with("$(BR2_EXTERNAL_BERTH_PATH)/") && w.ends_with(".fragment"))
        .map(|w| {
            without_dot_dot(Path::new(
                &w.replace("$(BR2_EXTERNAL_BERTH_PATH)", &external),
            ))
        })
        .collect();
    ensure!(!fragments.is_empty(), "no fragment of its own");
    Ok((defconfig, fragments))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BR_DEFCONFIG: &str = "\
BR2_LINUX_KERNEL=y
BR2_LINUX_KERNEL_CUSTOM_VERSION=y
BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE=\"6.12.104\"
BR2_LINUX_KERNEL_DEFCONFIG=\"exynos\"
BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES=\"$(BR2_EXTERNAL_BERTH_PATH)/../configs/linux-board.fragment $(BR2_EXTERNAL_BERTH_PATH)/../configs/linux-docker.fragment\"
BR2_TARGET_UBOOT=y
BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG=y
BR2_TARGET_UBOOT_CUSTOM_VERSION=y
BR2_TARGET_UBOOT_CUSTOM_VERSION_VALUE=\"2026.01\"
BR2_TARGET_UBOOT_BOARD_DEFCONFIG=\"odroid-xu3\"
BR2_TARGET_UBOOT_CONFIG_FRAGMENT_FILES=\"$(BR2_EXTERNAL_BERTH_PATH)/../configs/uboot.fragment $(BR2_EXTERNAL_BERTH_PATH)/extra.fragment\"
";

    fn plan_of(text: &str, package: Package) -> Result<Plan> {
        let defconfig = Resolved::parse(text, "defconfig").unwrap();
        Plan::from_defconfig(&defconfig, package, Path::new("/repo/br2-external"))
    }

    #[test]
    fn reads_both_plans_from_the_buildroot_defconfig() {
        assert_eq!(
            plan_of(BR_DEFCONFIG, Package::Uboot).unwrap(),
            Plan {
                defconfig: "odroid-xu3_defconfig".into(),
                fragments: vec![
                    PathBuf::from("/repo/configs/uboot.fragment"),
                    PathBuf::from("/repo/br2-external/extra.fragment"),
                ],
                version: "2026.01".into(),
                root: PathBuf::new(),
            }
        );
        let linux = plan_of(BR_DEFCONFIG, Package::Linux).unwrap();
        assert_eq!(linux.defconfig, "exynos_defconfig");
        assert_eq!(
            linux.fragments,
            [
                PathBuf::from("/repo/configs/linux-board.fragment"),
                PathBuf::from("/repo/configs/linux-docker.fragment"),
            ]
        );
        assert_eq!(linux.version, "6.12.104");
    }

    #[test]
    fn a_defconfig_without_the_settings_is_an_error_naming_the_symbol() {
        let without = BR_DEFCONFIG.replace("BR2_TARGET_UBOOT_BOARD_DEFCONFIG=\"odroid-xu3\"\n", "");
        let err = plan_of(&without, Package::Uboot).unwrap_err();
        assert!(
            err.to_string().contains("BR2_TARGET_UBOOT_BOARD_DEFCONFIG"),
            "{err}"
        );
        let legacy = BR_DEFCONFIG.replace("BR2_TARGET_UBOOT_BUILD_SYSTEM_KCONFIG=y\n", "");
        assert!(plan_of(&legacy, Package::Uboot).is_err());
        let no_fragments = BR_DEFCONFIG.replace("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", "X");
        let err = plan_of(&no_fragments, Package::Linux).unwrap_err();
        assert!(
            err.to_string()
                .contains("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"),
            "{err}"
        );
    }

    #[test]
    fn requested_settings_name_their_fragment_lines_in_the_checkout() {
        let repo = tempfile::tempdir().unwrap();
        let configs = repo.path().join("configs");
        std::fs::create_dir(&configs).unwrap();
        std::fs::write(configs.join("a.fragment"), "CONFIG_A=y\nCONFIG_B=y\n").unwrap();
        std::fs::write(configs.join("b.fragment"), "# CONFIG_A is not set\n").unwrap();
        let plan = Plan {
            defconfig: "x_defconfig".into(),
            fragments: vec![configs.join("a.fragment"), configs.join("b.fragment")],
            version: "1".into(),
            root: repo.path().to_path_buf(),
        };
        let requested = plan.requested().unwrap();
        assert_eq!(requested.len(), 2);
        assert_eq!(requested[0].value, Value::No);
        assert_eq!(requested[0].origin, "configs/b.fragment:1");
        assert_eq!(requested[1].origin, "configs/a.fragment:2");
    }

    #[test]
    fn the_twin_u_boot_takes_its_defconfig_and_own_fragment_from_its_makefile() {
        let repo = crate::project::Repo::checkout();
        let text = std::fs::read_to_string(repo.path(TWIN_UBOOT_MK)).unwrap();
        let (defconfig, own) = twin_uboot_settings(&text, &repo.path("br2-external")).unwrap();
        assert_eq!(defconfig, "qemu_arm_defconfig");
        assert_eq!(own, vec![repo.path("board/qemu-twin/uboot.fragment")]);
        let plan = Plan::twin_uboot(&repo).unwrap();
        let board = Plan::read(&repo, Package::Uboot).unwrap();
        assert_eq!(plan.fragments[..board.fragments.len()], board.fragments[..]);
        assert_eq!(plan.fragments.last(), own.last());
        assert_eq!(plan.version, board.version);
        assert!(twin_uboot_settings("FOO = 1\n", Path::new("/x")).is_err());
    }
}
