//! `cargo xtask image`: drive the pinned Buildroot to a flashable image with checksums, block map and manifest.
//!
//! Every cheap check (settings, SSH key, repository state, host tools, Buildroot tree, network)
//! runs before the long build. `SHA256SUMS` and `manifest.toml` are removed first and written
//! last, after everything succeeded, so a folder that has them holds a finished image.

mod config;
mod network;
pub mod prereqs;
mod progress;
mod ssh_keys;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use xshell::{cmd, Shell};

use crate::buildroot::Buildroot;
use crate::kconfig::Resolved;
use crate::manifest::{self, Artifact, BerthInfo, BuildrootInfo, DefconfigInfo, Manifest};
use crate::project::{self, BUILDROOT_RELEASE};
use crate::util;
use crate::vulns;

use config::BerthConfig;

/// Every option can also be set in `berth.toml` at the repository root (see berth.example.toml);
/// the command line wins.
#[derive(Args)]
pub struct ImageArgs {
    /// Board to build for [default: odroid-xu4, one image for the XU4, XU3 Lite, XU3 and HC1].
    #[arg(long)]
    board: Option<String>,
    /// A tree of the pinned Buildroot to use instead of the cached clone [env BERTH_BUILDROOT].
    #[arg(long, value_name = "DIR")]
    buildroot: Option<PathBuf>,
    /// Buildroot output folder (O=); by default output/BOARD in the repository.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Parallel jobs inside each package build (BR2_JLEVEL; 0 = CPUs + 1).
    #[arg(long, value_name = "N")]
    jobs: Option<u32>,
    /// Public keys (authorized_keys format) allowed to log in over SSH; the image has no password.
    #[arg(long, value_name = "FILE")]
    ssh_authorized_keys: Option<PathBuf>,
    /// Skip the check that download hosts answer (for proxies set outside the environment,
    /// e.g. in /etc/wgetrc or git config, which the check cannot see).
    #[arg(long)]
    skip_network_check: bool,
    /// Declared containers to preload and run (apps.toml, see docs/apps.md and apps.example.toml).
    #[arg(long, value_name = "FILE")]
    apps: Option<PathBuf>,
}

/// Images the board's genimage configuration produces, each given a block map.
const IMAGES: &[&str] = &["sdcard.img", "emmc-boot0.img"];
const SUMS: &str = "SHA256SUMS";
const MANIFEST: &str = "manifest.toml";
/// Lines of build output shown when it fails.
const TAIL_LINES: usize = 30;
/// How long the network preflight may take in total.
const PROBE_BUDGET: Duration = Duration::from_secs(8);

pub fn run(args: ImageArgs) -> Result<()> {
    let started = Instant::now();
    let repo = util::repo_root();
    let skip_network_check = args.skip_network_check;
    let settings = Settings::gather(args, &repo)?;
    let sh = Shell::new().context("could not start a shell")?;

    let keys = ssh_keys::check_file(settings.ssh_keys.path())?;
    let how = match &settings.ssh_keys {
        config::SshKeys::Given(_) => "",
        config::SshKeys::Default(_) => {
            " (your own key: no --ssh-authorized-keys or ssh_authorized_keys in berth.toml)"
        }
    };
    eprintln!(
        "SSH: {keys} public key(s) from {}{how}",
        settings.ssh_keys.path().display()
    );
    let defconfig = repo.join("configs").join(settings.board.defconfig);
    if !defconfig.is_file() {
        bail!(
            "the board {} has no defconfig at {}",
            settings.board.name,
            defconfig.display()
        );
    }
    let (commit, dirty) = repository_state(&sh, &repo)?;
    if let Some(problems) = prereqs::report(
        &prereqs::check_host(&sh),
        "Buildroot needs to build the image",
    ) {
        bail!(problems);
    }

    let br = crate::buildroot::resolve(settings.buildroot.as_deref(), true)?;
    let output = prepare_output(&settings.output)?;
    let images = output.join("images");
    remove_finished_markers(&images)?;
    // Hook (issue 14): declared apps, checked, audited, fetched and staged before the build.
    let apps = crate::apps::build::stage_for_image(
        &project::Repo::at(&repo),
        settings.board,
        settings.apps.as_deref(),
        &output,
    )?;

    eprintln!(
        "Configuring {} from {} (Buildroot {BUILDROOT_RELEASE} at {}, in {})",
        output.display(),
        defconfig.display(),
        br.commit,
        br.root.display()
    );
    br.load_defconfig(&sh, &output, &defconfig)?;
    let info = br.show_info(&sh, &output)?;
    let dl_root = util::cache_dir()?.join("dl");
    // On the shell, not only the build: legal-info and the SBOM script (sbom.rs) read it too, and
    // a BR2_DL_DIR of the caller's own must not send them to a folder the build never filled.
    sh.set_var("BR2_DL_DIR", &dl_root);
    if !skip_network_check {
        check_sources_reachable(&info, &dl_root)?;
    }
    // The SBOM step at the end needs it too: fetch it now, or fail now, not after the build.
    crate::sbom::ensure_spdx_schema(&sh, &dl_root)?;

    let mut env = crate::reproducible::build_env(&repo)
        .context("could not prepare the reproducible build environment")?;
    let source_date_epoch = source_date_epoch(&env)?;
    env.push((
        "BERTH_SSH_AUTHORIZED_KEYS".into(),
        settings.ssh_keys.path().display().to_string(),
    ));
    env.extend(apps.env.clone());
    // Buildroot's `>>>` lines are wrapped in `tput smso`; a dumb terminal keeps the log plain.
    env.push(("TERM".into(), "dumb".into()));

    let names = manifest::buildable_package_names(&info)?;
    let built_before = names
        .iter()
        .filter(|n| is_installed(&info, &output, n))
        .cloned()
        .collect::<Vec<_>>();
    let jlevel = settings.jobs.map(|j| format!("BR2_JLEVEL={j}"));
    let targets: Vec<&str> = jlevel.iter().map(String::as_str).collect();
    let build = br
        .make(&sh, &output, &targets)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let tracker = progress::Tracker::new(names.len(), built_before);
    run_build(build.into(), &output, &info, tracker, started)?;

    let artifacts = audit_and_describe(&br, &sh, &output)?;
    crate::apps::sbom::add_to(&images.join(crate::sbom::SBOM_FILE), &apps.records)?;
    let manifest = Manifest {
        berth: BerthInfo {
            commit,
            dirty,
            board: settings.board.name.into(),
            source_date_epoch,
        },
        buildroot: BuildrootInfo {
            version: BUILDROOT_RELEASE.into(),
            commit: br.commit.clone(),
            series_sha256: br.series.as_ref().map(|s| s.sha256.clone()),
        },
        defconfig: DefconfigInfo {
            path: name_in(&repo, &defconfig)?,
            sha256: util::sha256_file(&defconfig)?,
        },
        toolchain: manifest::toolchain_info(&read_config(&output)?, &info)?,
        inputs: manifest::input_digests(&repo)?,
        host: host_tool_versions(&sh),
        packages: manifest::packages_from_show_info(&info)?,
        artifacts: Vec::new(),
        apps: apps.records,
        vulnerabilities: Some(vulns::Record::load(&vulns::record_in(&repo))?),
    };
    let sums = seal(&images, manifest, &artifacts)?;

    eprintln!(
        "Image ready in {} after {}:\n{}",
        images.display(),
        indicatif::HumanDuration(started.elapsed()),
        sums.iter()
            .map(|(name, _)| format!("  {name}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// After the build: check the images exist, audit them, add block maps and the SBOM. Returns
/// every artifact's name relative to `<output>/images`.
fn audit_and_describe(br: &Buildroot, sh: &Shell, output: &Path) -> Result<Vec<String>> {
    let images = output.join("images");
    for image in IMAGES {
        let path = images.join(image);
        if !path.is_file() {
            bail!(
                "the build finished but did not produce {} (check the board's genimage configuration)",
                path.display()
            );
        }
    }
    crate::audit::audit_output_into(output, &output.join("audit.txt"))
        .context("the image failed its hardening audit")?;
    let mut artifacts: Vec<String> = IMAGES.iter().map(|i| i.to_string()).collect();
    for image in IMAGES {
        let bmap = format!("{image}.bmap");
        crate::bmap::write_for_image(&images.join(image), &images.join(&bmap))
            .with_context(|| format!("could not write the block map {bmap}"))?;
        artifacts.push(bmap);
    }
    for file in crate::sbom::write_sbom_and_legal_info(br, sh, output)
        .context("could not write the SBOM and license information")?
    {
        let name = name_in(&images, &file)?;
        if !artifacts.contains(&name) {
            artifacts.push(name);
        }
    }
    Ok(artifacts)
}

/// Flags merged with berth.toml.
struct Settings {
    board: &'static project::Board,
    buildroot: Option<PathBuf>,
    output: PathBuf,
    jobs: Option<u32>,
    ssh_keys: config::SshKeys,
    apps: Option<PathBuf>,
}

impl Settings {
    fn gather(args: ImageArgs, repo: &Path) -> Result<Self> {
        let file = BerthConfig::load(repo)?;
        let cwd = std::env::current_dir().context("could not read the current directory")?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let pick = |flag: Option<&Path>, configured: Option<&Path>| {
            config::pick_path(flag, configured, &cwd, repo, home.as_deref())
        };
        let board = project::board(
            args.board
                .as_deref()
                .or(file.board.as_deref())
                .unwrap_or(project::DEFAULT_BOARD),
        )?;
        Ok(Settings {
            board,
            // Flag, then BERTH_BUILDROOT (read by buildroot::resolve), then berth.toml.
            buildroot: if args.buildroot.is_none()
                && std::env::var_os("BERTH_BUILDROOT").is_some_and(|v| !v.is_empty())
            {
                None
            } else {
                pick(args.buildroot.as_deref(), file.buildroot.as_deref())?
            },
            output: pick(args.output.as_deref(), file.output.as_deref())?
                .unwrap_or_else(|| repo.join("output").join(board.name)),
            jobs: args.jobs.or(file.jobs),
            ssh_keys: config::pick_ssh_keys(
                pick(
                    args.ssh_authorized_keys.as_deref(),
                    file.ssh_authorized_keys.as_deref(),
                )?,
                home.as_deref(),
            )?,
            apps: pick(args.apps.as_deref(), file.apps.as_deref())?,
        })
    }
}

/// This repository's commit and whether tracked files differ from it; both go into the manifest.
fn repository_state(sh: &Shell, repo: &Path) -> Result<(String, bool)> {
    let commit = cmd!(sh, "git -C {repo} rev-parse HEAD").quiet().ignore_stderr().read().with_context(|| {
        format!("{} is not a git checkout with a commit: the manifest records which commit an image comes from", repo.display())
    })?;
    let changes = cmd!(sh, "git -C {repo} status --porcelain --untracked-files=no")
        .quiet()
        .read()
        .context("could not ask git whether the repository has local changes")?;
    Ok((commit, !changes.is_empty()))
}

/// Create the output folder, refusing a non-empty folder that is not a Buildroot output (so
/// a mistyped --output cannot scatter build files among the user's own).
fn prepare_output(output: &Path) -> Result<PathBuf> {
    if output.is_dir() && !output.join(".config").exists() && !output.join("Makefile").exists() {
        let mut entries = std::fs::read_dir(output)
            .with_context(|| format!("could not list {}", output.display()))?;
        if entries.next().is_some() {
            bail!(
                "the output folder {} is not empty and is not a Buildroot output folder (no .config); \
                 choose another --output so nothing in it is overwritten",
                output.display()
            );
        }
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("could not create the output folder {}", output.display()))?;
    // Buildroot runs with `make -C <tree>`, so O= must not be relative.
    output
        .canonicalize()
        .with_context(|| format!("could not resolve the output folder {}", output.display()))
}

/// Remove what marks a finished build, so no failure can leave an old or partial image looking
/// complete; and what was derived from the old images (block maps, SBOM, license bundle), so none
/// lies beside a new image it does not describe (bmaptool picks up `<image>.bmap` by itself).
fn remove_finished_markers(images: &Path) -> Result<()> {
    let derived = IMAGES.iter().map(|image| format!("{image}.bmap"));
    let names = [
        SUMS,
        MANIFEST,
        crate::sbom::SBOM_FILE,
        crate::sbom::LEGAL_INFO_FILE,
    ]
    .map(String::from);
    for name in names.into_iter().chain(derived) {
        for path in [images.join(&name), partial_path(&images.join(&name))] {
            match std::fs::remove_file(&path) {
                Ok(()) => eprintln!("Removed {} from an earlier build", path.display()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("could not remove the stale {}", path.display()))
                }
            }
        }
    }
    Ok(())
}

/// The last step: digest the artifacts into the manifest, write it, then SHA256SUMS over the
/// artifacts and the manifest. Returns SHA256SUMS's entries.
fn seal(
    images: &Path,
    mut manifest: Manifest,
    artifacts: &[String],
) -> Result<Vec<(String, String)>> {
    manifest.artifacts = describe(images, artifacts)?;
    write_atomically(&images.join(MANIFEST), manifest.to_toml()?.as_bytes())?;
    let mut sums: Vec<(String, String)> = manifest
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.sha256.clone()))
        .collect();
    sums.push((MANIFEST.into(), util::sha256_file(&images.join(MANIFEST))?));
    write_atomically(&images.join(SUMS), manifest::sha256sums(&sums).as_bytes())?;
    Ok(sums)
}

fn partial_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", path.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(path);
    std::fs::write(&partial, bytes)
        .with_context(|| format!("could not write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("could not move {} into place", path.display()))
}

/// Fail at once, naming the files, when sources are missing and no host offering them answers.
fn check_sources_reachable(info: &serde_json::Value, dl_root: &Path) -> Result<()> {
    let missing: Vec<_> = network::downloads_from_show_info(info)
        .into_iter()
        .filter(|d| !dl_root.join(&d.dl_dir).join(&d.file).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let proxy = |name: &str| std::env::var(name).ok();
    let target = |uri: &str| network::endpoint(uri).map(|e| network::through_proxy(e, uri, &proxy));
    let endpoints: BTreeSet<_> = missing
        .iter()
        .flat_map(|d| d.uris.iter().filter_map(|u| target(u)))
        .collect();
    eprintln!(
        "{} source file(s) to download; checking that {} host(s) answer",
        missing.len(),
        endpoints.len()
    );
    let started = Instant::now();
    let (reachable, failed) = network::probe(&endpoints, PROBE_BUDGET);
    let unfetchable = network::unfetchable(&missing, &|uri| {
        target(uri).is_none_or(|e| reachable.contains(&e))
    });
    if unfetchable.is_empty() {
        return Ok(());
    }
    bail!(network::report(
        &unfetchable,
        &failed,
        &reachable,
        dl_root,
        started.elapsed()
    ))
}

fn source_date_epoch(env: &[(String, String)]) -> Result<u64> {
    let (_, value) = env
        .iter()
        .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
        .context("the reproducible build environment does not set SOURCE_DATE_EPOCH")?;
    value
        .parse()
        .with_context(|| format!("SOURCE_DATE_EPOCH={value} is not a number of seconds"))
}

/// Whether an earlier run already installed this package (its final stamp exists).
fn is_installed(info: &serde_json::Value, output: &Path, package: &str) -> bool {
    info.get(package)
        .and_then(|e| e.get("stamp_dir"))
        .and_then(|d| d.as_str())
        .is_some_and(|dir| output.join(dir).join(".stamp_installed").exists())
}

/// Host tools whose work reaches the image: the compiler and make that build Buildroot's host
/// tools (mkfs, genimage, ...), tar and git that make the source archives. A missing one is left
/// out (the prerequisite check has already named what the build needs).
fn host_tool_versions(sh: &Shell) -> BTreeMap<String, String> {
    ["gcc", "make", "tar", "git"]
        .into_iter()
        .filter_map(|tool| {
            let out = cmd!(sh, "{tool} --version")
                .quiet()
                .ignore_stderr()
                .read()
                .ok()?;
            Some((tool.to_string(), out.lines().next()?.trim().to_string()))
        })
        .collect()
}

fn read_config(output: &Path) -> Result<Resolved> {
    let path = output.join(".config");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    Resolved::parse(&text, &path.display().to_string())
}

/// `file` as a path relative to `base`, which must contain it.
fn name_in(base: &Path, file: &Path) -> Result<String> {
    let relative = file
        .strip_prefix(base)
        .with_context(|| format!("{} is not inside {}", file.display(), base.display()))?;
    Ok(relative.to_string_lossy().into_owned())
}

fn describe(images: &Path, names: &[String]) -> Result<Vec<Artifact>> {
    names
        .iter()
        .map(|name| {
            let path = images.join(name);
            let size = std::fs::metadata(&path)
                .with_context(|| format!("could not read {}", path.display()))?
                .len();
            Ok(Artifact {
                name: name.clone(),
                size,
                sha256: util::sha256_file(&path)?,
            })
        })
        .collect()
}

/// Run the build, logging everything to `<output>/build.log` and showing progress.
fn run_build(
    mut command: std::process::Command,
    output: &Path,
    info: &serde_json::Value,
    mut tracker: progress::Tracker,
    started: Instant,
) -> Result<()> {
    let log_path = output.join("build.log");
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path)
            .with_context(|| format!("could not create the build log {}", log_path.display()))?,
    );
    // The exact command and the environment it adds, for whoever reads the log later.
    writeln!(log, "# cargo xtask image ran: {command:?}")
        .with_context(|| format!("could not write {}", log_path.display()))?;
    let (reader, writer) =
        std::io::pipe().context("could not create a pipe for the build output")?;
    command
        .stdin(Stdio::null())
        .stdout(
            writer
                .try_clone()
                .context("could not duplicate the output pipe")?,
        )
        .stderr(writer);
    let mut child = command
        .spawn()
        .context("could not start make for the Buildroot build")?;
    // The command holds the pipe's write end; drop it so reading ends when make exits.
    drop(command);

    let bar = ProgressBar::new(tracker.total() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} packages  {wide_msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_position(tracker.done() as u64);
    bar.set_message("Buildroot is checking the host and configuration");
    let mut tail = progress::Tail::new(TAIL_LINES);
    let mut reader = BufReader::new(reader);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .context("could not read the build output")?;
        if n == 0 {
            break;
        }
        log.write_all(&raw)
            .with_context(|| format!("could not write {}", log_path.display()))?;
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        tail.push(line);
        if tracker.feed(line) {
            let current = tracker
                .current()
                .map(ToString::to_string)
                .unwrap_or_default();
            bar.set_position(tracker.done() as u64);
            bar.set_message(current.clone());
            if bar.is_hidden() {
                eprintln!(
                    "[{}] {}/{} {current}",
                    indicatif::FormattedDuration(started.elapsed()),
                    tracker.done(),
                    tracker.total()
                );
            }
        }
    }
    log.flush()
        .with_context(|| format!("could not write {}", log_path.display()))?;
    let status = child.wait().context("could not wait for make")?;
    if !status.success() {
        // The report below says where it stopped; a half-drawn bar would only garble it.
        bar.finish_and_clear();
        let failed = tracker
            .failed()
            .map(|(dir, step)| (package_of_build_dir(info, output, dir), step));
        let failed = failed
            .as_ref()
            .map(|(package, step)| (package.as_str(), *step));
        bail!(progress::failure_report(
            failed,
            tracker.current(),
            &tail,
            &log_path,
            &status.to_string()
        ));
    }
    bar.set_position(tracker.total() as u64);
    bar.finish_with_message(format!("built; log in {}", log_path.display()));
    Ok(())
}

/// The show-info package whose build folder make named (`<output>/build/host-m4-1.4.21`); the
/// folder's name when no package claims it.
fn package_of_build_dir(info: &serde_json::Value, output: &Path, dir: &str) -> String {
    let relative = Path::new(dir)
        .strip_prefix(output)
        .map_or_else(|_| dir.to_string(), |r| r.display().to_string());
    info.as_object()
        .and_then(|entries| {
            entries.iter().find(|(_, e)| {
                e.get("stamp_dir")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| d.trim_end_matches('/') == relative)
            })
        })
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| relative.rsplit('/').next().unwrap_or(dir).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_a_failed_build_folder_to_its_package() {
        let info = json!({
            "host-m4": {"stamp_dir": "build/host-m4-1.4.21"},
            "m4": {"stamp_dir": "build/m4-1.4.21"},
            "toolchain": {"stamp_dir": "build/toolchain/"}
        });
        let out = Path::new("/o");
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/host-m4-1.4.21"),
            "host-m4"
        );
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/toolchain"),
            "toolchain"
        );
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/mystery-2.0"),
            "mystery-2.0"
        );
    }

    #[test]
    fn source_date_epoch_must_be_set_and_numeric() {
        let env = |v: &str| {
            vec![
                ("TZ".to_string(), "UTC".to_string()),
                ("SOURCE_DATE_EPOCH".to_string(), v.to_string()),
            ]
        };
        assert_eq!(
            source_date_epoch(&env("1700000000")).unwrap(),
            1_700_000_000
        );
        assert!(
            format!("{:#}", source_date_epoch(&env("yesterday")).unwrap_err())
                .contains("yesterday")
        );
        assert!(source_date_epoch(&[])
            .unwrap_err()
            .to_string()
            .contains("does not set SOURCE_DATE_EPOCH"));
    }

    #[test]
    fn finished_markers_are_removed_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        let old = [
            "SHA256SUMS",
            "manifest.toml",
            "SHA256SUMS.partial",
            "sdcard.img.bmap",
            "sbom.cdx.json",
        ];
        for name in old.iter().chain(&["sdcard.img"]) {
            std::fs::write(images.join(name), "old").unwrap();
        }
        remove_finished_markers(images).unwrap();
        let left: BTreeSet<_> = std::fs::read_dir(images)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("sdcard.img")].into());
        remove_finished_markers(&images.join("missing")).unwrap();
        write_atomically(&images.join("SHA256SUMS"), b"new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(images.join("SHA256SUMS")).unwrap(),
            "new\n"
        );
        assert!(!images.join("SHA256SUMS.partial").exists());
    }

    #[test]
    fn a_foreign_non_empty_folder_is_not_used_as_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "mine").unwrap();
        let err = prepare_output(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a Buildroot output folder"), "{err}");
        std::fs::write(dir.path().join(".config"), "").unwrap();
        assert_eq!(
            prepare_output(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let fresh = dir.path().join("new/out");
        assert!(prepare_output(&fresh).unwrap().is_absolute());
    }

    #[test]
    fn seal_writes_a_manifest_and_sums_that_sha256sum_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        std::fs::create_dir(images.join("sbom")).unwrap();
        let names = ["sdcard.img", "sdcard.img.bmap", "sbom/berth.cdx.json"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(images.join(name), vec![b'x'; 1000 * (i + 1)]).unwrap();
        }
        let manifest = Manifest {
            berth: BerthInfo {
                commit: "0".repeat(40),
                dirty: true,
                board: "odroid-xu4".into(),
                source_date_epoch: 1,
            },
            buildroot: BuildrootInfo {
                version: BUILDROOT_RELEASE.into(),
                commit: crate::project::BUILDROOT_COMMIT.into(),
                series_sha256: None,
            },
            defconfig: DefconfigInfo {
                path: "configs/x".into(),
                sha256: "1".repeat(64),
            },
            toolchain: Default::default(),
            inputs: Default::default(),
            host: Default::default(),
            packages: Vec::new(),
            artifacts: Vec::new(),
            apps: Vec::new(),
            vulnerabilities: None,
        };
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let sums = seal(images, manifest, &names).unwrap();
        assert_eq!(sums.len(), 4);
        let written = Manifest::load(&images.join(MANIFEST)).unwrap();
        assert_eq!(written.artifacts[2].name, "sbom/berth.cdx.json");
        assert_eq!(written.artifacts[2].size, 3000);
        assert_eq!(
            written.artifacts[0].sha256,
            util::sha256_file(&images.join("sdcard.img")).unwrap()
        );
        let text = std::fs::read_to_string(images.join(SUMS)).unwrap();
        assert!(
            text.contains("  manifest.toml\n") && text.contains("  sbom/berth.cdx.json\n"),
            "{text}"
        );
        let check = std::process::Command::new("sha256sum")
            .args(["--check", "--strict", SUMS])
            .current_dir(images)
            .output();
        if let Ok(out) = check {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert!(seal(images, written, &["missing.img".to_string()]).is_err());
    }

    /// A stand-in for `make`: a script printing step lines on stdout and errors on stderr.
    fn fake_make(dir: &Path, body: &str) -> std::process::Command {
        let script = dir.join("fake-make.sh");
        std::fs::write(&script, body).unwrap();
        let mut command = std::process::Command::new("sh");
        command.arg(script);
        command
    }

    #[test]
    fn a_failing_build_is_logged_whole_and_reported_with_package_step_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let info = json!({"host-m4": {"type": "host", "stamp_dir": "build/host-m4-1.4.21"}});
        let failed_dir = dir.path().join("build/host-m4-1.4.21");
        let body = format!(
            "echo '>>> host-m4 1.4.21 Downloading'\n\
             for i in $(seq 1 40); do echo \"noise $i\"; done\n\
             echo 'wget: unable to resolve host address' >&2\n\
             echo 'make: *** [package/pkg-generic.mk:179: {}/.stamp_downloaded] Error 1' >&2\n\
             exit 2\n",
            failed_dir.display()
        );
        let tracker = progress::Tracker::new(1, []);
        let err = run_build(
            fake_make(dir.path(), &body),
            dir.path(),
            &info,
            tracker,
            Instant::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("failed (exit status: 2) in package host-m4, step \"Downloading\""),
            "{err}"
        );
        assert!(
            err.contains("  wget: unable to resolve host address\n"),
            "{err}"
        );
        assert!(!err.contains("noise 5\n"), "only the last lines: {err}");
        assert!(err.contains("noise 40"), "{err}");
        assert!(
            err.ends_with(&format!(
                "Full log: {}",
                dir.path().join("build.log").display()
            )),
            "{err}"
        );
        let log = std::fs::read_to_string(dir.path().join("build.log")).unwrap();
        assert!(log.starts_with("# cargo xtask image ran: "), "{log}");
        assert!(
            log.contains("noise 1\n") && log.contains("Error 1\n"),
            "the log keeps everything: {log}"
        );
    }

    #[test]
    fn a_successful_build_returns_after_the_output_ends() {
        let dir = tempfile::tempdir().unwrap();
        let body = "echo '>>> host-m4 1.4.21 Building'\necho '>>>   Finalizing target directory'\nexit 0\n";
        let tracker = progress::Tracker::new(1, []);
        run_build(
            fake_make(dir.path(), body),
            dir.path(),
            &json!({}),
            tracker,
            Instant::now(),
        )
        .unwrap();
        assert!(std::fs::read_to_string(dir.path().join("build.log"))
            .unwrap()
            .contains("Finalizing"));
    }

    #[test]
    fn artifact_names_are_relative_to_the_images_folder() {
        assert_eq!(
            name_in(
                Path::new("/o/images"),
                Path::new("/o/images/sbom/berth.cdx.json")
            )
            .unwrap(),
            "sbom/berth.cdx.json"
        );
        assert!(name_in(Path::new("/o/images"), Path::new("/o/legal-info/x")).is_err());
    }
}
