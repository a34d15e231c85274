//! `cargo xtask image` end to end, short of a real build: bad settings and keys fail before any
//! long work and touch nothing; with a real Buildroot and no network it fails fast (before
//! Buildroot builds or downloads anything), naming what it could not fetch, and leaves nothing
//! that looks like a finished image.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::host::Host;
use xtask::image::{self, ImageArgs};
use xtask::project::Repo;

use common::PUBLIC_KEY;
const PRIVATE_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n";

/// A minimal stand-in for the Berth repository: a BERTH external tree and a small defconfig
/// whose sources (Bootlin toolchain, busybox, host tools) all come from the network.
fn fake_repo(root: &Path) {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "configs/berth_odroid_xu4_defconfig",
        "BR2_arm=y\nBR2_cortex_a15_a7=y\nBR2_ARM_FPU_NEON_VFPV4=y\nBR2_TOOLCHAIN_EXTERNAL=y\n\
         BR2_TOOLCHAIN_EXTERNAL_BOOTLIN=y\nBR2_TARGET_ROOTFS_EXT2=y\nBR2_TARGET_ROOTFS_EXT2_4=y\n",
    );
    write(
        "br2-external/external.desc",
        "name: BERTH\ndesc: test stand-in\n",
    );
    write("br2-external/Config.in", "");
    write("br2-external/external.mk", "");
    // The real layout: `image` checks it against the boot chain before building.
    write(
        "board/odroid-xu4/genimage.cfg",
        &std::fs::read_to_string(Repo::checkout().path("board/odroid-xu4/genimage.cfg")).unwrap(),
    );
    // RAUC's system configuration: `image` checks its compatible before building.
    let system_conf = format!("board/odroid-xu4/{}", xtask::rauc::SYSTEM_CONF);
    write(
        &system_conf,
        &std::fs::read_to_string(Repo::checkout().path(&system_conf)).unwrap(),
    );
    write("keys/id_ed25519.pub", PUBLIC_KEY);
    write("keys/id_ed25519", PRIVATE_KEY);
    common::commit_all(root, "stand-in");
}

/// An earlier build's output folder, finished markers included.
fn earlier_output(output: &Path) {
    std::fs::create_dir_all(output.join("images")).unwrap();
    std::fs::write(output.join(".config"), "").unwrap();
    std::fs::write(output.join("images/SHA256SUMS"), "old\n").unwrap();
    std::fs::write(output.join("images/manifest.toml"), "old\n").unwrap();
}

/// `cargo xtask image` on the checkout at `repo` on `host`, through the library: the error it
/// returns, as the command line would print it.
fn image_error(repo: &Path, args: ImageArgs, host: &Host) -> String {
    let err = image::run(&Repo::at(repo), args, host).expect_err("image must fail on this input");
    format!("{err:#}")
}

/// A host whose user's home folder is `home`, and nothing else.
fn home_host(home: Option<&Path>) -> Host {
    Host {
        home: home.map(Path::to_path_buf),
        ..Host::default()
    }
}

/// A home folder with nothing in it.
fn empty_home(dir: &Path) -> PathBuf {
    let home = dir.join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

#[test]
fn a_private_key_is_refused_before_anything_is_touched() {
    if !common::have_tool(
        "a_private_key_is_refused_before_anything_is_touched",
        "git",
        "git",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, output) = (dir.path().join("repo"), dir.path().join("out"));
    fake_repo(&repo);
    earlier_output(&output);
    let args = ImageArgs {
        output: Some(output.clone()),
        ssh_authorized_keys: Some(repo.join("keys/id_ed25519")),
        ..ImageArgs::default()
    };
    let err = image_error(&repo, args, &home_host(Some(&empty_home(dir.path()))));
    assert!(err.contains("holds a PRIVATE key"), "{err}");
    assert!(
        output.join("images/SHA256SUMS").exists(),
        "bad input must not remove an earlier build's files"
    );
}

#[test]
fn without_a_key_it_says_how_to_give_or_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    // A private key alone is not taken for the public one.
    std::fs::write(home.join(".ssh/id_ed25519"), "private").unwrap();
    let err = image_error(dir.path(), ImageArgs::default(), &home_host(Some(&home)));
    assert!(
        err.contains("--ssh-authorized-keys FILE")
            && err.contains("berth.toml")
            && err.contains("ssh-keygen -t ed25519"),
        "{err}"
    );
}

#[test]
fn without_a_key_setting_it_takes_the_users_own_public_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    common::write_file(&home.join(".ssh/id_ecdsa.pub"), "not a key\n", 0o644);
    common::write_file(&home.join(".ssh/id_rsa.pub"), PUBLIC_KEY, 0o644);
    // id_ecdsa.pub comes first in the order: its bad content is reported, naming it.
    let err = image_error(dir.path(), ImageArgs::default(), &home_host(Some(&home)));
    assert!(
        err.contains(&format!(
            "{}:1 is not an OpenSSH public key line",
            home.join(".ssh/id_ecdsa.pub").display()
        )),
        "{err}"
    );

    std::fs::remove_file(home.join(".ssh/id_ecdsa.pub")).unwrap();
    common::write_file(&home.join(".ssh/id_ed25519.pub"), PUBLIC_KEY, 0o644);
    // dir has no defconfig, so the run stops right after the SSH step: far enough here.
    let err = image_error(dir.path(), ImageArgs::default(), &home_host(Some(&home)));
    assert!(err.contains("has no defconfig at"), "{err}");
}

#[test]
fn berth_toml_is_read_and_the_flag_wins() {
    if !common::have_tool("berth_toml_is_read_and_the_flag_wins", "git", "git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fake_repo(&repo);
    std::fs::write(
        repo.join("berth.toml"),
        "ssh_authorized_keys = \"keys/id_ed25519\"\nboard = \"odroid-xu4\"\n",
    )
    .unwrap();
    let home = home_host(Some(&empty_home(dir.path())));
    // From berth.toml, relative to the repository: the private key is found and refused.
    let err = image_error(&repo, ImageArgs::default(), &home);
    assert!(
        err.contains(&format!(
            "{} holds a PRIVATE key",
            repo.join("keys/id_ed25519").display()
        )),
        "{err}"
    );
    // The flag overrides it; the public key passes, and the run stops later on a missing defconfig.
    std::fs::remove_file(repo.join("configs/berth_odroid_xu4_defconfig")).unwrap();
    let args = ImageArgs {
        ssh_authorized_keys: Some(repo.join("keys/id_ed25519.pub")),
        ..ImageArgs::default()
    };
    let err = image_error(&repo, args, &home);
    assert!(err.contains("has no defconfig at"), "{err}");
    // A misspelled key is an error naming the file.
    std::fs::write(
        repo.join("berth.toml"),
        "ssh_authorised_keys = \"keys/id_ed25519.pub\"\n",
    )
    .unwrap();
    let err = image_error(&repo, ImageArgs::default(), &home);
    assert!(
        err.contains("berth.toml is not a valid Berth configuration"),
        "{err}"
    );
}

#[test]
fn an_unknown_board_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pub");
    std::fs::write(&key, PUBLIC_KEY).unwrap();
    let args = ImageArgs {
        board: Some("odroid-c4".into()),
        ssh_authorized_keys: Some(key),
        ..ImageArgs::default()
    };
    let err = image_error(dir.path(), args, &Host::default());
    assert!(err.contains("unknown board 'odroid-c4'"), "{err}");
}

#[test]
fn a_bad_apps_file_is_refused_before_buildroot_is_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pub");
    std::fs::write(&key, PUBLIC_KEY).unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::write(
        &apps,
        "[[app]]\nname = \"web\"\nimage = \"docker.io/library/nginx:1.27\"\n",
    )
    .unwrap();
    let output = dir.path().join("out");
    let args = ImageArgs {
        ssh_authorized_keys: Some(key),
        apps: Some(apps),
        output: Some(output.clone()),
        ..ImageArgs::default()
    };
    // The host has no cache and names no Buildroot: reaching Buildroot would fail on that.
    let err = image_error(Repo::checkout().root(), args, &Host::default());
    assert!(
        err.contains("apps.toml:3") && err.contains("digest"),
        "{err}"
    );
    assert!(
        !output.exists(),
        "the output folder was made before the apps were checked"
    );
}

/// A proxy address nobody listens on, to cut this machine off when it does have network.
fn dead_proxy() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn online() -> bool {
    ("sources.buildroot.net", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

/// A host cut off from the network: Berth's cache folder in `cache`, the Buildroot tree
/// `buildroot` (None: the cache's clone), no home, and, when this machine does have network,
/// every download sent to a closed port, so a test never starts a real build.
fn offline_host(cache: &Path, buildroot: Option<PathBuf>) -> Host {
    let mut vars = BTreeMap::new();
    if online() {
        let proxy = dead_proxy();
        for var in ["http_proxy", "https_proxy", "ftp_proxy"] {
            vars.insert(var.to_string(), proxy.clone());
        }
    }
    Host {
        home: None,
        cache: Some(cache.join("berth")),
        buildroot,
        vars,
        ..Host::default()
    }
}

/// The files under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect()
}

/// The error of `image` on `repo` and `host`, or None after a printed skip when this host lacks
/// what Buildroot needs.
fn image_error_unless_unprepared(
    test: &str,
    repo: &Repo,
    args: ImageArgs,
    host: &Host,
) -> Option<String> {
    let err = format!(
        "{:#}",
        image::run(repo, args, host).expect_err("image must fail without network")
    );
    if err.contains("lacks what Buildroot needs") {
        common::skip(
            test,
            &format!(
                "host prerequisites missing: {}",
                err.lines().last().unwrap_or("")
            ),
        );
        return None;
    }
    Some(err)
}

/// Run `cargo xtask image` for `repo` cut off from the network; check it fails fast, names what
/// it could not fetch, and leaves no finished markers. Fast means: the network preflight stops
/// the run after Buildroot configured the output folder and before it built or downloaded
/// anything (a wall-clock bound would measure the machine's load, not the xtask).
fn offline_image_fails_fast(test: &str, repo: &Repo, must_name: &[&str]) {
    let Some(buildroot) = common::buildroot_tree(test) else {
        return;
    };
    if !common::have_tool(test, "git", "git") || !common::have_tool(test, "make", "make") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (output, cache, key) = (
        dir.path().join("out"),
        dir.path().join("cache"),
        dir.path().join("key.pub"),
    );
    std::fs::write(&key, PUBLIC_KEY).unwrap();
    earlier_output(&output);
    let args = ImageArgs {
        output: Some(output.clone()),
        ssh_authorized_keys: Some(key),
        ..ImageArgs::default()
    };
    let host = offline_host(&cache, Some(buildroot));
    let Some(err) = image_error_unless_unprepared(test, repo, args, &host) else {
        return;
    };
    assert!(
        err.contains("cannot fetch the sources this build needs"),
        "{err}"
    );
    for name in must_name {
        assert!(
            err.contains(name),
            "names {name} among what it could not fetch:\n{err}"
        );
    }
    assert!(
        err.contains("Unreachable: "),
        "names the hosts tried:\n{err}"
    );
    let dl = cache.join("berth/dl");
    assert!(
        err.contains(&dl.display().to_string()),
        "names the download cache:\n{err}"
    );
    for stale in [
        "SHA256SUMS",
        "manifest.toml",
        "SHA256SUMS.partial",
        "manifest.toml.partial",
    ] {
        assert!(
            !output.join("images").join(stale).exists(),
            "{stale} must not survive a failed build"
        );
    }
    assert!(
        output.join(".config").metadata().unwrap().len() > 0,
        "Buildroot configured the output folder"
    );
    // Buildroot's configuration tools live in build/buildroot-config; a package step would
    // leave a `.stamp_*` file in its build folder.
    let stamps: Vec<PathBuf> = files_under(&output.join("build"))
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".stamp_")
        })
        .collect();
    assert!(
        !output.join("build.log").exists() && stamps.is_empty(),
        "the preflight stops the run before the build starts: {stamps:?}"
    );
    assert_eq!(
        files_under(&dl),
        Vec::<PathBuf>::new(),
        "nothing was downloaded"
    );
}

#[test]
fn without_network_a_minimal_build_fails_fast_and_leaves_no_finished_image() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    if common::have_tool(
        "without_network_a_minimal_build_fails_fast_and_leaves_no_finished_image",
        "git",
        "git",
    ) {
        fake_repo(&repo);
    }
    offline_image_fails_fast(
        "without_network_a_minimal_build_fails_fast_and_leaves_no_finished_image",
        &Repo::at(&repo),
        &["toolchain-external-bootlin/armv7-eabihf--glibc--"],
    );
}

#[test]
fn without_network_the_berth_image_fails_fast_and_leaves_no_finished_image() {
    let test = "without_network_the_berth_image_fails_fast_and_leaves_no_finished_image";
    let repo = Repo::checkout();
    if !repo.path("configs/berth_odroid_xu4_defconfig").is_file() {
        common::skip(
            test,
            "configs/berth_odroid_xu4_defconfig is not in this checkout",
        );
        return;
    }
    offline_image_fails_fast(
        test,
        &repo,
        &["toolchain-external-bootlin/armv7-eabihf--glibc--stable-"],
    );
}

#[test]
fn without_network_or_a_buildroot_tree_it_fails_fast_naming_the_upstream() {
    offline_fetch_fails_fast(
        "without_network_or_a_buildroot_tree_it_fails_fast_naming_the_upstream",
        |_| {},
        &format!(
            "there is no Buildroot {} in the cache",
            xtask::project::BUILDROOT_RELEASE
        ),
    );
}

#[test]
fn a_partial_cache_clone_is_fetched_again_not_used() {
    offline_fetch_fails_fast(
        "a_partial_cache_clone_is_fetched_again_not_used",
        |cache| {
            // What an interrupted fetch leaves: a tree that looks right, no completion marker.
            let version = xtask::project::BUILDROOT_VERSION.to_string();
            let tree = cache.join(format!("berth/buildroot-{}", xtask::project::BUILDROOT_REF));
            std::fs::create_dir_all(&tree).unwrap();
            std::fs::write(
                tree.join("Makefile"),
                format!("export BR2_VERSION := {version}\n"),
            )
            .unwrap();
        },
        "is incomplete (an interrupted fetch?)",
    );
}

/// With the cache as `prepare` leaves it and no network, `image` tries to fetch Buildroot, fails
/// fast saying why (`reason`) and naming the upstream, and leaves no tree and no finished image.
/// Fast means: it stops at the fetch, before it creates the output folder.
fn offline_fetch_fails_fast(test: &str, prepare: impl Fn(&Path), reason: &str) {
    if !common::have_tool(test, "git", "git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, output, cache) = (
        dir.path().join("repo"),
        dir.path().join("out"),
        dir.path().join("cache"),
    );
    fake_repo(&repo);
    prepare(&cache);
    let args = ImageArgs {
        output: Some(output.clone()),
        ssh_authorized_keys: Some(repo.join("keys/id_ed25519.pub")),
        ..ImageArgs::default()
    };
    let host = offline_host(&cache, None);
    let Some(err) = image_error_unless_unprepared(test, &Repo::at(&repo), args, &host) else {
        return;
    };
    assert!(
        err.contains(&format!(
            "could not fetch Buildroot {} from https://",
            xtask::project::BUILDROOT_RELEASE
        )),
        "{err}"
    );
    assert!(err.contains("--buildroot DIR"), "{err}");
    assert!(err.contains(reason), "{err}");
    assert!(
        !cache
            .join(format!("berth/buildroot-{}", xtask::project::BUILDROOT_REF))
            .exists(),
        "no partial tree is left to be mistaken for a cache"
    );
    assert!(
        !output.exists(),
        "the run stopped at the fetch, before it touched the output folder"
    );
}
