//! RAUC update bundles (docs/updates.md): the one home of the `compatible` a board's bundles
//! carry, which its `/etc/rauc/system.conf` must name too; the bundle's manifest; and making and
//! checking a bundle with a `rauc` binary (Buildroot's host rauc when `cargo xtask image` makes
//! one, the user's own when `cargo xtask verify` checks one).
//!
//! A bundle holds the slot image, its `system.env` and the slot hook
//! (`board/<board>/rauc-bundle-hook.sh`), which RAUC runs before and after writing the slot.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use xshell::{cmd, Shell};

use crate::release::{SYSTEM_ENV, SYSTEM_IMAGE};

/// The board's RAUC `compatible`: a bundle for another board is refused on install.
pub fn compatible(board: &str) -> String {
    format!("berth-{board}")
}

/// Where the system configuration lives in a board's folder (copied into the root as
/// `/etc/rauc/system.conf`).
pub const SYSTEM_CONF: &str = "rootfs-overlay/etc/rauc/system.conf";
/// The slot hook in a board's folder, and its name inside a bundle.
pub const HOOK_SOURCE: &str = "rauc-bundle-hook.sh";
pub const HOOK_FILE: &str = "hook.sh";
/// The manifest's name inside a bundle (RAUC's fixed name).
pub const MANIFEST_FILE: &str = "manifest.raucm";

/// The bundle's `manifest.raucm`: a verity bundle whose one image goes to the `rootfs` slot
/// class, with the slot hook run before and after the write. Pure.
pub fn render_manifest(compatible: &str, version: &str, build: &str) -> Result<String> {
    for (key, value) in [
        ("compatible", compatible),
        ("version", version),
        ("build", build),
    ] {
        ensure!(
            !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic()),
            "the bundle's {key} {value:?} must be printable ASCII without spaces"
        );
    }
    Ok(format!(
        "[update]\n\
         compatible={compatible}\n\
         version={version}\n\
         build={build}\n\
         \n\
         [bundle]\n\
         format=verity\n\
         \n\
         [hooks]\n\
         filename={HOOK_FILE}\n\
         \n\
         [image.rootfs]\n\
         filename={SYSTEM_IMAGE}\n\
         hooks=pre-install;post-install\n"
    ))
}

/// The `compatible=` of the `[system]` section of a RAUC system.conf. Pure.
pub fn system_conf_compatible(text: &str) -> Result<String> {
    let mut section = "";
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((key, value)) = line.split_once('=') {
            if section == "system" && key.trim() == "compatible" {
                found.push(value.trim().to_string());
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("it has no compatible= in its [system] section"),
        _ => bail!("it sets compatible= more than once in [system]"),
    }
}

/// The board's system.conf must name the compatible its bundles are made with.
pub fn check_system_conf(board_dir: &Path, board: &str) -> Result<()> {
    let path = board_dir.join(SYSTEM_CONF);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "could not read RAUC's system configuration {}",
            path.display()
        )
    })?;
    let named = system_conf_compatible(&text)
        .with_context(|| format!("{} is not a RAUC system configuration", path.display()))?;
    let wanted = compatible(board);
    ensure!(
        named == wanted,
        "{} says compatible={named}, but bundles for the board {board} are made for {wanted}: the board would refuse every update",
        path.display()
    );
    Ok(())
}

/// Lay out a bundle's content in `content` (emptied first): the slot image and its
/// environment from `images` (the image hard-linked where it can be, as it is large), the hook
/// from `board_dir`, and `manifest`.
pub fn stage_content(
    content: &Path,
    images: &Path,
    board_dir: &Path,
    manifest: &str,
) -> Result<()> {
    if content.exists() {
        std::fs::remove_dir_all(content)
            .with_context(|| format!("could not empty {}", content.display()))?;
    }
    std::fs::create_dir_all(content)
        .with_context(|| format!("could not create {}", content.display()))?;
    for name in [SYSTEM_IMAGE, SYSTEM_ENV] {
        let from = images.join(name);
        ensure!(
            from.is_file(),
            "the update bundle needs {}, which the build did not produce",
            from.display()
        );
        let to = content.join(name);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("could not copy {} into the bundle", from.display()))?;
        }
    }
    let hook = board_dir.join(HOOK_SOURCE);
    std::fs::copy(&hook, content.join(HOOK_FILE))
        .with_context(|| format!("could not copy the slot hook {}", hook.display()))?;
    set_mode(&content.join(HOOK_FILE), 0o755)?;
    std::fs::write(content.join(MANIFEST_FILE), manifest)
        .with_context(|| format!("could not write {MANIFEST_FILE} in {}", content.display()))
}

/// Give the bundle's folder and the files in it the build's time, whichever mksquashfs makes the
/// bundle (those before 4.6 take file times from the files, not from SOURCE_DATE_EPOCH).
fn stamp_times(content: &Path, source_date_epoch: u64) -> Result<()> {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(source_date_epoch);
    let entries = std::fs::read_dir(content)
        .with_context(|| format!("could not list {}", content.display()))?;
    for path in entries
        .map(|e| e.map(|e| e.path()))
        .chain(std::iter::once(Ok(content.to_path_buf())))
    {
        let path = path.with_context(|| format!("could not list {}", content.display()))?;
        std::fs::File::open(&path)
            .and_then(|f| f.set_modified(time))
            .with_context(|| format!("could not set the time of {}", path.display()))?;
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set the mode of {}", path.display()))
}

/// A `rauc` binary and the folders its helpers (`mksquashfs`, `unsquashfs`) are taken from
/// first, e.g. Buildroot's `host/bin` and `host/sbin`.
pub struct Rauc {
    pub binary: PathBuf,
    pub helper_dirs: Vec<PathBuf>,
}

impl Rauc {
    /// Buildroot's host rauc in the output folder `output`.
    pub fn in_buildroot_output(output: &Path) -> Self {
        let host = output.join("host");
        Rauc {
            binary: host.join("bin/rauc"),
            helper_dirs: vec![host.join("bin"), host.join("sbin")],
        }
    }

    /// The `rauc` on the PATH, if there is one.
    pub fn on_path() -> Option<Self> {
        which::which("rauc").ok().map(|binary| Rauc {
            binary,
            helper_dirs: Vec::new(),
        })
    }

    fn path_var(&self) -> Result<std::ffi::OsString> {
        let rest = std::env::var_os("PATH").unwrap_or_default();
        std::env::join_paths(
            self.helper_dirs
                .iter()
                .cloned()
                .chain(std::env::split_paths(&rest)),
        )
        .context("the PATH for rauc's helpers holds a folder name with ':'")
    }

    /// Sign `content` into the bundle `out`, written beside it first and moved into place. The
    /// squashfs takes its times from `source_date_epoch` (mksquashfs reads SOURCE_DATE_EPOCH), so
    /// two builds of one commit sign the same content.
    pub fn bundle(
        &self,
        sh: &Shell,
        content: &Path,
        (key, cert): (&Path, &Path),
        source_date_epoch: u64,
        out: &Path,
    ) -> Result<()> {
        let rauc = &self.binary;
        stamp_times(content, source_date_epoch)?;
        let partial = crate::release::partial_path(out);
        if partial.exists() {
            std::fs::remove_file(&partial)
                .with_context(|| format!("could not remove {}", partial.display()))?;
        }
        cmd!(
            sh,
            "{rauc} bundle --cert={cert} --key={key} {content} {partial}"
        )
        .env("PATH", self.path_var()?)
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "{} could not make the bundle {}",
                rauc.display(),
                out.display()
            )
        })?;
        std::fs::rename(&partial, out)
            .with_context(|| format!("could not move {} into place", out.display()))
    }

    /// `rauc info` with `keyring`: the signature must check out, and the bundle's compatible is
    /// returned.
    pub fn check(&self, sh: &Shell, bundle: &Path, keyring: &Path) -> Result<String> {
        let rauc = &self.binary;
        let out = cmd!(
            sh,
            "{rauc} info --keyring={keyring} --output-format=shell {bundle}"
        )
        .env("PATH", self.path_var()?)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not run {}", rauc.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "rauc refuses {} with the keyring {}: {}",
            bundle.display(),
            keyring.display(),
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RAUC_MF_COMPATIBLE="))
            .map(|v| v.trim_matches('\'').to_string())
            .with_context(|| format!("rauc info printed no compatible for {}", bundle.display()))
    }
}

/// The update bundle a build record names, `None` for a folder from before bundles; a listed
/// bundle must be the one its `[berth]` record names, with its keyring listed beside it. Pure.
pub fn listed_bundle(manifest: &crate::manifest::Manifest) -> Result<Option<String>> {
    let listed: Vec<&str> = manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| n.ends_with(crate::release::BUNDLE_SUFFIX))
        .collect();
    let berth = &manifest.berth;
    let expected = crate::release::bundle_name(
        &crate::release::version(&berth.commit, berth.dirty),
        &berth.board,
    );
    match listed.as_slice() {
        [] => Ok(None),
        [one] if *one == expected => {
            ensure!(
                manifest
                    .artifacts
                    .iter()
                    .any(|a| a.name == crate::release::KEYRING_FILE),
                "{one} is listed without {}, the certificate that checks it",
                crate::release::KEYRING_FILE
            );
            Ok(Some(expected))
        }
        _ => bail!(
            "the manifest lists the update bundle(s) {}, but its build record (commit {}, dirty {}, board {}) names {expected}",
            listed.join(", "),
            berth.commit,
            berth.dirty,
            berth.board
        ),
    }
}

/// `cargo xtask verify`'s bundle check, after the digests: the bundle is the one the manifest
/// names, and, when `rauc` is installed, it accepts the signature with the folder's keyring and
/// reads the board's compatible. Returns the checks passed.
pub fn verify_bundle(dir: &Path, manifest: &crate::manifest::Manifest) -> Result<usize> {
    let Some(name) = listed_bundle(manifest)? else {
        println!("note: the manifest lists no update bundle (built before bundles existed)");
        return Ok(0);
    };
    println!("ok  {name} is this build's update bundle");
    let Some(rauc) = Rauc::on_path() else {
        println!("note: rauc is not installed, so the signature of {name} was not checked");
        return Ok(1);
    };
    let sh = Shell::new().context("could not start a shell for rauc")?;
    let signed_for = rauc
        .check(
            &sh,
            &dir.join(&name),
            &dir.join(crate::release::KEYRING_FILE),
        )
        .with_context(|| format!("{name} does not verify"))?;
    let wanted = compatible(&manifest.berth.board);
    ensure!(
        signed_for == wanted,
        "{name} is for {signed_for}, not {wanted}"
    );
    println!("ok  {name} signed for {wanted} (rauc info)");
    Ok(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_bundle_is_the_one_the_build_record_names() {
        let mut manifest = crate::manifest::tests::sample();
        manifest.berth.commit = "0123456789abcdef0123456789abcdef01234567".into();
        manifest.berth.dirty = false;
        manifest.berth.board = "odroid-xu4".into();
        let artifact = |name: &str| crate::manifest::Artifact {
            name: name.into(),
            size: 1,
            sha256: "a".repeat(64),
        };
        manifest.artifacts = vec![artifact("sdcard.img")];
        assert_eq!(listed_bundle(&manifest).unwrap(), None);
        manifest
            .artifacts
            .push(artifact("berth-0123456789ab-odroid-xu4.raucb"));
        let err = listed_bundle(&manifest).unwrap_err().to_string();
        assert!(err.contains("rauc-keyring.pem"), "{err}");
        manifest.artifacts.push(artifact("rauc-keyring.pem"));
        assert_eq!(
            listed_bundle(&manifest).unwrap().as_deref(),
            Some("berth-0123456789ab-odroid-xu4.raucb")
        );
        manifest.berth.dirty = true;
        let err = listed_bundle(&manifest).unwrap_err().to_string();
        assert!(
            err.contains("names berth-0123456789ab-dirty-odroid-xu4.raucb"),
            "{err}"
        );
    }

    #[test]
    fn manifest_names_the_image_the_hook_and_verity() {
        let text = render_manifest("berth-odroid-xu4", "0123456789ab", "0123456789abcdef").unwrap();
        assert!(text.starts_with("[update]\ncompatible=berth-odroid-xu4\nversion=0123456789ab\n"));
        assert!(text.contains("[bundle]\nformat=verity\n"), "{text}");
        assert!(text.contains("[hooks]\nfilename=hook.sh\n"), "{text}");
        assert!(
            text.contains("[image.rootfs]\nfilename=system.img\nhooks=pre-install;post-install\n")
        );
        assert!(render_manifest("berth-odroid-xu4", "1\n[x]", "b").is_err());
        assert!(render_manifest("", "1", "b").is_err());
    }

    #[test]
    fn reads_the_compatible_of_the_system_section_only() {
        let conf = "# compatible=no\n[system]\ncompatible = berth-odroid-xu4\nbootloader=uboot\n[slot.rootfs.0]\ncompatible=no\n";
        assert_eq!(system_conf_compatible(conf).unwrap(), "berth-odroid-xu4");
        assert!(system_conf_compatible("[system]\nbootloader=uboot\n").is_err());
        assert!(system_conf_compatible("[system]\ncompatible=a\ncompatible=b\n").is_err());
    }

    #[test]
    fn the_boards_system_conf_names_the_bundles_compatible() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for board in crate::project::BOARDS {
            check_system_conf(&repo.join(board.board_dir), board.name).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join(SYSTEM_CONF);
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "[system]\ncompatible=berth-other\n").unwrap();
        let err = format!(
            "{:#}",
            check_system_conf(dir.path(), "odroid-xu4").unwrap_err()
        );
        assert!(
            err.contains("berth-odroid-xu4") && err.contains("refuse every update"),
            "{err}"
        );
    }
}
