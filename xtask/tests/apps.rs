//! Declared apps, offline and for real: a static ARM program made with the cross compiler becomes
//! an OCI image with real digests, served by Debian's `docker-registry` (registry:2) on
//! 127.0.0.1; the preload fetches it by digest and writes the archive the board loads.

mod common;
mod local_registry;

use std::path::Path;
use std::process::Command;

use xtask::apps::{self, registry, spec};
use xtask::host::Host;
use xtask::project::{self, Repo};

use common::{have_tool, run_ok, skip};
use local_registry::{apps_file, setup, Registry};
use xtask::apps::oci::digest_of as digest;

fn image(registry: &Registry, digest: &str) -> spec::ImageRef {
    spec::ImageRef {
        registry: registry.addr.clone(),
        repository: "berth/hello".into(),
        tag: None,
        digest: digest.into(),
    }
}

/// Fetch the test image pinned by `digest` and write it as the archive of app `name` at `path`.
fn archive(registry: &Registry, name: &str, digest: &str, path: &Path) -> apps::AppRecord {
    let (limits, _) = apps::board_limits(&Repo::checkout(), project::default_board()).unwrap();
    let text = format!(
        "[[app]]\nname = \"{name}\"\nimage = \"{}/berth/hello@{digest}\"\n",
        registry.addr
    );
    let app = spec::parse(&text, "apps.toml", &limits).unwrap().remove(0);
    let fetched = registry::fetch(&app.image, &Host::default()).unwrap();
    apps::write_archive(
        &app,
        &fetched,
        path,
        &format!("/usr/share/berth/apps/{name}.tar"),
    )
    .unwrap()
}

/// What `cargo xtask image --apps FILE` does before the build, for the default board.
fn stage(file: &Path, output: &Path) -> anyhow::Result<xtask::image::apps::Staged> {
    xtask::image::apps::stage_for_image(
        &Repo::checkout(),
        project::default_board(),
        Some(file),
        output,
        &Host::default(),
    )
}

#[test]
fn preload_by_digest_stages_the_archive_the_list_and_the_unit() {
    let Some((registry, pushed, dir)) =
        setup("preload_by_digest_stages_the_archive_the_list_and_the_unit")
    else {
        return;
    };
    let file = apps_file(
        dir.path(),
        &format!("{}/berth/hello@{}", registry.addr, pushed.index),
    );
    let output = dir.path().join("output");
    let staged = stage(&file, &output).unwrap();
    let record = &staged.records[0];
    assert_eq!(
        record.manifest_digest, pushed.manifest,
        "the arm/v7 manifest of the index"
    );
    assert_eq!(
        record.image_id, pushed.config,
        "the image ID is the config digest"
    );
    assert_eq!(record.archive, "/usr/share/berth/apps/hello.tar");
    let (var, rootfs) = staged.env.clone().unwrap();
    assert_eq!(var, "BERTH_APPS_ROOTFS");
    let rootfs = Path::new(&rootfs);
    let archive = std::fs::read(rootfs.join("usr/share/berth/apps/hello.tar")).unwrap();
    assert_eq!(xtask::util::sha256_hex(&archive), record.archive_sha256);
    let list = std::fs::read_to_string(rootfs.join("usr/share/berth/apps/apps.list")).unwrap();
    assert_eq!(
        list,
        format!(
            "hello {} {} hello.tar\n",
            record.archive_sha256, pushed.config
        )
    );
    let unit =
        std::fs::read_to_string(rootfs.join("etc/systemd/system/berth-app-hello.service")).unwrap();
    assert!(unit.contains(&format!("--memory 16777216 --memory-swap 16777216 --pids-limit 8 --cpus 0.5 --read-only --cap-drop ALL --security-opt no-new-privileges --security-opt apparmor=docker-default --network=bridge {}", pushed.config)), "{unit}");
    let wanted = rootfs.join("etc/systemd/system/multi-user.target.wants/berth-app-hello.service");
    assert_eq!(
        std::fs::read_link(wanted).unwrap(),
        Path::new("../berth-app-hello.service")
    );

    // The archive holds every blob under its digest, and says which image it is.
    let mut blobs = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    for d in [&pushed.manifest, &pushed.config, &pushed.layer] {
        let bytes = &blobs[&format!("blobs/sha256/{}", &d[7..])];
        assert_eq!(&digest(bytes), d);
    }
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    assert_eq!(index["manifests"][0]["digest"], pushed.manifest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "berth-apps/hello:pinned"
    );
    let docker: serde_json::Value = serde_json::from_slice(&blobs["manifest.json"]).unwrap();
    assert_eq!(
        docker[0]["Config"],
        format!("blobs/sha256/{}", &pushed.config[7..])
    );

    // A second build of the same apps gives the same archive.
    let again = stage(&file, &output).unwrap();
    assert_eq!(again.records, staged.records);
}

/// An app that runs unconfined without its reason stops `cargo xtask image --apps` before any
/// fetch, naming the file and the app's line; with the reason the file is accepted.
#[test]
fn an_unconfined_app_without_a_reason_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let file = dir.path().join("apps.toml");
    let app = format!(
        "# comment\n[[app]]\nname = \"tracer\"\nimage = \"docker.io/a/b@{digest}\"\napparmor = \"unconfined\"\n"
    );
    std::fs::write(&file, &app).unwrap();
    let declared =
        || xtask::image::apps::declared(&Repo::checkout(), project::default_board(), Some(&file));
    let err = format!("{:#}", declared().err().expect("refused"));
    assert!(
        err.contains(&format!(
            "{} weakens the hardening without a reason",
            file.display()
        )) && err.contains("CIS 5.2")
            && err.contains("AppArmor unconfined without a reason")
            && err.contains("app at line 2"),
        "{err}"
    );
    std::fs::write(
        &file,
        format!("{app}[app.reasons]\napparmor = \"ptraces the programs it profiles\"\n"),
    )
    .unwrap();
    assert!(declared().unwrap().is_some());
}

/// A profile file of the app's own is shipped under /etc/apparmor.d for apparmor.service, and
/// the units name the profile each app runs under, with the reason for an unconfined one.
#[test]
fn apparmor_profiles_reach_the_staged_files_and_the_units() {
    let test = "apparmor_profiles_reach_the_staged_files_and_the_units";
    let Some((registry, pushed, dir)) = setup(test) else {
        return;
    };
    let image = format!("{}/berth/hello@{}", registry.addr, pushed.index);
    let profile = "#include <tunables/global>\n\
        profile berth-hello flags=(attach_disconnected,mediate_deleted) {\n  #include <abstractions/base>\n  /srv/** r,\n}\n";
    std::fs::create_dir_all(dir.path().join("apparmor")).unwrap();
    std::fs::write(dir.path().join("apparmor/hello"), profile).unwrap();
    let file = dir.path().join("apps.toml");
    std::fs::write(
        &file,
        format!(
            "[[app]]\nname = \"hello\"\nimage = \"{image}\"\nmemory = \"16m\"\napparmor = \"apparmor/hello\"\n\
             [[app]]\nname = \"tracer\"\nimage = \"{image}\"\nmemory = \"16m\"\napparmor = \"unconfined\"\n\
             [app.reasons]\napparmor = \"ptraces the programs it profiles\"\n"
        ),
    )
    .unwrap();
    let staged = stage(&file, &dir.path().join("output")).unwrap();
    let rootfs = std::path::PathBuf::from(staged.env.unwrap().1);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/apparmor.d/berth-app-hello")).unwrap(),
        profile
    );
    assert!(
        !rootfs.join("etc/apparmor.d/berth-app-tracer").exists(),
        "an unconfined app ships no profile"
    );
    let unit = |name: &str| {
        std::fs::read_to_string(rootfs.join(format!("etc/systemd/system/berth-app-{name}.service")))
            .unwrap()
    };
    let hello = unit("hello");
    assert!(
        hello.contains(" --security-opt apparmor=berth-hello "),
        "{hello}"
    );
    assert!(!hello.contains("X-Berth-Reason"), "{hello}");
    let tracer = unit("tracer");
    assert!(
        tracer.contains(" --security-opt apparmor=unconfined "),
        "{tracer}"
    );
    assert!(
        tracer.contains("\nX-Berth-Reason-apparmor=ptraces the programs it profiles\n"),
        "{tracer}"
    );
}

#[test]
fn skopeo_reads_the_archive_with_the_expected_image_id() {
    let test = "skopeo_reads_the_archive_with_the_expected_image_id";
    let Some((registry, pushed, dir)) = setup(test) else {
        return;
    };
    if !have_tool(test, "skopeo", "skopeo") {
        return;
    }
    let path = dir.path().join("hello.tar");
    let record = archive(&registry, "hello", &pushed.manifest, &path);
    assert_eq!(record.image_id, pushed.config);
    let location = format!("oci-archive:{}", path.display());
    let raw_config =
        run_ok(Command::new("skopeo").args(["inspect", "--config", "--raw", &location])).stdout;
    assert_eq!(
        digest(&raw_config),
        pushed.config,
        "skopeo's config is the image ID"
    );
    let raw_manifest = run_ok(Command::new("skopeo").args(["inspect", "--raw", &location])).stdout;
    assert_eq!(digest(&raw_manifest), pushed.manifest);
}

#[test]
fn a_changed_byte_in_a_blob_is_refused() {
    let Some((registry, pushed, _dir)) = setup("a_changed_byte_in_a_blob_is_refused") else {
        return;
    };
    let file = registry.blob_file(&pushed.layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let err = format!(
        "{:#}",
        registry::fetch(&image(&registry, &pushed.index), &Host::default())
            .err()
            .expect("a changed blob must be refused")
    );
    assert!(err.contains("layer 1 of"), "{err}");
    assert!(err.contains(&pushed.layer), "{err}");
}

#[test]
fn a_tag_only_reference_is_refused_before_anything_is_fetched() {
    let Some((registry, _pushed, dir)) =
        setup("a_tag_only_reference_is_refused_before_anything_is_fetched")
    else {
        return;
    };
    let file = apps_file(dir.path(), &format!("{}/berth/hello:latest", registry.addr));
    let output = dir.path().join("output");
    let err = format!("{:#}", stage(&file, &output).unwrap_err());
    assert!(
        err.contains("apps.toml:3: app \"hello\", `image`") && err.contains("has no digest"),
        "{err}"
    );
    assert!(!output.join("berth-apps").exists(), "nothing staged");
}

#[test]
fn an_index_without_arm_v7_names_the_platforms_it_has() {
    let Some((registry, pushed, _dir)) =
        setup("an_index_without_arm_v7_names_the_platforms_it_has")
    else {
        return;
    };
    let err = format!(
        "{:#}",
        registry::fetch(
            &image(&registry, &pushed.index_without_arm),
            &Host::default()
        )
        .err()
        .unwrap()
    );
    assert!(
        err.contains("has no linux/arm/v7 image") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );
}

#[test]
fn a_digest_the_registry_does_not_have_is_refused() {
    let Some((registry, pushed, _dir)) = setup("a_digest_the_registry_does_not_have_is_refused")
    else {
        return;
    };
    let other = digest(pushed.index.as_bytes());
    let err = format!(
        "{:#}",
        registry::fetch(&image(&registry, &other), &Host::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("could not fetch the manifest"), "{err}");
}

/// Whether a Docker daemon answers here (`.ci/run` starts one); skips `test` when not.
fn docker_daemon(test: &str) -> bool {
    if !have_tool(test, "docker", "docker.io") {
        return false;
    }
    let answers = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        skip(test, "no Docker daemon answers `docker info` here; the archive is checked with skopeo instead");
    }
    answers
}

#[test]
fn docker_loads_the_archive_with_the_expected_image_id() {
    let test = "docker_loads_the_archive_with_the_expected_image_id";
    if !docker_daemon(test) {
        return;
    }
    let Some((registry, pushed, dir)) = setup(test) else {
        return;
    };
    let path = dir.path().join("load.tar");
    archive(&registry, "berth-test-load", &pushed.index, &path);
    run_ok(Command::new("docker").args(["load", "--input"]).arg(&path));
    let name = apps::local_name("berth-test-load");
    let id =
        run_ok(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &name]))
            .stdout;
    let _ = Command::new("docker").args(["image", "rm", &name]).output();
    assert_eq!(String::from_utf8_lossy(&id).trim(), pushed.config);
}

/// The board's loader script, run for real against a Docker daemon on the staged root filesystem
/// fragment. It runs in a private mount namespace where `/usr/share` and `/var/lib` are fresh
/// tmpfs, so the script's own paths (`/usr/share/berth/apps`, `/var/lib/docker/berth-apps`) hold
/// the staged files and nothing of this machine is touched.
fn run_loader(rootfs: &Path) -> std::process::Output {
    let script =
        Repo::checkout().path("board/odroid-xu4/rootfs-overlay/usr/libexec/berth-apps-load");
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-euc"])
        .arg(
            "mount -t tmpfs tmpfs /usr/share; mount -t tmpfs tmpfs /var/lib; \
             mkdir -p /usr/share/berth/apps; cp -a \"$1\"/usr/share/berth/apps/. /usr/share/berth/apps/; \
             exec sh \"$2\" hello",
        )
        .args(["loader".as_ref(), rootfs.as_os_str(), script.as_os_str()])
        .output()
        .unwrap()
}

#[test]
fn the_board_loader_loads_the_archive_and_keeps_a_mismatched_app_stopped() {
    let test = "the_board_loader_loads_the_archive_and_keeps_a_mismatched_app_stopped";
    if !common::is_root(test) || !have_tool(test, "unshare", "util-linux") || !docker_daemon(test) {
        return;
    }
    let Some((registry, pushed, dir)) = setup(test) else {
        return;
    };
    let file = apps_file(
        dir.path(),
        &format!("{}/berth/hello@{}", registry.addr, pushed.index),
    );
    let staged = stage(&file, &dir.path().join("output")).unwrap();
    let rootfs = std::path::PathBuf::from(staged.env.unwrap().1);
    let name = apps::local_name("hello");
    let remove = || Command::new("docker").args(["image", "rm", &name]).output();

    let loaded = run_loader(&rootfs);
    let said = String::from_utf8_lossy(&loaded.stderr).to_string()
        + &String::from_utf8_lossy(&loaded.stdout);
    assert!(loaded.status.success(), "{said}");
    assert!(
        said.contains(&format!("loaded {}", pushed.config)),
        "{said}"
    );
    let id =
        run_ok(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &name]));
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), pushed.config);

    // The list names another image ID: the loader fails (the app's unit requires it, so the app
    // stays stopped) and leaves no image of that name behind.
    let _ = remove();
    let list = rootfs.join("usr/share/berth/apps/apps.list");
    let text = std::fs::read_to_string(&list).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&list, text.replace(&pushed.config, &wrong)).unwrap();
    let refused = run_loader(&rootfs);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains(&format!("not {wrong}; the app stays stopped")),
        "{said}"
    );
    assert!(
        !remove().unwrap().status.success(),
        "the mismatched image was left loaded"
    );

    // A changed byte in the archive: refused before docker sees it.
    std::fs::write(&list, &text).unwrap();
    let archive = rootfs.join("usr/share/berth/apps/hello.tar");
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let refused = run_loader(&rootfs);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("does not match its sha256"), "{said}");
}
