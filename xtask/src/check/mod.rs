//! `cargo xtask check`: the offline validation, for developers and CI.
//!
//! Stages, one file each, each reporting every problem it finds; all problems of all stages are
//! listed together at the end and any of them makes the command fail:
//! - (a) [`defconfig`]: the Kconfig round trip of each `configs/*_defconfig` in the real Buildroot;
//! - (b) [`check_package`]: `utils/check-package` over `br2-external/`, the patches under
//!   `patches/` and the shell scripts under `board/`;
//! - (c) [`shellcheck`] on every shell script of the repository;
//! - (d) [`packages`], from `show-info`: the package set a Docker host needs, Linux and U-Boot at
//!   the pinned versions; the resolved package list is printed;
//! - (e) [`kernel`]: the kernel fragments, against a Linux tree when one is named;
//! - (f) [`uboot`]: the U-Boot fragment and what booting the image needs, against a U-Boot tree
//!   when one is named.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use xshell::Shell;

pub mod check_package;
pub mod defconfig;
mod files;
pub mod kernel;
pub mod packages;
pub mod shellcheck;
pub mod uboot;

use crate::buildroot::{self, Buildroot};
use crate::host::Host;
use crate::prereqs;
use crate::project::{Repo, UBOOT_VERSION};

#[derive(Args)]
pub struct CheckArgs {
    /// A tree of the pinned Buildroot to validate with (default: BERTH_BUILDROOT, else Berth's cache).
    #[arg(long, value_name = "DIR")]
    pub buildroot: Option<PathBuf>,
    /// Linux 6.12 source tree for the kernel-fragment stage (default: BERTH_LINUX_SRC; skipped
    /// when neither is given).
    #[arg(long, value_name = "DIR")]
    pub linux: Option<PathBuf>,
    /// U-Boot 2026.01 source tree for the U-Boot stage (default: BERTH_UBOOT_SRC; skipped when
    /// neither is given).
    #[arg(long, value_name = "DIR")]
    pub uboot: Option<PathBuf>,
}

/// What a check runs against, every default already taken from the environment.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The pinned Buildroot tree (`None`: the host's BERTH_BUILDROOT, else its cache).
    pub buildroot: Option<PathBuf>,
    /// The Linux tree for stage (e); `None` skips it.
    pub linux: Option<PathBuf>,
    /// The U-Boot tree for stage (f); `None` skips it.
    pub uboot: Option<PathBuf>,
    /// The host: its cache folder holds the patched Buildroot copy and the resolved configs.
    pub host: Host,
}

impl Inputs {
    /// The command line's trees, else BERTH_LINUX_SRC and BERTH_UBOOT_SRC, on `host`.
    pub fn from_args(args: CheckArgs, host: Host) -> Inputs {
        let from_env = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Inputs {
            buildroot: args.buildroot,
            linux: args.linux.or_else(|| from_env("BERTH_LINUX_SRC")),
            uboot: args.uboot.or_else(|| from_env("BERTH_UBOOT_SRC")),
            host,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Kconfig,
    CheckPackage,
    Shellcheck,
    Packages,
    Kernel,
    Uboot,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Kconfig => "kconfig",
            Stage::CheckPackage => "check-package",
            Stage::Shellcheck => "shellcheck",
            Stage::Packages => "packages",
            Stage::Kernel => "kernel",
            Stage::Uboot => "uboot",
        })
    }
}

/// Every problem found, by stage, reported together at the end.
#[derive(Default)]
struct Problems(Vec<(Stage, String)>);

impl Problems {
    fn add(&mut self, stage: Stage, problem: impl Into<String>) {
        self.0.push((stage, problem.into()));
    }

    fn extend(&mut self, stage: Stage, problems: Vec<String>) {
        self.0.extend(problems.into_iter().map(|p| (stage, p)));
    }
}

/// What check runs besides Buildroot, found before any stage so a missing piece is named with
/// the one `apt-get install` line that brings it: the Python for check-package, and shellcheck.
fn prerequisites(sh: &Shell) -> Result<String> {
    let mut missing = Vec::new();
    let python = prereqs::python_with(sh, check_package::MODULES).unwrap_or_else(|problems| {
        missing.extend(problems);
        String::new()
    });
    if which::which("shellcheck").is_err() {
        missing.push(prereqs::Problem::Missing {
            tool: "shellcheck".into(),
            package: "shellcheck".into(),
        });
    }
    match prereqs::report(&missing, "`cargo xtask check` runs") {
        Some(text) => bail!(text),
        None => Ok(python),
    }
}

/// `cargo xtask check` on the checkout `repo`, on `host`.
pub fn run(args: CheckArgs, repo: &Repo, host: Host) -> Result<()> {
    check(repo, &Inputs::from_args(args, host))
}

/// Every stage on the checkout `repo`; the error lists every problem found, by stage.
pub fn check(repo: &Repo, inputs: &Inputs) -> Result<()> {
    let root = repo.root();
    let sh = Shell::new().context("could not start a shell")?;
    sh.change_dir(root);
    let python = prerequisites(&sh)?;
    let mut problems = Problems::default();

    match buildroot::resolve(repo, &inputs.host, inputs.buildroot.as_deref(), false) {
        Ok(tree) => {
            println!("Buildroot: {tree}");
            let defconfigs = defconfigs(root)?;
            if defconfigs.is_empty() {
                problems.add(
                    Stage::Kconfig,
                    format!("no configs/*_defconfig in {}", root.display()),
                );
            }
            for defconfig in &defconfigs {
                check_defconfig(&sh, &tree, root, defconfig, &mut problems);
            }
            problems.extend(
                Stage::CheckPackage,
                check_package::run(&sh, &python, &tree, root),
            );
        }
        Err(err) => {
            let why = format!("{err:#}");
            for stage in [Stage::Kconfig, Stage::CheckPackage, Stage::Packages] {
                problems.add(stage, format!("needs a Buildroot tree: {why}"));
            }
        }
    }
    problems.extend(Stage::Shellcheck, shellcheck::run(&sh, root));
    match &inputs.linux {
        None => println!(
            "[kernel] skipped: no Linux 6.12 tree named (pass --linux DIR or set BERTH_LINUX_SRC)"
        ),
        Some(dir) => {
            match (inputs.host.cache()).and_then(|cache| kernel::check(repo, dir, cache)) {
                Ok(()) => println!("[kernel] fragments resolve in {}", dir.display()),
                Err(err) => problems.add(Stage::Kernel, format!("{}: {err:#}", dir.display())),
            }
        }
    }
    match &inputs.uboot {
        None => println!(
            "[uboot] skipped: no U-Boot {UBOOT_VERSION} tree named (pass --uboot DIR or set BERTH_UBOOT_SRC)"
        ),
        Some(dir) => match (inputs.host.cache()).and_then(|cache| uboot::check(repo, dir, cache)) {
            Ok(()) => println!(
                "[uboot] fragment and boot needs resolve in {}",
                dir.display()
            ),
            Err(err) => problems.add(Stage::Uboot, format!("{}: {err:#}", dir.display())),
        },
    }

    if problems.0.is_empty() {
        println!("check: every stage passed");
        return Ok(());
    }
    let list: Vec<String> = problems
        .0
        .iter()
        .map(|(stage, problem)| format!("  [{stage}] {problem}"))
        .collect();
    bail!(
        "cargo xtask check found {} problem(s):\n{}",
        problems.0.len(),
        list.join("\n")
    )
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn defconfigs(repo: &Path) -> Result<Vec<PathBuf>> {
    let dir = repo.join("configs");
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("could not list {}", dir.display()))?
            .path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_defconfig"))
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Stages (a) and (d) for one defconfig, sharing the configured output folder.
fn check_defconfig(
    sh: &Shell,
    tree: &Buildroot,
    repo: &Path,
    defconfig: &Path,
    problems: &mut Problems,
) {
    let name = files::relative(repo, defconfig).display().to_string();
    let output = match tempfile::Builder::new().prefix("berth-check-").tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            problems.add(
                Stage::Kconfig,
                format!("{name}: could not create a temporary output folder: {err}"),
            );
            return;
        }
    };
    let bar = spinner(format!("loading {name} into Buildroot"));
    let loaded = defconfig::check(sh, tree, defconfig, &name, output.path()).map(|mut loaded| {
        loaded
            .problems
            .extend(defconfig::read_only_root(repo, output.path(), &name));
        loaded
    });
    bar.finish_and_clear();
    match loaded {
        Ok(loaded) if loaded.problems.is_empty() => println!(
            "[kconfig] {name}: all {} settings kept by Buildroot, in savedefconfig form",
            loaded.requested
        ),
        Ok(loaded) => problems.extend(Stage::Kconfig, loaded.problems),
        Err(err) => {
            problems.add(Stage::Kconfig, format!("{err:#}"));
            problems.add(
                Stage::Packages,
                format!("{name}: skipped, the defconfig did not load"),
            );
            return;
        }
    }

    let bar = spinner(format!("asking Buildroot for the packages of {name}"));
    let packages = packages::of_output(sh, tree, output.path());
    bar.finish_and_clear();
    match packages {
        Ok(packages) => problems.extend(Stage::Packages, packages::judge(&name, &packages)),
        Err(err) => problems.add(Stage::Packages, format!("{name}: {err:#}")),
    }
}
