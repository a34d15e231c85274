//! `cargo xtask image`: drive the pinned Buildroot to a flashable image with checksums, block map and manifest.
//!
//! Every cheap check (settings, SSH key, repository state, host tools, Buildroot tree, network)
//! runs before the long build. `SHA256SUMS` and `manifest.toml` are removed first and written
//! last, after everything succeeded, so a folder that has them holds a finished image.

pub mod apps;
mod build;
pub mod config;
pub mod hawkbit;
pub mod layout;
mod network;
mod output;
mod progress;
pub mod signing;
pub mod sizes;
mod ssh_keys;
mod updates;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::buildroot::Buildroot;
use crate::host::Host;
use crate::kconfig::Resolved;
use crate::manifest::{self, BerthInfo, BuildrootInfo, DefconfigInfo, Manifest};
use crate::prereqs;
use crate::project::{self, Repo, BUILDROOT_RELEASE};
use crate::release;
use crate::util;
use crate::vulns;

use config::BerthConfig;

/// Every option can also be set in `berth.toml` at the repository root (see berth.example.toml);
/// the command line wins.
#[derive(Args, Debug, Default)]
pub struct ImageArgs {
    /// Board to build for [default: odroid-xu4, one image for the XU4, XU3 Lite, XU3 and HC1].
    #[arg(long)]
    pub board: Option<String>,
    /// A tree of the pinned Buildroot to use instead of the cached clone [env BERTH_BUILDROOT].
    #[arg(long, value_name = "DIR")]
    pub buildroot: Option<PathBuf>,
    /// Buildroot output folder (O=); by default output/BOARD in the repository.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Parallel jobs inside each package build (BR2_JLEVEL; 0 = CPUs + 1).
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// Public keys (authorized_keys format) allowed to log in over SSH; the image has no password.
    #[arg(long, value_name = "FILE")]
    pub ssh_authorized_keys: Option<PathBuf>,
    /// Skip the check that download hosts answer (for proxies set outside the environment,
    /// e.g. in /etc/wgetrc or git config, which the check cannot see).
    #[arg(long)]
    pub skip_network_check: bool,
    /// Declared containers to preload and run (apps.toml, see docs/apps.md and apps.example.toml).
    #[arg(long, value_name = "FILE")]
    pub apps: Option<PathBuf>,
    /// Private key (PEM) that signs the update bundle; with --signing-cert [default: a
    /// development pair made in the output folder on the first build].
    #[arg(long, value_name = "FILE", requires = "signing_cert")]
    pub signing_key: Option<PathBuf>,
    /// Its certificate (PEM), which goes into the image as RAUC's keyring.
    #[arg(long, value_name = "FILE", requires = "signing_key")]
    pub signing_cert: Option<PathBuf>,
}

/// How long the network preflight may take in total.
const PROBE_BUDGET: Duration = Duration::from_secs(8);

/// Build the image of the checkout as `args` and its `berth.toml` say, on `host`: the default SSH
/// key and `~` in paths come from its home folder, the Buildroot clone and the downloads go into
/// its cache folder, and every process started gets its proxies.
pub fn run(checkout: &Repo, args: ImageArgs, host: &Host) -> Result<()> {
    let started = Instant::now();
    let repo = checkout.root();
    let skip_network_check = args.skip_network_check;
    let settings = Settings::gather(args, repo, host)?;
    let sh = host.shell()?;

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
    layout::check_board(&settings.board.dir(checkout))?;
    let declared = apps::declared(checkout, settings.board, settings.apps.as_deref())?;
    let (commit, dirty) = repository_state(&sh, repo)?;
    // One list, so one apt-get line names everything missing.
    let mut missing = prereqs::check_host(&sh);
    let size_stats_python = sizes::python(&sh).unwrap_or_else(|lacks| {
        missing.extend(lacks);
        String::new()
    });
    if let Some(problems) = prereqs::report(&missing, "Buildroot needs to build the image") {
        bail!(problems);
    }

    let br = crate::buildroot::resolve(checkout, host, settings.buildroot.as_deref(), true)?;
    let output = output::prepare_output(&settings.output)?;
    let images = output.join("images");
    output::remove_finished_markers(&images)?;
    let apps = apps::stage(declared, &output, host)?;
    let board_dir = settings.board.dir(checkout);
    let updates = updates::prepare(
        &sh,
        settings.updates,
        &output,
        &board_dir,
        settings.board.name,
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
    let dl_root = host.cache()?.join("dl");
    // On the shell, not only the build: legal-info and the SBOM script (sbom.rs) read it too, and
    // a BR2_DL_DIR of the caller's own must not send them to a folder the build never filled.
    sh.set_var("BR2_DL_DIR", &dl_root);
    if !skip_network_check {
        check_sources_reachable(&info, &dl_root, host)?;
    }
    // The SBOM step at the end needs it too: fetch it now, or fail now, not after the build.
    crate::sbom::ensure_spdx_schema(&sh, &dl_root)?;

    let mut env = crate::reproducible::build_env(repo)
        .context("could not prepare the reproducible build environment")?;
    let source_date_epoch = source_date_epoch(&env)?;
    env.push((
        "BERTH_SSH_AUTHORIZED_KEYS".into(),
        settings.ssh_keys.path().display().to_string(),
    ));
    env.extend(apps.env.clone());
    env.extend(updates.env.clone());
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
    build::run(build.into(), &output, &info, tracker, started)?;
    // Before the audit and the digests: a system image too big for its budget is no release.
    let system_image = release::measure_system_image(&images)?;

    let mut artifacts = audit_and_describe(checkout, &br, &sh, &output, &dl_root)?;
    artifacts.extend(sizes::write(&sh, &br, &output, &size_stats_python)?);
    artifacts.extend(updates.write_bundle(&sh, &output, &commit, dirty, source_date_epoch)?);
    crate::apps::sbom::add_to(&images.join(release::SBOM_FILE), &apps.records)?;
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
            path: name_in(repo, &defconfig)?,
            sha256: util::sha256_file(&defconfig)?,
        },
        toolchain: manifest::toolchain_info(&read_config(&output)?, &info)?,
        system_image,
        inputs: manifest::input_digests(repo)?,
        host: host_tool_versions(&sh),
        packages: manifest::packages_from_show_info(&info)?,
        artifacts: Vec::new(),
        apps: apps.records,
        vulnerabilities: Some(vulns::Record::load(&vulns::record_in(repo))?),
    };
    let sums = release::seal(&images, manifest, &artifacts)?;

    eprintln!(
        "Image ready in {} after {}:\n{}",
        images.display(),
        indicatif::HumanDuration(started.elapsed()),
        sums.iter()
            .map(|entry| format!("  {}", entry.name))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// After the build: check the images exist, audit them, add block maps and the SBOM. Returns
/// every artifact's name relative to `<output>/images`.
fn audit_and_describe(
    repo: &Repo,
    br: &Buildroot,
    sh: &Shell,
    output: &Path,
    dl: &Path,
) -> Result<Vec<String>> {
    let images = output.join("images");
    for image in release::IMAGES
        .iter()
        .chain(release::SLOT_ARTIFACTS)
        .chain(release::TWIN_ARTIFACTS)
    {
        let path = images.join(image);
        if !path.is_file() {
            bail!(
                "the build finished but did not produce {} (check the board's genimage configuration and post-image script)",
                path.display()
            );
        }
    }
    crate::audit::audit_output_into(repo, output, &output.join("audit.txt"))
        .context("the image failed its hardening audit")?;
    let mut artifacts: Vec<String> = release::IMAGES
        .iter()
        .chain(release::SLOT_ARTIFACTS)
        .chain(release::TWIN_ARTIFACTS)
        .map(|i| i.to_string())
        .collect();
    for image in release::IMAGES {
        let bmap = release::bmap_name(image);
        crate::bmap::write_for_image(&images.join(image), &images.join(&bmap))
            .with_context(|| format!("could not write the block map {bmap}"))?;
        artifacts.push(bmap);
    }
    for file in crate::sbom::write_sbom_and_legal_info(repo, br, sh, output, dl)
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
    pub buildroot: Option<PathBuf>,
    output: PathBuf,
    pub jobs: Option<u32>,
    ssh_keys: config::SshKeys,
    apps: Option<PathBuf>,
    updates: updates::UpdateSettings,
}

impl Settings {
    fn gather(args: ImageArgs, repo: &Path, host: &Host) -> Result<Self> {
        let home = host.home.as_deref();
        let file = BerthConfig::load(repo)?;
        let cwd = std::env::current_dir().context("could not read the current directory")?;
        let pick = |flag: Option<&Path>, configured: Option<&Path>| {
            config::pick_path(flag, configured, &cwd, repo, home)
        };
        let board = project::board(
            args.board
                .as_deref()
                .or(file.board.as_deref())
                .unwrap_or(project::DEFAULT_BOARD),
        )?;
        Ok(Settings {
            board,
            // Flag, then the host's BERTH_BUILDROOT (taken by buildroot::resolve), then berth.toml.
            buildroot: if args.buildroot.is_none() && host.buildroot.is_some() {
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
                home,
            )?,
            apps: pick(args.apps.as_deref(), file.apps.as_deref())?,
            updates: updates::UpdateSettings {
                // The flags come as a pair (clap), berth.toml's keys are checked as one.
                signing: match (args.signing_key, args.signing_cert) {
                    (Some(key), Some(cert)) => {
                        signing::named(pick(Some(&key), None)?, pick(Some(&cert), None)?)?
                    }
                    _ => signing::named(
                        pick(None, file.signing_key.as_deref())?,
                        pick(None, file.signing_cert.as_deref())?,
                    )?,
                },
                hawkbit: file
                    .hawkbit
                    .as_ref()
                    .map(|table| {
                        table.complete(|p| Ok(pick(None, Some(p))?.expect("a path was given")))
                    })
                    .transpose()?,
            },
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

/// Fail at once, naming the files, when sources are missing and no host offering them answers.
/// Downloads go through the host's proxies.
fn check_sources_reachable(info: &serde_json::Value, dl_root: &Path, host: &Host) -> Result<()> {
    let missing: Vec<_> = network::downloads_from_show_info(info)
        .into_iter()
        .filter(|d| !dl_root.join(&d.dl_dir).join(&d.file).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let proxy = |name: &str| host.proxy(name).map(str::to_string);
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

#[cfg(test)]
mod tests {
    use super::*;

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
