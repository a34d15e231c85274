//! The kernel stage of `cargo xtask check`: merge `exynos_defconfig` with our fragments in a real
//! 6.12 tree, resolve with `olddefconfig`, name every fragment line that did not survive, audit.
//!
//! The source tree is only read: Kconfig runs with `O=` a temporary folder, removed afterwards.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use xshell::{cmd, Shell};

use crate::audit::kernel::{self as audit, Toolchain};
use crate::kconfig::{self, Resolved, Setting};

/// Board defconfig in the kernel tree that the fragments apply to.
pub const BASE_DEFCONFIG: &str = "arch/arm/configs/exynos_defconfig";

/// Our fragments, in the order Buildroot applies them (BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES).
pub const FRAGMENTS: &[&str] = &[
    "configs/linux-board.fragment",
    "configs/linux-docker.fragment",
    "configs/linux-hardening.fragment",
];

/// The triplet tried when CROSS_COMPILE is not set (Debian's gcc-arm-linux-gnueabihf).
const DEFAULT_CROSS_COMPILE: &str = "arm-linux-gnueabihf-";

pub fn check(linux_src: &Path) -> Result<()> {
    let repo = crate::util::repo_root();
    let fragments: Vec<PathBuf> = FRAGMENTS.iter().map(|f| repo.join(f)).collect();
    let resolved = resolve(linux_src, &fragments)?;

    let requested = merged_fragments(&fragments)?;
    let lost = kconfig::dropped(&requested, &resolved.config);
    println!(
        "kernel: {} fragment settings, {} resolved symbols ({} with {})",
        requested.len(),
        resolved.symbol_count,
        linux_src.display(),
        resolved.compiler
    );
    if !lost.is_empty() {
        for d in &lost {
            eprintln!("  {d}");
        }
        bail!(
            "{} fragment line(s) did not survive olddefconfig in {}",
            lost.len(),
            linux_src.display()
        );
    }
    println!("kernel: every fragment line survived olddefconfig");

    let board = crate::project::default_board().dir(&crate::project::Repo::checkout());
    let sysctl = [board.join("rootfs-overlay/etc/sysctl.d")];
    let report = audit::audit_files(
        &crate::project::Repo::checkout(),
        &resolved.config_path,
        Some(&board.join("cmdline.txt")),
        Some(&sysctl),
        None,
        resolved.toolchain,
    )?;
    println!(
        "kernel: resolved config kept at {}",
        resolved.config_path.display()
    );
    // The passing rules are listed by `cargo xtask audit kernel <that .config>`.
    print!("{}", report.render_attention());
    report.verdict()
}

/// The fragments merged (a later fragment's setting of a symbol replaces an earlier one's).
pub fn merged_fragments(fragments: &[PathBuf]) -> Result<Vec<Setting>> {
    let parsed = fragments
        .iter()
        .map(|f| read_kconfig(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(kconfig::merge(parsed.iter().map(Vec::as_slice)))
}

pub fn read_kconfig(path: &Path) -> Result<Vec<Setting>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let name = path.strip_prefix(crate::util::repo_root()).unwrap_or(path);
    kconfig::parse(&text, &name.display().to_string())
}

pub struct ResolvedConfig {
    pub config: Resolved,
    pub symbol_count: usize,
    /// A copy of the resolved `.config` (kept in the cache folder for inspection and the audit).
    pub config_path: PathBuf,
    pub toolchain: Toolchain,
    /// Which compiler Kconfig probed, for the log.
    pub compiler: String,
}

/// Merge `exynos_defconfig` + `fragments`, run `make ARCH=arm olddefconfig` in a temporary `O=`
/// folder, and return the resolved configuration.
pub fn resolve(linux_src: &Path, fragments: &[PathBuf]) -> Result<ResolvedConfig> {
    ensure!(
        linux_src.join("Makefile").is_file() && linux_src.join(BASE_DEFCONFIG).is_file(),
        "{} is not a Linux source tree with {BASE_DEFCONFIG}",
        linux_src.display()
    );
    let base = read_kconfig(&linux_src.join(BASE_DEFCONFIG))?;
    let mut layers = vec![base];
    for f in fragments {
        layers.push(read_kconfig(f)?);
    }
    let merged = kconfig::merge(layers.iter().map(Vec::as_slice));

    let work = TempDir::new("berth-kernel-check")?;
    std::fs::write(work.path().join(".config"), kconfig::render(&merged)).with_context(|| {
        format!(
            "could not write the merged config into {}",
            work.path().display()
        )
    })?;

    let sh = Shell::new()?;
    let (cross, toolchain, compiler) = cross_compile(&sh);
    let out = work.path();
    make_arm_config(&sh, linux_src, out, cross.as_deref(), "olddefconfig")?;
    let text = std::fs::read_to_string(out.join(".config"))
        .with_context(|| format!("olddefconfig left no .config in {}", out.display()))?;
    let settings = kconfig::parse(&text, "resolved .config")?;
    let symbol_count = settings.len();

    let keep = crate::util::cache_dir()?.join("kernel-check");
    std::fs::create_dir_all(&keep)
        .with_context(|| format!("could not create {}", keep.display()))?;
    let config_path = keep.join("resolved.config");
    std::fs::write(&config_path, &text)
        .with_context(|| format!("could not write {}", config_path.display()))?;

    Ok(ResolvedConfig {
        config: Resolved::from_settings(settings),
        symbol_count,
        config_path,
        toolchain,
        compiler,
    })
}

/// Run a Kconfig target (`olddefconfig`, `<board>_defconfig`) with `ARCH=arm` in the out-of-tree
/// folder `out`; shared by the kernel and U-Boot stages, which both use Kbuild.
pub fn make_arm_config(
    sh: &Shell,
    src: &Path,
    out: &Path,
    cross: Option<&str>,
    target: &str,
) -> Result<()> {
    let cross_arg = cross.map(|c| format!("CROSS_COMPILE={c}"));
    let output = cmd!(
        sh,
        "make -s -C {src} O={out} ARCH=arm {cross_arg...} {target}"
    )
    .ignore_status()
    .output()
    .with_context(|| "could not run make (apt-get install make gcc flex bison)".to_string())?;
    if !output.status.success() {
        bail!(
            "make ARCH=arm {target} failed in {} (needs a host gcc, flex and bison):\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The ARM `CROSS_COMPILE` prefix: from the environment, else Debian's cross compiler when it
/// runs, else `None`.
pub fn arm_cross_compile(sh: &Shell) -> Option<String> {
    if let Some(prefix) = std::env::var("CROSS_COMPILE")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Some(prefix);
    }
    let gcc = format!("{DEFAULT_CROSS_COMPILE}gcc");
    cmd!(sh, "{gcc} --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
        .then(|| DEFAULT_CROSS_COMPILE.to_string())
}

/// `CROSS_COMPILE` from the environment, else Debian's ARM cross compiler when installed, else
/// the host compiler (Kconfig then cannot probe ARM-only compiler features).
fn cross_compile(sh: &Shell) -> (Option<String>, Toolchain, String) {
    if let Some(prefix) = arm_cross_compile(sh) {
        let gcc = format!("{prefix}gcc");
        return (Some(prefix), Toolchain::Target, gcc);
    }
    let gcc = format!("{DEFAULT_CROSS_COMPILE}gcc");
    eprintln!(
        "kernel: no ARM cross compiler ({gcc}); Kconfig probes the host gcc, so rules on \
         compiler-probed options only warn (apt-get install gcc-arm-linux-gnueabihf to judge them)"
    );
    (None, Toolchain::Host, "the host gcc".to_string())
}

/// A folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{stamp}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
