//! Resolving a Kconfig package's configuration the way Buildroot does, and the Kbuild pieces that
//! needs: running a Kconfig target out of tree, finding the ARM cross compiler, reading the release
//! a top Makefile declares.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::settings::{self, Setting};

/// The triplet tried when CROSS_COMPILE is not set (Debian's gcc-arm-linux-gnueabihf).
const DEFAULT_CROSS_COMPILE: &str = "arm-linux-gnueabihf-";

/// Resolve `defconfig` (a Kconfig target of the tree, such as `exynos_defconfig`) with
/// `fragments` merged over it, in the Kbuild source tree `src`, as the pinned Buildroot's
/// kconfig-package infrastructure does (`package/pkg-kconfig.mk`, `kconfig-package-merge-config`):
///
/// 1. `make <defconfig>` (`$(PKG)_KCONFIG_DEFCONFIG`), which writes a full `.config`: every
///    visible symbol the defconfig leaves alone gets its default *as the defconfig alone decides
///    it*, written out as a value of its own;
/// 2. `support/kconfig/merge_config.sh -m -O <dir> .config <fragments>`: each symbol a fragment
///    sets replaces its earlier line, a later fragment's winning ([`settings::merge`]);
/// 3. `make olddefconfig` (`kconfig-package-regen-dot-config`), which completes the rest.
///
/// So a visible symbol whose default depends on something a fragment changes keeps the value
/// step 1 gave it, exactly as in the real build. (Merging the defconfig's text with the
/// fragments and running olddefconfig once would compute that default afresh.) The package's own
/// `$(PKG)_KCONFIG_FIXUP_CMDS` depend on the rest of the Buildroot configuration and are not
/// applied here.
///
/// Every make runs with `O=work`, so the source tree is only read; `make_args` go to each of them
/// (`ARCH=arm`, `CROSS_COMPILE=...`). The resolved `.config` stays in `work`; its settings are
/// returned.
pub fn resolve(
    src: &Path,
    defconfig: &str,
    fragments: &[PathBuf],
    work: &Path,
    make_args: &[String],
) -> Result<Vec<Setting>> {
    let sh = Shell::new().context("could not start a shell for make")?;
    make_config(&sh, src, work, make_args, defconfig)?;

    let dot_config = work.join(".config");
    let mut layers = vec![read(&dot_config, &format!("{defconfig} .config"))?];
    for fragment in fragments {
        layers.push(read(fragment, &fragment.display().to_string())?);
    }
    let merged = settings::merge(layers.iter().map(Vec::as_slice));
    std::fs::write(&dot_config, settings::render(&merged)).with_context(|| {
        format!(
            "could not write the merged config to {}",
            dot_config.display()
        )
    })?;

    make_config(&sh, src, work, make_args, "olddefconfig")?;
    read(&dot_config, "resolved .config").with_context(|| {
        format!(
            "olddefconfig left no readable .config in {}",
            work.display()
        )
    })
}

fn read(path: &Path, name: &str) -> Result<Vec<Setting>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    settings::parse(&text, name)
}

/// Run a Kconfig target (`olddefconfig`, `<board>_defconfig`) of the Kbuild tree `src` in the
/// out-of-tree folder `out`.
fn make_config(sh: &Shell, src: &Path, out: &Path, args: &[String], target: &str) -> Result<()> {
    let output = cmd!(sh, "make -s -C {src} O={out} {args...} {target}")
        .quiet()
        .ignore_status()
        .output()
        .context("could not run make (apt-get install make gcc flex bison)")?;
    if !output.status.success() {
        bail!(
            "make {} {target} failed in {} (needs a host gcc, flex and bison):\n{}{}",
            args.join(" "),
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The ARM `CROSS_COMPILE` prefix: from the environment, else Debian's cross compiler when it is
/// on PATH, else `None` (Kconfig then probes the host compiler).
pub fn arm_cross_compile() -> Option<String> {
    if let Some(prefix) = std::env::var("CROSS_COMPILE")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Some(prefix);
    }
    which::which(format!("{DEFAULT_CROSS_COMPILE}gcc"))
        .is_ok()
        .then(|| DEFAULT_CROSS_COMPILE.to_string())
}

/// The make arguments for an ARM Kbuild tree: `ARCH=arm`, and `CROSS_COMPILE` when there is one.
pub fn arm_make_args(cross_compile: Option<&str>) -> Vec<String> {
    std::iter::once("ARCH=arm".to_string())
        .chain(cross_compile.map(|c| format!("CROSS_COMPILE={c}")))
        .collect()
}

/// A variable of a top Makefile: `NAME = value`, `NAME := value` or `export NAME := value`.
pub fn makefile_variable(makefile: &str, name: &str) -> Option<String> {
    makefile.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=')?;
        let key = key.strip_suffix(':').unwrap_or(key).trim();
        (key == name).then(|| value.trim().to_string())
    })
}

/// The release a Kbuild tree's top Makefile declares, e.g. `2026.01`, `2026.04-rc2`, `6.12.91`.
pub fn kbuild_version(makefile: &str) -> Option<String> {
    let field = |name| makefile_variable(makefile, name).filter(|v| !v.is_empty());
    let (version, patchlevel) = (field("VERSION")?, field("PATCHLEVEL")?);
    let sublevel = field("SUBLEVEL")
        .map(|s| format!(".{s}"))
        .unwrap_or_default();
    Some(format!(
        "{version}.{patchlevel}{sublevel}{}",
        field("EXTRAVERSION").unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_from_the_top_makefile() {
        let release =
            "# SPDX\n\nVERSION = 2026\nPATCHLEVEL = 01\nSUBLEVEL =\nEXTRAVERSION =\nNAME =\n";
        assert_eq!(kbuild_version(release).as_deref(), Some("2026.01"));
        let rc = release.replace("EXTRAVERSION =", "EXTRAVERSION = -rc2");
        assert_eq!(kbuild_version(&rc).as_deref(), Some("2026.01-rc2"));
        assert_eq!(
            kbuild_version("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 91\n").as_deref(),
            Some("6.12.91")
        );
        assert_eq!(kbuild_version("all:\n\techo\n"), None);
        assert_eq!(kbuild_version("VERSION = 6\nPATCHLEVEL =\n"), None);
    }

    #[test]
    fn reads_simple_and_exported_variables() {
        let mk = "# comment\nexport BR2_VERSION := 2026.02.3\nexport BR2_VERSION_FULL := $(BR2_VERSION)\n";
        assert_eq!(
            makefile_variable(mk, "BR2_VERSION").as_deref(),
            Some("2026.02.3")
        );
        assert_eq!(makefile_variable("all:\n", "BR2_VERSION"), None);
        assert_eq!(
            makefile_variable("VERSION = 6\n", "VERSION").as_deref(),
            Some("6")
        );
    }

    #[test]
    fn arm_make_args_name_the_cross_compiler_only_when_there_is_one() {
        assert_eq!(arm_make_args(None), ["ARCH=arm"]);
        assert_eq!(
            arm_make_args(Some("arm-linux-gnueabihf-")),
            ["ARCH=arm", "CROSS_COMPILE=arm-linux-gnueabihf-"]
        );
    }
}
