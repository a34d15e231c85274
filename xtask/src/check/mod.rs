//! `cargo xtask check`: the offline validation, for developers and CI.
//!
//! Stages, each reporting every problem it finds; all problems of all stages are listed together
//! at the end and any of them makes the command fail:
//! - (a) Kconfig round trip: each `configs/*_defconfig` is loaded by the real Buildroot, and every
//!   symbol we set that it dropped or changed is named; the options Berth relies on must be on.
//! - (b) `utils/check-package` over `br2-external/`, the patches under `patches/` and the shell
//!   scripts under `board/`.
//! - (c) `shellcheck` on every shell script of the repository.
//! - (d) from `show-info`: the package set a Docker host needs, Linux and U-Boot at the pinned
//!   versions; the resolved package list is printed.
//! - (e) the kernel fragments, against a Linux tree when one is named.
//! - (f) the U-Boot fragment and what booting the image needs, against a U-Boot tree when one is
//!   named.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use xshell::{cmd, Shell};

use crate::buildroot::{self, Buildroot};
use crate::image::prereqs;
use crate::kconfig::{self, Resolved};
use crate::project::{LINUX_VERSION, MINIMUM_VERSIONS, UBOOT_VERSION};
use crate::util;

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

    fn add_error(&mut self, stage: Stage, err: anyhow::Error) {
        self.add(stage, format!("{err:#}"));
    }

    fn count(&self, stage: Stage) -> usize {
        self.0.iter().filter(|(s, _)| *s == stage).count()
    }
}

/// The Python modules `utils/check-package` imports, with their Debian packages.
const CHECK_PACKAGE_MODULES: &[(&str, &str)] =
    &[("magic", "python3-magic"), ("flake8", "python3-flake8")];

/// What check runs besides Buildroot, found before any stage so a missing piece is named with
/// the one `apt-get install` line that brings it: the Python for check-package, and shellcheck.
fn prerequisites(sh: &Shell) -> Result<String> {
    let mut missing = Vec::new();
    let python = prereqs::python_with(sh, CHECK_PACKAGE_MODULES).unwrap_or_else(|problems| {
        missing.extend(problems);
        String::new()
    });
    let path = std::env::var("PATH").unwrap_or_default();
    if prereqs::find_in_path("shellcheck", &path).is_none() {
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

pub fn run(args: CheckArgs) -> Result<()> {
    let repo = util::repo_root();
    let sh = Shell::new().context("could not start a shell")?;
    sh.change_dir(&repo);
    let python = prerequisites(&sh)?;
    let mut problems = Problems::default();

    match buildroot::resolve(args.buildroot.as_deref(), false) {
        Ok(tree) => {
            match &tree.series {
                Some(series) => println!(
                    "Buildroot: {} (commit {} + {} patch(es) from patches/buildroot, series sha256 {})",
                    tree.root.display(),
                    tree.commit,
                    series.patches,
                    series.sha256
                ),
                None => println!("Buildroot: {} (commit {})", tree.root.display(), tree.commit),
            }
            let defconfigs = defconfigs(&repo)?;
            if defconfigs.is_empty() {
                problems.add(
                    Stage::Kconfig,
                    format!("no configs/*_defconfig in {}", repo.display()),
                );
            }
            for defconfig in &defconfigs {
                check_defconfig(&sh, &tree, &repo, defconfig, &mut problems);
            }
            check_package(&sh, &python, &tree, &repo, &mut problems);
        }
        Err(err) => {
            let why = format!("{err:#}");
            for stage in [Stage::Kconfig, Stage::CheckPackage, Stage::Packages] {
                problems.add(stage, format!("needs a Buildroot tree: {why}"));
            }
        }
    }
    shellcheck(&sh, &repo, &mut problems);
    kernel_stage(args.linux, &mut problems);
    uboot_stage(args.uboot, &mut problems);

    if problems.0.is_empty() {
        println!("check: every stage passed");
        return Ok(());
    }
    eprintln!("\ncheck found {} problem(s):", problems.0.len());
    for (stage, problem) in &problems.0 {
        eprintln!("  [{stage}] {problem}");
    }
    bail!(
        "cargo xtask check failed with {} problem(s), listed above",
        problems.0.len()
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

fn relative<'a>(repo: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(repo).unwrap_or(path)
}

/// Stages (a) and (d) for one defconfig, sharing the configured output folder.
fn check_defconfig(
    sh: &Shell,
    tree: &Buildroot,
    repo: &Path,
    defconfig: &Path,
    problems: &mut Problems,
) {
    let name = relative(repo, defconfig).display().to_string();
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
    let resolved = round_trip(sh, tree, output.path(), defconfig, &name);
    bar.finish_and_clear();
    let resolved = match resolved {
        Ok(r) => r,
        Err(err) => {
            problems.add_error(Stage::Kconfig, err);
            problems.add(
                Stage::Packages,
                format!("{name}: skipped, the defconfig did not load"),
            );
            return;
        }
    };
    let before = problems.count(Stage::Kconfig);
    for dropped in resolved.dropped {
        problems.add(Stage::Kconfig, dropped.to_string());
    }
    for missing in missing_options(&resolved.config) {
        problems.add(Stage::Kconfig, format!("{name}: {missing}"));
    }
    let saved = output.path().join("savedefconfig");
    match tree
        .save_defconfig(sh, output.path(), &saved)
        .and_then(|()| {
            std::fs::read_to_string(&saved)
                .with_context(|| format!("could not read {}", saved.display()))
        }) {
        Ok(saved_text) => {
            for difference in savedefconfig_differences(&resolved.text, &saved_text) {
                problems.add(
                    Stage::Kconfig,
                    format!("{name}: not in savedefconfig form: {difference}"),
                );
            }
        }
        Err(err) => problems.add(Stage::Kconfig, format!("{name}: {err:#}")),
    }
    if problems.count(Stage::Kconfig) == before {
        println!(
            "[kconfig] {name}: all {} settings kept by Buildroot, in savedefconfig form",
            resolved.requested
        );
    }

    let bar = spinner(format!("asking Buildroot for the packages of {name}"));
    let info = tree.show_info(sh, output.path());
    bar.finish_and_clear();
    let (packages, with_host) =
        match info.and_then(|json| Ok((packages_of(&json, false)?, packages_of(&json, true)?))) {
            Ok(p) => p,
            Err(err) => {
                problems.add(Stage::Packages, format!("{name}: {err:#}"));
                return;
            }
        };
    println!("[packages] {name}: {} target packages", packages.len());
    for (package, version) in &packages {
        println!("    {package:<32} {version}");
    }
    for problem in package_problems(&packages)
        .into_iter()
        .chain(too_old(&with_host, MINIMUM_VERSIONS))
    {
        problems.add(Stage::Packages, format!("{name}: {problem}"));
    }
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
];

fn missing_options(config: &Resolved) -> Vec<String> {
    REQUIRED_OPTIONS
        .iter()
        .filter(|(any_of, _)| !any_of.iter().any(|s| config.is_enabled(s)))
        .map(|(any_of, what)| format!("{what} is off: Berth needs {}", any_of.join(" or ")))
        .collect()
}

/// Packages (name → version) from `make show-info`: the target ones, or with `host` the host
/// ones too; rootfs entries and virtual packages are left out.
fn packages_of(info: &serde_json::Value, host: bool) -> Result<BTreeMap<String, String>> {
    let entries = info
        .as_object()
        .context("`make show-info` did not print a JSON object")?;
    let mut packages = BTreeMap::new();
    for (name, entry) in entries {
        let kind = entry.get("type").and_then(|t| t.as_str());
        let wanted = kind == Some("target") || (host && kind == Some("host"));
        if !wanted || entry.get("virtual").and_then(|v| v.as_bool()) == Some(true) {
            continue;
        }
        let version = entry
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        packages.insert(name.clone(), version);
    }
    Ok(packages)
}

/// What a Docker host needs from the package set, each entry any one of its alternatives.
const REQUIRED_PACKAGES: &[&[&str]] = &[
    &["docker-engine"],
    &["docker-cli"],
    &["containerd"],
    &["runc"],
    // docker-init: Buildroot provides it as tini or catatonit.
    &["tini", "catatonit"],
    &["libseccomp"],
    &["iptables"],
    &["ca-certificates"],
];

fn package_problems(packages: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems: Vec<String> = REQUIRED_PACKAGES
        .iter()
        .filter(|any_of| !any_of.iter().any(|p| packages.contains_key(*p)))
        .map(|any_of| format!("package {} is not selected", any_of.join(" or ")))
        .collect();
    for (package, pinned) in [("linux", LINUX_VERSION), ("uboot", UBOOT_VERSION)] {
        match packages.get(package) {
            None => problems.push(format!(
                "package {package} is not selected (Berth pins {pinned})"
            )),
            Some(version) if version != pinned => problems.push(format!(
                "{package} resolves to version {version}, but Berth pins {pinned}"
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `1.26.6` → [1, 26, 6]; None for a version that is not dotted numbers (`custom`, a git id).
fn numeric_version(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|part| part.parse().ok()).collect()
}

/// Each entry of `minimums` whose package (the first of its alternatives that is selected)
/// resolves older than its minimum, or to no readable version.
fn too_old(packages: &BTreeMap<String, String>, minimums: &[(&[&str], &str)]) -> Vec<String> {
    minimums
        .iter()
        .filter_map(|(any_of, minimum)| {
            let need = numeric_version(minimum).expect("minimums are dotted numbers");
            let Some((package, version)) =
                any_of.iter().find_map(|p| packages.get(*p).map(|v| (p, v)))
            else {
                return Some(format!(
                    "package {} is not selected (Berth needs {minimum} or newer)",
                    any_of.join(" or ")
                ));
            };
            match numeric_version(version) {
                Some(found) if found >= need => None,
                Some(_) => Some(format!(
                    "{package} resolves to {version}, older than the {minimum} Berth needs \
                     (is patches/buildroot applied?)"
                )),
                None => Some(format!(
                    "{package} resolves to '{version}', which cannot be compared with the \
                     {minimum} Berth needs"
                )),
            }
        })
        .collect()
}

/// Stage (b): Buildroot's own style checker over our BR2_EXTERNAL tree, our patches (format-patch
/// form, Signed-off-by, Upstream) and board scripts.
fn check_package(sh: &Shell, python: &str, tree: &Buildroot, repo: &Path, problems: &mut Problems) {
    let mut files = match files_under(&repo.join("br2-external")) {
        Ok(f) => f,
        Err(err) => return problems.add_error(Stage::CheckPackage, err),
    };
    match shell_scripts(&repo.join("board")) {
        Ok(scripts) => files.extend(scripts),
        Err(err) => return problems.add_error(Stage::CheckPackage, err),
    }
    match files_under(&repo.join("patches")) {
        Ok(all) => files.extend(
            all.into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "patch")),
        ),
        Err(err) => return problems.add_error(Stage::CheckPackage, err),
    }
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| relative(repo, f).to_path_buf())
        .collect();
    let script = tree.root.join("utils/check-package");
    let file_args = &files;
    let output = cmd!(sh, "{python} {script} -b {file_args...}")
        .quiet()
        .ignore_status()
        .output();
    let output = match output {
        Ok(o) => o,
        Err(err) => {
            return problems.add(
                Stage::CheckPackage,
                format!("could not run {}: {err}", script.display()),
            )
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let findings = check_package_findings(&text);
    if findings.is_empty() && !output.status.success() {
        problems.add(
            Stage::CheckPackage,
            format!(
                "utils/check-package failed ({}): {}",
                output.status,
                text.trim()
            ),
        );
    }
    if findings.is_empty() && output.status.success() {
        println!("[check-package] {} files clean", files.len());
    }
    for finding in findings {
        problems.add(Stage::CheckPackage, finding);
    }
}

/// check-package prints one `file:line: warning` per finding, then two summary lines.
fn check_package_findings(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty() && !l.ends_with(" lines processed") && !l.ends_with(" warnings generated")
        })
        .map(String::from)
        .collect()
}

/// Stage (c): shellcheck over every shell script in the repository.
fn shellcheck(sh: &Shell, repo: &Path, problems: &mut Problems) {
    let scripts = match shell_scripts(repo) {
        Ok(s) => s,
        Err(err) => return problems.add_error(Stage::Shellcheck, err),
    };
    if scripts.is_empty() {
        return println!("[shellcheck] no shell scripts found");
    }
    let files: Vec<PathBuf> = scripts
        .iter()
        .map(|f| relative(repo, f).to_path_buf())
        .collect();
    let file_args = &files;
    let output = match cmd!(
        sh,
        "shellcheck --external-sources --format=gcc {file_args...}"
    )
    .quiet()
    .ignore_status()
    .output()
    {
        Ok(o) => o,
        Err(err) => {
            return problems.add(
                Stage::Shellcheck,
                format!("could not run shellcheck: {err}"),
            )
        }
    };
    let findings: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    if findings.is_empty() && !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return problems.add(
            Stage::Shellcheck,
            format!("shellcheck failed ({}): {}", output.status, stderr.trim()),
        );
    }
    if findings.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        println!(
            "[shellcheck] {} scripts clean: {}",
            files.len(),
            names.join(", ")
        );
    }
    for finding in findings {
        problems.add(Stage::Shellcheck, finding);
    }
}

/// Stage (e): kernel fragments against a real tree, when one is named.
fn kernel_stage(explicit: Option<PathBuf>, problems: &mut Problems) {
    let from_env = std::env::var_os("BERTH_LINUX_SRC")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let Some(dir) = explicit.or(from_env) else {
        println!(
            "[kernel] skipped: no Linux 6.12 tree named (pass --linux DIR or set BERTH_LINUX_SRC)"
        );
        return;
    };
    match crate::kernel_check::check(&dir) {
        Ok(()) => println!("[kernel] fragments resolve in {}", dir.display()),
        Err(err) => problems.add(Stage::Kernel, format!("{}: {err:#}", dir.display())),
    }
}

/// Stage (f): the U-Boot fragment and boot needs against a real tree, when one is named.
fn uboot_stage(explicit: Option<PathBuf>, problems: &mut Problems) {
    let from_env = std::env::var_os("BERTH_UBOOT_SRC")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let Some(dir) = explicit.or(from_env) else {
        println!("[uboot] skipped: no U-Boot {UBOOT_VERSION} tree named (pass --uboot DIR or set BERTH_UBOOT_SRC)");
        return;
    };
    match crate::uboot_check::check(&dir) {
        Ok(()) => println!(
            "[uboot] fragment and boot needs resolve in {}",
            dir.display()
        ),
        Err(err) => problems.add(Stage::Uboot, format!("{}: {err:#}", dir.display())),
    }
}

/// Folders that hold build products or other trees, never our scripts.
fn skipped_dir(name: &str) -> bool {
    matches!(name, ".git" | "target" | "output")
}

/// Whether a file is a shell script: by its `.sh` name or a sh/bash/dash/ksh shebang.
fn is_shell_script(file_name: &str, first_line: &str) -> bool {
    if file_name.ends_with(".sh") {
        return true;
    }
    let Some(shebang) = first_line.strip_prefix("#!") else {
        return false;
    };
    let mut words = shebang.split_whitespace();
    let Some(mut interpreter) = words.next() else {
        return false;
    };
    if interpreter.rsplit('/').next() == Some("env") {
        interpreter = match words.find(|w| !w.starts_with('-')) {
            Some(w) => w,
            None => return false,
        };
    }
    matches!(
        interpreter.rsplit('/').next(),
        Some("sh" | "bash" | "dash" | "ksh")
    )
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let kind = entry
                .file_type()
                .with_context(|| format!("could not stat {}", entry.path().display()))?;
            let name = entry.file_name();
            if kind.is_dir() && !skipped_dir(&name.to_string_lossy()) {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn first_line(path: &Path) -> Result<String> {
    use std::io::{BufRead, BufReader, Read};
    let file =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut line = Vec::new();
    BufReader::new(file.take(256))
        .read_until(b'\n', &mut line)
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

fn shell_scripts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut scripts = Vec::new();
    for path in files_under(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_shell_script(&name, &first_line(&path)?) {
            scripts.push(path);
        }
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_shell_scripts_by_name_and_shebang() {
        assert!(is_shell_script("post-build.sh", ""));
        assert!(is_shell_script("run", "#!/usr/bin/env bash"));
        assert!(is_shell_script("run", "#!/usr/bin/env -S bash -e"));
        assert!(is_shell_script("run", "#!/bin/sh -e"));
        assert!(is_shell_script("run", "#! /bin/dash"));
        assert!(!is_shell_script("run", "#!/usr/bin/env python3"));
        assert!(!is_shell_script("run", "#!/bin/bashful"));
        assert!(!is_shell_script("genimage.cfg", "# sh is mentioned here"));
        assert!(!is_shell_script("empty", ""));
    }

    #[test]
    fn skips_build_products_but_not_dot_folders() {
        assert!(skipped_dir("target"));
        assert!(skipped_dir("output"));
        assert!(skipped_dir(".git"));
        assert!(!skipped_dir(".ci"));
        assert!(!skipped_dir("board"));
    }

    #[test]
    fn finds_scripts_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("board/b/post-build.sh", "echo\n"),
            (".ci/run", "#!/usr/bin/env bash\n"),
            ("tools/gen.py", "#!/usr/bin/env python3\n"),
            ("target/debug/x.sh", "echo\n"),
            ("output/odroid-xu4/build/y.sh", "echo\n"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let found: Vec<_> = shell_scripts(root)
            .unwrap()
            .iter()
            .map(|p| relative(root, p).display().to_string())
            .collect();
        assert_eq!(found, vec![".ci/run", "board/b/post-build.sh"]);
    }

    fn packages(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const COMPLETE: &[(&str, &str)] = &[
        ("docker-engine", "28.3.3"),
        ("docker-cli", "28.3.3"),
        ("containerd", "2.0.7"),
        ("runc", "1.3.5"),
        ("tini", "0.19.0"),
        ("libseccomp", "2.6.0"),
        ("iptables", "1.8.11"),
        ("ca-certificates", "20250419"),
        ("linux", LINUX_VERSION),
        ("uboot", UBOOT_VERSION),
    ];

    #[test]
    fn a_complete_package_set_passes() {
        assert_eq!(package_problems(&packages(COMPLETE)), Vec::<String>::new());
        let mut with_catatonit = packages(COMPLETE);
        with_catatonit.remove("tini");
        with_catatonit.insert("catatonit".into(), "0.2.1".into());
        assert_eq!(package_problems(&with_catatonit), Vec::<String>::new());
    }

    #[test]
    fn names_missing_packages_and_wrong_versions() {
        let mut set = packages(COMPLETE);
        set.remove("runc");
        set.remove("tini");
        set.insert("linux".into(), "6.19.14".into());
        set.remove("uboot");
        assert_eq!(
            package_problems(&set),
            vec![
                "package runc is not selected".to_string(),
                "package tini or catatonit is not selected".to_string(),
                format!("linux resolves to version 6.19.14, but Berth pins {LINUX_VERSION}"),
                format!("package uboot is not selected (Berth pins {UBOOT_VERSION})"),
            ]
        );
    }

    #[test]
    fn reads_target_and_host_packages_from_show_info() {
        let info = serde_json::json!({
            "runc": {"type": "target", "virtual": false, "version": "1.3.5"},
            "host-go": {"type": "host", "virtual": false, "version": "1.25"},
            "rootfs-ext2": {"type": "rootfs", "version": ""},
            "toolchain": {"type": "target", "virtual": true, "version": ""},
        });
        assert_eq!(
            packages_of(&info, false).unwrap(),
            packages(&[("runc", "1.3.5")])
        );
        assert_eq!(
            packages_of(&info, true).unwrap(),
            packages(&[("host-go", "1.25"), ("runc", "1.3.5")])
        );
        assert!(packages_of(&serde_json::json!([]), false).is_err());
    }

    #[test]
    fn an_older_or_unreadable_version_than_the_minimum_is_named() {
        let go: &[&str] = &["host-go-src", "host-go-bin"];
        let minimums = [
            (&["runc"][..], "1.3.6"),
            (go, "1.26.6"),
            (&["containerd"][..], "2.0.11"),
        ];
        let found = too_old(
            &packages(&[
                ("runc", "1.3.5"),
                ("host-go-bin", "1.26.10"),
                ("containerd", "custom"),
            ]),
            &minimums,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("runc resolves to 1.3.5, older than the 1.3.6"));
        assert!(found[1].contains("'custom'"));
        assert!(too_old(&packages(&[("runc", "1.3.6")]), &[(&["runc"][..], "1.3.6")]).is_empty());
        assert_eq!(
            too_old(&packages(&[]), &[(go, "1.26.6")]),
            ["package host-go-src or host-go-bin is not selected (Berth needs 1.26.6 or newer)"]
        );
    }

    #[test]
    fn requires_the_hardening_options() {
        let good = Resolved::parse(
            "BR2_SSP_STRONG=y\nBR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\nBR2_PIC_PIE=y\n\
             BR2_REPRODUCIBLE=y\nBR2_INIT_SYSTEMD=y\nBR2_PACKAGE_OPENSSH_SERVER=y\n",
            ".config",
        )
        .unwrap();
        assert_eq!(missing_options(&good), Vec::<String>::new());
        let weak = Resolved::parse(
            "BR2_SSP_REGULAR=y\nBR2_RELRO_PARTIAL=y\nBR2_FORTIFY_SOURCE_2=y\n# BR2_PIC_PIE is not set\n\
             BR2_REPRODUCIBLE=y\nBR2_INIT_SYSTEMD=y\nBR2_PACKAGE_OPENSSH_SERVER=y\n",
            ".config",
        )
        .unwrap();
        let missing = missing_options(&weak);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[0].contains("BR2_SSP_STRONG or BR2_SSP_ALL"));
        assert!(missing[1].contains("BR2_RELRO_FULL"));
        assert!(missing[2].contains("BR2_PIC_PIE"));
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

    #[test]
    fn keeps_only_check_package_findings() {
        let out = "br2-external/package/x/x.mk:9: remove default value of _SOURCE variable (https://nightly.buildroot.org/#x)\n\
                   129 lines processed\n1 warnings generated\n";
        assert_eq!(
            check_package_findings(out),
            vec!["br2-external/package/x/x.mk:9: remove default value of _SOURCE variable (https://nightly.buildroot.org/#x)"]
        );
        assert!(check_package_findings("129 lines processed\n0 warnings generated\n").is_empty());
    }
}
