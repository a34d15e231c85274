//! `cargo xtask image` end to end, short of a real build: bad settings and keys fail before any
//! long work and touch nothing; with a real Buildroot and no network it fails fast, naming what
//! it could not fetch, and leaves nothing that looks like a finished image.

mod common;

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xtask::image::{self, ImageArgs};
use xtask::project::Repo;

const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0b3hYbEtWc3Jtc0N6b2ZxVnVGbUJ6a0hUa1ZvRHVx test@berth\n";
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
        &std::fs::read_to_string(common::repo_root().join("board/odroid-xu4/genimage.cfg"))
            .unwrap(),
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

/// `cargo xtask image` on the checkout at `repo` for a user whose home is `home`, through the
/// library: the error it returns, as the command line would print it.
fn image_error(repo: &Path, args: ImageArgs, home: Option<&Path>) -> String {
    let err = image::run_for_home(&Repo::at(repo), args, home)
        .expect_err("image must fail on this input");
    format!("{err:#}")
}

/// A home folder with nothing in it.
fn empty_home(dir: &Path) -> PathBuf {
    let home = dir.join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// `cargo xtask image` as a separate process on the checkout at `repo`, for the tests that cut
/// the network off through the environment of the processes it starts.
fn image(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = common::xtask();
    cmd.env("BERTH_REPO_ROOT", repo)
        .env_remove("BERTH_BUILDROOT")
        .arg("image")
        .args(args);
    cmd
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
    let err = image_error(&repo, args, Some(&empty_home(dir.path())));
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
    let err = image_error(dir.path(), ImageArgs::default(), Some(&home));
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
    let err = image_error(dir.path(), ImageArgs::default(), Some(&home));
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
    let err = image_error(dir.path(), ImageArgs::default(), Some(&home));
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
    let home = empty_home(dir.path());
    // From berth.toml, relative to the repository: the private key is found and refused.
    let err = image_error(&repo, ImageArgs::default(), Some(&home));
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
    let err = image_error(&repo, args, Some(&home));
    assert!(err.contains("has no defconfig at"), "{err}");
    // A misspelled key is an error naming the file.
    std::fs::write(
        repo.join("berth.toml"),
        "ssh_authorised_keys = \"keys/id_ed25519.pub\"\n",
    )
    .unwrap();
    let err = image_error(&repo, ImageArgs::default(), Some(&home));
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
    let err = image_error(dir.path(), args, None);
    assert!(err.contains("unknown board 'odroid-c4'"), "{err}");
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

/// Run `cargo xtask image` for `repo` (None: the real repository) cut off from the network;
/// check it fails fast, names what it could not fetch, and leaves no finished markers.
fn offline_image_fails_fast(test: &str, repo: Option<&Path>, must_name: &[&str]) {
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
    let mut cmd = common::xtask();
    if let Some(repo) = repo {
        cmd.env("BERTH_REPO_ROOT", repo);
    }
    cmd.args([
        "image",
        "--output",
        output.to_str().unwrap(),
        "--ssh-authorized-keys",
        key.to_str().unwrap(),
    ])
    .env("BERTH_BUILDROOT", &buildroot)
    .env("XDG_CACHE_HOME", &cache);
    for var in [
        "http_proxy",
        "https_proxy",
        "ftp_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "FTP_PROXY",
    ] {
        cmd.env_remove(var);
    }
    if online() {
        // Never start a real build from a test: send every download to a closed port.
        let proxy = dead_proxy();
        cmd.env("http_proxy", &proxy)
            .env("https_proxy", &proxy)
            .env("ftp_proxy", &proxy);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let err = common::stderr_text(&out);
    if err.contains("lacks what Buildroot needs") {
        common::skip(
            test,
            &format!(
                "host prerequisites missing: {}",
                err.lines().last().unwrap_or("")
            ),
        );
        return;
    }
    assert!(!out.status.success(), "must fail without network:\n{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}:\n{err}");
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
    assert!(
        err.contains(&cache.join("berth/dl").display().to_string()),
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
        Some(&repo),
        &["toolchain-external-bootlin/armv7-eabihf--glibc--"],
    );
}

#[test]
fn without_network_the_berth_image_fails_fast_and_leaves_no_finished_image() {
    let test = "without_network_the_berth_image_fails_fast_and_leaves_no_finished_image";
    if !common::repo_root()
        .join("configs/berth_odroid_xu4_defconfig")
        .is_file()
    {
        common::skip(
            test,
            "configs/berth_odroid_xu4_defconfig is not in this checkout",
        );
        return;
    }
    offline_image_fails_fast(
        test,
        None,
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
    let mut cmd = image(&repo, &["--output", output.to_str().unwrap()]);
    cmd.env("XDG_CACHE_HOME", &cache)
        .arg("--ssh-authorized-keys")
        .arg(repo.join("keys/id_ed25519.pub"));
    for var in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
        cmd.env_remove(var);
    }
    if online() {
        let proxy = dead_proxy();
        cmd.env("http_proxy", &proxy).env("https_proxy", &proxy);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let err = common::stderr_text(&out);
    if err.contains("lacks what Buildroot needs") {
        common::skip(
            test,
            &format!(
                "host prerequisites missing: {}",
                err.lines().last().unwrap_or("")
            ),
        );
        return;
    }
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
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
    assert!(!output.join("images/SHA256SUMS").exists());
}
