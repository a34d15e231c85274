//! Declared containers: the apps a board runs, pinned by digest, preloaded into the root
//! filesystem and run by systemd with enforced limits (docs/apps.md).
//!
//! - [`spec`] parses `apps.toml` (pure); [`values`] its value notations; [`hardening`] the
//!   hardened defaults and their weakenings; [`apparmor`] the profile each app runs under.
//! - [`registry`] fetches each image for `linux/arm/v7` by digest; [`oci`] checks the documents
//!   and writes the OCI image-layout archive.
//! - [`units`] writes one systemd unit per app (pure); [`audit::apps`](crate::audit::apps)
//!   judges the apps against the CIS section 5 table in `configs/hardening/cis-apps.toml` (pure).
//! - This file ties them to a checkout: the board's facts, and the root filesystem fragment the
//!   image build copies in (`post-build.sh`, `BERTH_APPS_ROOTFS`).

pub mod apparmor;
pub mod hardening;
pub mod oci;
pub mod registry;
pub mod sbom;
pub mod spec;
pub mod units;
pub mod values;

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::project::{Board, Repo};
use crate::systemd_unit::parse_unit;
use spec::{App, BoardLimits};

/// Where the archives and their list live in the root filesystem (read-only, and part of the
/// system slot once there are A/B slots, so apps update with the OS).
pub const ARCHIVE_DIR: &str = "usr/share/berth/apps";
/// The list the loader reads: one line per app, `name archive-sha256 image-id archive-file`.
pub const LIST_FILE: &str = "apps.list";
/// The `(name, image-id)` of each app in the text of a [`LIST_FILE`] (pure).
pub fn parse_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 3).then(|| (fields[0].to_string(), fields[2].to_string()))
        })
        .collect()
}

/// Folder under the data partition's mount point that bind-mounted volumes must lie in.
pub const VOLUME_DIR: &str = "berth-volumes";
/// The environment variable that hands the fragment to `post-build.sh`.
pub const ROOTFS_ENV: &str = "BERTH_APPS_ROOTFS";
/// The name an app's image has once loaded (`docker images`); the units run it by ID.
pub fn local_name(app: &str) -> String {
    format!("berth-apps/{app}:pinned")
}

/// One preloaded app, as the manifest and the SBOM list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRecord {
    pub name: String,
    /// The reference as declared, with its pinned digest (an index or a manifest).
    pub image: String,
    /// The `linux/arm/v7` image manifest's digest.
    pub manifest_digest: String,
    /// The image config's digest: the image ID Docker gives the loaded image.
    pub image_id: String,
    /// Path of the archive in the root filesystem.
    pub archive: String,
    pub archive_sha256: String,
    pub archive_size: u64,
}

/// Docker's data folder on the encrypted data volume: the `Where=` of the board's mount unit
/// that binds the volume's `docker` folder (`What=<volume>/docker`), the volume being the one
/// mount unit of a dm-crypt mapping (`What=/dev/mapper/…`).
pub fn data_mount(board_dir: &Path) -> Result<String> {
    let units = board_dir.join("rootfs-overlay/etc/systemd/system");
    let mut mounts = Vec::new();
    let entries =
        std::fs::read_dir(&units).with_context(|| format!("could not list {}", units.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("could not list {}", units.display()))?
            .path();
        if path.extension().is_none_or(|e| e != "mount") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let settings = parse_unit(&text);
        let value = |key: &str| {
            settings
                .iter()
                .rev()
                .find(|(section, k, _)| section == "Mount" && k == key)
                .map(|(_, _, v)| v.clone())
                .unwrap_or_default()
        };
        mounts.push((value("What"), value("Where")));
    }
    let volumes: Vec<&String> = mounts
        .iter()
        .filter(|(what, _)| what.starts_with("/dev/mapper/"))
        .map(|(_, at)| at)
        .collect();
    let [volume] = volumes.as_slice() else {
        bail!(
            "{} should hold exactly one mount unit of an encrypted (/dev/mapper/) device, found {}",
            units.display(),
            volumes.len()
        );
    };
    let docker = format!("{}/docker", volume.trim_end_matches('/'));
    mounts
        .iter()
        .find(|(what, _)| *what == docker)
        .map(|(_, at)| at.clone())
        .with_context(|| format!("{} holds no mount unit binding {docker}", units.display()))
}

/// The board's limits for `apps.toml`: its memory and CPUs, and the volume folder.
pub fn board_limits(repo: &Repo, board: &Board) -> Result<(BoardLimits, String)> {
    let mount = data_mount(&board.dir(repo))?;
    Ok((
        BoardLimits {
            memory_bytes: board.memory_mib << 20,
            cpus: board.cpus,
            volume_root: format!("{}/{VOLUME_DIR}", mount.trim_end_matches('/')),
        },
        mount,
    ))
}

/// Read and check `path`, and the profile files its apps name (relative to its folder).
pub fn load(path: &Path, limits: &BoardLimits) -> Result<Vec<App>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the apps file {}", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let read = |file: &str| -> Result<String> {
        let path = folder.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))
    };
    spec::parse_reading(&text, &path.display().to_string(), limits, &read)
}

/// Build the root filesystem fragment of `apps` in `dest` (emptied first): each image fetched
/// and archived under [`ARCHIVE_DIR`], the list, the units enabled in multi-user.target, and
/// each app's own AppArmor profile under [`apparmor::PROFILE_DIR`].
pub fn stage_rootfs(
    apps: &[App],
    data_mount: &str,
    dest: &Path,
    host: &Host,
) -> Result<Vec<AppRecord>> {
    match std::fs::remove_dir_all(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("could not empty {}", dest.display())),
    }
    let archives = dest.join(ARCHIVE_DIR);
    let system = dest.join("etc/systemd/system");
    let wants = system.join("multi-user.target.wants");
    for dir in [&archives, &wants] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let mut records = Vec::new();
    let mut list = String::new();
    for app in apps {
        eprintln!(
            "apps: fetching {} for linux/arm/v7 ({})",
            app.name, app.image
        );
        let image = registry::fetch(&app.image, host)?;
        let file = format!("{}.tar", app.name);
        let record = write_archive(
            app,
            &image,
            &archives.join(&file),
            &format!("/{ARCHIVE_DIR}/{file}"),
        )?;
        list.push_str(&format!(
            "{} {} {} {file}\n",
            app.name, record.archive_sha256, record.image_id
        ));
        let unit = units::unit_name(&app.name);
        write(
            &system.join(&unit),
            units::unit(app, &record.image_id, data_mount).as_bytes(),
        )?;
        if let spec::AppArmor::Profile(profile) = &app.hardening.apparmor {
            let dir = dest.join(apparmor::PROFILE_DIR);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
            write(
                &dir.join(apparmor::staged_file(&app.name)),
                profile.text.as_bytes(),
            )?;
        }
        let link = wants.join(&unit);
        std::os::unix::fs::symlink(format!("../{unit}"), &link)
            .with_context(|| format!("could not create {}", link.display()))?;
        records.push(record);
    }
    write(&archives.join(LIST_FILE), list.as_bytes())?;
    Ok(records)
}

/// Write `image` as the archive of `app` at `path`; `in_rootfs` is its path on the board.
pub fn write_archive(
    app: &App,
    image: &registry::Image,
    path: &Path,
    in_rootfs: &str,
) -> Result<AppRecord> {
    let mut blobs = vec![
        oci::Blob {
            digest: &image.manifest.digest,
            bytes: &image.manifest_bytes,
        },
        oci::Blob {
            digest: &image.config_digest,
            bytes: &image.config_bytes,
        },
    ];
    blobs.extend(image.layers.iter().map(|(d, b)| oci::Blob {
        digest: d,
        bytes: b,
    }));
    let layer_digests: Vec<&str> = image.layers.iter().map(|(d, _)| d.as_str()).collect();
    let mut archive = Vec::new();
    oci::write_layout(
        &mut archive,
        &local_name(&app.name),
        &image.manifest,
        &image.config_digest,
        &layer_digests,
        &blobs,
    )?;
    write(path, &archive)?;
    Ok(AppRecord {
        name: app.name.clone(),
        image: app.image.to_string(),
        manifest_digest: image.manifest.digest.clone(),
        image_id: image.config_digest.clone(),
        archive: in_rootfs.into(),
        archive_sha256: oci::digest_of(&archive)
            .trim_start_matches("sha256:")
            .into(),
        archive_size: archive.len() as u64,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_gives_each_apps_name_and_image_id() {
        let text = "web aa sha256:11 web.tar\ndb bb sha256:22 db.tar\n\n";
        assert_eq!(
            parse_list(text),
            [
                ("web".to_string(), "sha256:11".to_string()),
                ("db".to_string(), "sha256:22".to_string())
            ]
        );
    }

    #[test]
    fn the_data_partition_mount_comes_from_the_board_files() {
        let repo = Repo::checkout();
        let board = crate::project::default_board();
        assert_eq!(data_mount(&board.dir(&repo)).unwrap(), "/var/lib/docker");
        let (limits, _) = board_limits(&repo, board).unwrap();
        assert_eq!(limits.memory_bytes, 2 << 30);
        assert_eq!(limits.volume_root, "/var/lib/docker/berth-volumes");

        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("rootfs-overlay/etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        assert!(data_mount(dir.path())
            .unwrap_err()
            .to_string()
            .contains("found 0"));
        std::fs::write(
            units.join("data.mount"),
            "[Mount]\nWhat=/dev/mapper/x\nWhere=/data\n",
        )
        .unwrap();
        std::fs::write(
            units.join("boot.mount"),
            "[Mount]\nWhat=/dev/mmcblk0p1\nWhere=/boot\n",
        )
        .unwrap();
        let err = data_mount(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no mount unit binding /data/docker"), "{err}");
        std::fs::write(
            units.join("var-lib-docker.mount"),
            "[Mount]\nWhat=/data/docker\nWhere=/var/lib/docker\nOptions=bind\n",
        )
        .unwrap();
        assert_eq!(data_mount(dir.path()).unwrap(), "/var/lib/docker");
    }
}
