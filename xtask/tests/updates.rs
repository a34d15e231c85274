//! Update bundles checked with RAUC's own tools (Debian's rauc 1.8), made by the xtask's code
//! (`xtask::rauc`, `xtask::image::signing`) from a real dm-verity slot image: a signed bundle is
//! accepted, one signed with another key, a truncated one and a corrupted one are refused, and a
//! bundle for another board is refused at install. The install runs RAUC's real service on a
//! private D-Bus with file slots, the bundle's slot hook and a logging bootloader backend, which
//! shows a slot whose check fails is never activated.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use xtask::image::signing::{self, SigningPair};
use xtask::rauc::{self, Rauc};
use xtask::release::{SYSTEM_ENV, SYSTEM_IMAGE};

const BOARD: &str = "odroid-xu4";
/// The build time every test bundle's squashfs takes, as a build's would.
const SOURCE_DATE_EPOCH: u64 = 1_784_143_200;

fn tools(test: &str) -> Option<Rauc> {
    for (tool, package) in [
        ("rauc", "rauc"),
        ("mksquashfs", "squashfs-tools"),
        ("openssl", "openssl"),
        ("veritysetup", "cryptsetup"),
    ] {
        if !common::have_tool(test, tool, package) {
            return None;
        }
    }
    Rauc::on_path()
}

fn run(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&common::run_ok(cmd).stdout).into_owned()
}

/// A slot image as post-image.sh makes it: data blocks, then their hash tree in the same file,
/// and the system.env that describes it (docs/updates.md, issue 13 contract).
fn slot_image(images: &Path) {
    std::fs::create_dir_all(images).unwrap();
    let blocks: u64 = 64;
    let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 7 % 251) as u8).collect();
    let image = images.join(SYSTEM_IMAGE);
    std::fs::write(&image, &data).unwrap();
    let salt = xtask::util::sha256_hex(&data);
    let out = run(Command::new("veritysetup")
        .args(["format", "--no-superblock", "--data-block-size=4096"])
        .args(["--hash-block-size=4096", "--hash=sha256"])
        .arg(format!("--salt={salt}"))
        .arg(format!("--hash-offset={}", blocks * 4096))
        .arg(&image)
        .arg(&image));
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .expect("veritysetup prints the root hash")
        .trim();
    std::fs::write(
        images.join(SYSTEM_ENV),
        format!(
            "berth_cmdline=console=ttySAC2,115200 panic=10\nberth_verity_sectors={}\n\
             berth_verity_data_blocks={blocks}\nberth_verity_hash_start={blocks}\n\
             berth_verity_root_hash={root}\nberth_verity_salt={salt}\n",
            blocks * 8
        ),
    )
    .unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    signing: SigningPair,
    rauc: Rauc,
}

impl Fixture {
    fn new(rauc: Rauc) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sh = xshell::Shell::new().unwrap();
        let signing = signing::resolve(&sh, None, &dir.path().join("output")).unwrap();
        slot_image(&dir.path().join("images"));
        Fixture { dir, signing, rauc }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A bundle as `cargo xtask image` makes it; `edit` may change the manifest text or the
    /// staged content first (tests of what the board refuses).
    fn bundle(&self, name: &str, compatible: &str, edit: impl Fn(&mut String, &Path)) -> PathBuf {
        let mut manifest = rauc::render_manifest(compatible, "0123456789ab", "test").unwrap();
        let content = self.path(&format!("{name}.content"));
        let board_dir = common::repo_root().join("board").join(BOARD);
        rauc::stage_content(&content, &self.path("images"), &board_dir, &manifest).unwrap();
        edit(&mut manifest, &content);
        std::fs::write(content.join(rauc::MANIFEST_FILE), &manifest).unwrap();
        let out = self.path(name);
        let sh = xshell::Shell::new().unwrap();
        let pair = (self.signing.key.as_path(), self.signing.cert.as_path());
        self.rauc
            .bundle(&sh, &content, pair, SOURCE_DATE_EPOCH, &out)
            .unwrap();
        out
    }

    fn check(&self, bundle: &Path, keyring: &Path) -> anyhow::Result<String> {
        self.rauc
            .check(&xshell::Shell::new().unwrap(), bundle, keyring)
    }
}

fn no_edit(_: &mut String, _: &Path) {}

#[test]
fn a_signed_bundle_is_accepted_and_one_from_another_key_refused() {
    let Some(rauc) = tools("a_signed_bundle_is_accepted_and_one_from_another_key_refused") else {
        return;
    };
    let f = Fixture::new(rauc);
    let bundle = f.bundle("good.raucb", &rauc::compatible(BOARD), no_edit);
    assert_eq!(
        f.check(&bundle, &f.signing.cert).unwrap(),
        "berth-odroid-xu4"
    );

    let sh = xshell::Shell::new().unwrap();
    let stranger = signing::resolve(&sh, None, &f.path("stranger")).unwrap();
    let err = format!("{:#}", f.check(&bundle, &stranger.cert).unwrap_err());
    assert!(err.contains("rauc refuses"), "{err}");
    // A bundle the stranger signed, checked with the board's keyring.
    let forged = Fixture {
        dir: tempfile::tempdir().unwrap(),
        signing: stranger,
        rauc: Rauc::on_path().unwrap(),
    };
    slot_image(&forged.path("images"));
    let forged_bundle = forged.bundle("forged.raucb", &rauc::compatible(BOARD), no_edit);
    assert!(f.check(&forged_bundle, &f.signing.cert).is_err());
}

/// The verity parameters of a bundle as `rauc info` prints them, and where its payload ends.
fn bundle_verity(bundle: &Path, keyring: &Path) -> (String, String, u64) {
    let text = run(Command::new("rauc")
        .arg(format!("--keyring={}", keyring.display()))
        .arg("info")
        .arg(bundle));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .trim_matches('\'')
            .to_string()
    };
    let bytes = std::fs::read(bundle).unwrap();
    let signature = u64::from_be_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
    let verity_size: u64 = field("Verity Size:").parse().unwrap();
    let payload = bytes.len() as u64 - 8 - signature - verity_size;
    (field("Verity Hash:"), field("Verity Salt:"), payload)
}

/// What the board's kernel does when RAUC mounts a verity bundle (dm-verity), done in user space
/// with veritysetup, as this machine has no device-mapper.
fn payload_verifies(bundle: &Path, hash: &str, salt: &str, payload: u64) -> bool {
    Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash=sha256"])
        .arg(format!("--data-blocks={}", payload / 4096))
        .arg(format!("--hash-offset={payload}"))
        .arg(format!("--salt={salt}"))
        .arg(bundle)
        .arg(bundle)
        .arg(hash)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn truncated_and_corrupted_bundles_are_refused() {
    let Some(rauc) = tools("truncated_and_corrupted_bundles_are_refused") else {
        return;
    };
    let f = Fixture::new(rauc);
    let bundle = f.bundle("good.raucb", &rauc::compatible(BOARD), no_edit);
    let good = std::fs::read(&bundle).unwrap();
    let (hash, salt, payload) = bundle_verity(&bundle, &f.signing.cert);
    assert!(payload_verifies(&bundle, &hash, &salt, payload));

    let truncated = f.path("truncated.raucb");
    for keep in [good.len() - 1, good.len() / 2, 4096] {
        std::fs::write(&truncated, &good[..keep]).unwrap();
        assert!(
            f.check(&truncated, &f.signing.cert).is_err(),
            "rauc accepted the bundle cut to {keep} of {} bytes",
            good.len()
        );
    }

    // A changed byte in the signed manifest (the signature's CMS data at the end) is refused
    // by rauc info; one in the payload, by the verity check the board's kernel makes on mount.
    let corrupt = f.path("corrupt.raucb");
    let mut bytes = good.clone();
    let in_signature = good.len() - 200;
    bytes[in_signature] ^= 0x01;
    std::fs::write(&corrupt, &bytes).unwrap();
    assert!(f.check(&corrupt, &f.signing.cert).is_err());
    let mut bytes = good.clone();
    bytes[(payload / 2) as usize] ^= 0x01;
    std::fs::write(&corrupt, &bytes).unwrap();
    assert!(!payload_verifies(&corrupt, &hash, &salt, payload));
}

/// RAUC's service on a private system bus, with a system.conf whose slots are files and whose
/// bootloader is a script logging what RAUC asks of it; killed when dropped.
struct Board {
    dir: PathBuf,
    bus: Child,
    service: Option<Child>,
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(service) = &mut self.service {
            let _ = service.kill();
            let _ = service.wait();
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

const BACKEND: &str = r#"#!/bin/sh
# RAUC's custom bootloader backend: records every call, keeps BOOT_ORDER-like state in files.
dir="$(dirname "$0")"
echo "$*" >>"$dir/bootloader.log"
case "$1" in
get-primary) cat "$dir/primary" ;;
set-primary) echo "$2" >"$dir/primary" ;;
get-state) cat "$dir/state-$2" 2>/dev/null || echo good ;;
set-state) echo "$3" >"$dir/state-$2" ;;
get-current) echo A ;;
esac
"#;

impl Board {
    fn start(dir: &Path, keyring: &Path) -> Board {
        std::fs::create_dir_all(dir).unwrap();
        let bus_conf = dir.join("bus.conf");
        let socket = dir.join("bus.socket");
        std::fs::write(
            &bus_conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>system</type>\
                 <listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow user=\"*\"/><allow own=\"*\"/><allow send_destination=\"*\"/>\
                 <allow receive_sender=\"*\"/></policy><include>{}</include></busconfig>\n",
                socket.display(),
                common::repo_root()
                    .join("board")
                    .join(BOARD)
                    .join("rootfs-overlay/etc/dbus-1/system.d/berth-rauc.conf")
                    .display()
            ),
        )
        .unwrap();
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", bus_conf.display()))
            .arg("--nofork")
            .spawn()
            .unwrap();
        for _ in 0..50 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        common::write_file(&dir.join("backend"), BACKEND, 0o755);
        std::fs::write(dir.join("primary"), "A\n").unwrap();
        for slot in ["slot-a", "slot-b"] {
            std::fs::write(dir.join(slot), vec![0u8; 1 << 20]).unwrap();
        }
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // The board's system.conf with its slots as files, and plain bundles: verity bundles are
        // opened with device-mapper, which this machine lacks (/dev/mapper/control).
        let board_conf = std::fs::read_to_string(
            common::repo_root()
                .join("board")
                .join(BOARD)
                .join(rauc::SYSTEM_CONF),
        )
        .unwrap();
        let conf = board_conf
            .replace("bootloader=uboot", "bootloader=custom")
            .replace(
                "data-directory=/data/rauc",
                &format!("data-directory={}", dir.join("data").display()),
            )
            .replace("bundle-formats=verity", "bundle-formats=plain")
            .replace(
                "path=/etc/rauc/keyring.pem",
                &format!("path={}", keyring.display()),
            )
            .replace(
                "/dev/disk/by-partuuid/be27d0c4-02",
                &dir.join("slot-a").display().to_string(),
            )
            .replace(
                "/dev/disk/by-partuuid/be27d0c4-03",
                &dir.join("slot-b").display().to_string(),
            )
            + &format!(
                "\n[handlers]\nbootloader-custom-backend={}\n",
                dir.join("backend").display()
            );
        assert!(
            conf.contains("bootloader=custom") && conf.contains("slot-b"),
            "{conf}"
        );
        std::fs::write(dir.join("system.conf"), conf).unwrap();
        let mut board = Board {
            dir: dir.to_path_buf(),
            bus,
            service: None,
        };
        let service = board
            .rauc()
            .arg("service")
            .arg("--override-boot-slot=A")
            .env("BERTH_BOOT_FIRMWARE", dir.join("boot"))
            .stdout(std::fs::File::create(dir.join("service.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("service.err")).unwrap())
            .spawn()
            .unwrap();
        board.service = Some(service);
        for _ in 0..50 {
            let up = board
                .rauc()
                .arg("status")
                .output()
                .unwrap()
                .status
                .success();
            if up {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        board
    }

    fn rauc(&self) -> Command {
        let mut cmd = Command::new("rauc");
        cmd.arg(format!("--conf={}", self.dir.join("system.conf").display()))
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", self.dir.join("bus.socket").display()),
            );
        cmd
    }

    fn install(&self, bundle: &Path) -> (bool, String) {
        let out = self.rauc().arg("install").arg(bundle).output().unwrap();
        (out.status.success(), common::output_text(&out))
    }

    fn slot_b_env(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("boot/slot-B.env")).ok()
    }

    fn bootloader_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bootloader.log")).unwrap_or_default()
    }
}

fn plain(manifest: &mut String, _: &Path) {
    *manifest = manifest.replace("format=verity", "format=plain");
}

#[test]
fn the_board_refuses_another_boards_bundle_and_activates_only_a_checked_slot() {
    let test = "the_board_refuses_another_boards_bundle_and_activates_only_a_checked_slot";
    let Some(rauc) = tools(test) else { return };
    if !common::is_root(test) || !common::have_tool(test, "dbus-daemon", "dbus-daemon") {
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        common::skip(
            test,
            "no /dev/loop-control (RAUC mounts a plain bundle on a loop device)",
        );
        return;
    }
    let f = Fixture::new(rauc);
    xtask::rauc::set_mode(f.dir.path(), 0o755).unwrap();
    let board = Board::start(&f.path("board"), &f.signing.cert);

    // The board's D-Bus policy: only root (and the hawkBit client's user) may talk to RAUC.
    if common::have_tool(test, "setpriv", "util-linux") {
        let out = board.rauc().arg("status").output().unwrap();
        assert!(out.status.success(), "{}", common::output_text(&out));
        let mut as_nobody = board.rauc();
        let program = as_nobody.get_program().to_owned();
        let args: Vec<_> = as_nobody.get_args().map(|a| a.to_owned()).collect();
        as_nobody = Command::new("setpriv");
        as_nobody
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .args(args)
            .arg("status")
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", board.dir.join("bus.socket").display()),
            );
        let out = as_nobody.output().unwrap();
        let text = common::output_text(&out);
        assert!(
            !out.status.success() && text.contains("Rejected send message"),
            "{text}"
        );
    }

    let other = f.bundle("other.raucb", "berth-other-board", plain);
    let (ok, text) = board.install(&other);
    assert!(!ok && text.contains("Compatible mismatch"), "{text}");
    assert_eq!(board.slot_b_env(), None);
    assert!(std::fs::read(board.dir.join("slot-b"))
        .unwrap()
        .iter()
        .all(|b| *b == 0));

    // The slot hook reads the written slot back through veritysetup against the bundle's
    // system.env: a root hash that does not match leaves the slot bad and inactive.
    let wrong = f.bundle(
        "wrong-hash.raucb",
        &rauc::compatible(BOARD),
        |m, content| {
            plain(m, content);
            let env = content.join(SYSTEM_ENV);
            let text = std::fs::read_to_string(&env).unwrap();
            std::fs::remove_file(&env).unwrap(); // a hard link to the images' file
            let changed: String = text
                .lines()
                .map(|l| match l.strip_prefix("berth_verity_root_hash=") {
                    Some(_) => format!("berth_verity_root_hash={}\n", "0".repeat(64)),
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&env, changed).unwrap();
        },
    );
    let (ok, text) = board.install(&wrong);
    assert!(!ok, "{text}");
    assert!(text.contains("failed to run slot hook"), "{text}");
    let service_err = std::fs::read_to_string(board.dir.join("service.err")).unwrap_or_default();
    assert!(
        service_err.contains("does not match the root hash in the bundle's system.env"),
        "{service_err}"
    );
    assert_eq!(board.slot_b_env(), None);
    let log = board.bootloader_log();
    assert!(
        log.contains("set-state B bad") && !log.contains("set-primary B"),
        "{log}"
    );

    let good = f.bundle("good.raucb", &rauc::compatible(BOARD), plain);
    let (ok, text) = board.install(&good);
    assert!(ok, "{text}");
    let image = std::fs::read(f.path("images").join(SYSTEM_IMAGE)).unwrap();
    let slot = std::fs::read(board.dir.join("slot-b")).unwrap();
    assert!(slot.starts_with(&image), "slot B does not hold system.img");
    assert_eq!(
        board.slot_b_env().as_deref(),
        Some(
            std::fs::read_to_string(f.path("images").join(SYSTEM_ENV))
                .unwrap()
                .as_str()
        )
    );
    assert!(!board.dir.join("boot/slot-B.env.partial").exists());
    assert!(
        board.bootloader_log().contains("set-primary B"),
        "{}",
        board.bootloader_log()
    );
}

/// rauc-hawkbit-updater v1.3's unit as Buildroot installs it: enabled by any preset that does not
/// say otherwise (Buildroot runs `systemctl preset-all` on the target).
const HAWKBIT_UNIT: &str = "[Unit]\nDescription=HawkBit client for Rauc\n\n[Service]\n\
    User=rauc-hawkbit\nExecStart=/usr/bin/rauc-hawkbit-updater -s -c /etc/rauc-hawkbit-updater/config.conf\n\n\
    [Install]\nWantedBy=multi-user.target\n";

#[test]
fn the_fleet_client_is_enabled_only_with_a_hawkbit_table() {
    let test = "the_fleet_client_is_enabled_only_with_a_hawkbit_table";
    if !common::have_tool(test, "systemctl", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let overlay = common::repo_root()
        .join("board")
        .join(BOARD)
        .join("rootfs-overlay");
    common::copy_tree(&overlay, &target);
    common::write_file(
        &target.join("usr/lib/systemd/system/rauc-hawkbit-updater.service"),
        HAWKBIT_UNIT,
        0o644,
    );
    let preset_all = |root: &Path| {
        run(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .arg("preset-all"));
    };
    let wants = target.join("etc/systemd/system/multi-user.target.wants");
    // The links point into the target's own root, so they dangle here: look at the links.
    let linked = |link: &Path| link.symlink_metadata().is_ok();
    let hawkbit_link = wants.join("rauc-hawkbit-updater.service");

    preset_all(&target);
    assert!(
        !linked(&hawkbit_link),
        "the fleet client is enabled without [hawkbit]"
    );
    assert!(linked(&wants.join("berth-rauc-mark-good.service")));
    assert!(linked(&target.join(
        "etc/systemd/system/local-fs.target.wants/boot-firmware.automount"
    )));

    // With [hawkbit], the staged files are copied in as post-build.sh does.
    let token = dir.path().join("token");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&token, "cb115a72\n").unwrap();
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let table = xtask::image::hawkbit::HawkbitTable {
        server: Some("https://hawkbit.example.net".into()),
        target_name: Some("xu4-07".into()),
        auth_token_file: Some(token),
        ca_file: Some(ca),
        tenant: None,
    };
    let hawkbit = table.complete(|p| Ok(p.to_path_buf())).unwrap();
    let staged = dir.path().join("staged");
    xtask::image::hawkbit::stage(&hawkbit, &staged).unwrap();
    common::copy_tree(&staged, &target);
    preset_all(&target);
    assert!(
        linked(&hawkbit_link),
        "[hawkbit] did not enable the fleet client"
    );
}

/// An artifact folder holding `bundle` as this build's bundle and `keyring` as its certificate,
/// sealed as `cargo xtask image` seals one.
fn sealed_folder(dir: &Path, bundle: &Path, keyring: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let name = xtask::release::bundle_name(
        &xtask::release::version("0123456789abcdef0123456789abcdef01234567", false),
        BOARD,
    );
    std::fs::copy(bundle, dir.join(&name)).unwrap();
    std::fs::copy(keyring, dir.join(xtask::release::KEYRING_FILE)).unwrap();
    let mut manifest = String::from(
        "[berth]\ncommit = \"0123456789abcdef0123456789abcdef01234567\"\ndirty = false\n\
         board = \"odroid-xu4\"\nsource_date_epoch = 1\n\n\
         [buildroot]\nversion = \"2025.02.x LTS\"\ncommit = \"1ef39b9196e0a5979581187f15fd665ca390c2a0\"\n\n\
         [defconfig]\npath = \"configs/berth_odroid_xu4_defconfig\"\nsha256 = \"00\"\n\n\
         [toolchain]\nkind = \"external\"\nhardening = []\n\n\
         [system_image]\nsize = 314572800\nbudget = 536870912\nslot = 805306368\n",
    );
    let mut sums = Vec::new();
    for file in [name.as_str(), xtask::release::KEYRING_FILE] {
        let path = dir.join(file);
        let sha256 = xtask::util::sha256_file(&path).unwrap();
        manifest += &format!(
            "\n[[artifact]]\nname = \"{file}\"\nsize = {}\nsha256 = \"{sha256}\"\n",
            std::fs::metadata(&path).unwrap().len()
        );
        sums.push(xtask::release::SumEntry {
            sha256,
            name: file.into(),
        });
    }
    std::fs::write(dir.join(xtask::release::MANIFEST_FILE), &manifest).unwrap();
    sums.push(xtask::release::SumEntry {
        sha256: xtask::util::sha256_hex(manifest.as_bytes()),
        name: xtask::release::MANIFEST_FILE.into(),
    });
    std::fs::write(
        dir.join(xtask::release::SUMS_FILE),
        xtask::release::render_sums(&sums),
    )
    .unwrap();
}

#[test]
fn verify_checks_the_bundle_signature_with_the_folders_keyring() {
    let Some(rauc) = tools("verify_checks_the_bundle_signature_with_the_folders_keyring") else {
        return;
    };
    let f = Fixture::new(rauc);
    let bundle = f.bundle("good.raucb", &rauc::compatible(BOARD), no_edit);
    let good = f.path("release");
    sealed_folder(&good, &bundle, &f.signing.cert);
    xtask::verify::verify_folder(&good, None).unwrap();

    // Every digest agrees, but the certificate is not the one that signed the bundle.
    let sh = xshell::Shell::new().unwrap();
    let stranger = signing::resolve(&sh, None, &f.path("stranger")).unwrap();
    let forged = f.path("forged");
    sealed_folder(&forged, &bundle, &stranger.cert);
    let err = format!(
        "{:#}",
        xtask::verify::verify_folder(&forged, None).unwrap_err()
    );
    assert!(
        err.contains("does not verify") && err.contains("rauc refuses"),
        "{err}"
    );

    // A bundle for another board, signed by the right key.
    let other = f.bundle("other.raucb", "berth-other-board", no_edit);
    let wrong_board = f.path("wrong-board");
    sealed_folder(&wrong_board, &other, &f.signing.cert);
    let err = format!(
        "{:#}",
        xtask::verify::verify_folder(&wrong_board, None).unwrap_err()
    );
    assert!(err.contains("is for berth-other-board"), "{err}");
}

#[test]
fn the_slot_hook_writes_the_boot_environment_only_for_a_matching_slot() {
    let test = "the_slot_hook_writes_the_boot_environment_only_for_a_matching_slot";
    if !common::have_tool(test, "veritysetup", "cryptsetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    slot_image(&bundle);
    let boot = dir.path().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("slot-B.env"), "old\n").unwrap();
    let hook = |step: &str, slot: &Path| {
        let out = Command::new(
            common::repo_root()
                .join("board")
                .join(BOARD)
                .join(rauc::HOOK_SOURCE),
        )
        .arg(step)
        .env("BERTH_BOOT_FIRMWARE", &boot)
        .env("RAUC_SLOT_BOOTNAME", "B")
        .env("RAUC_SLOT_DEVICE", slot)
        .env("RAUC_BUNDLE_MOUNT_POINT", &bundle)
        .output()
        .unwrap();
        (out.status.success(), common::output_text(&out))
    };
    let slot = bundle.join(SYSTEM_IMAGE);
    let (ok, text) = hook("slot-pre-install", &slot);
    assert!(ok && !boot.join("slot-B.env").exists(), "{text}");

    let env = std::fs::read_to_string(bundle.join(SYSTEM_ENV)).unwrap();
    let (ok, text) = hook("slot-post-install", &slot);
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read_to_string(boot.join("slot-B.env")).unwrap(),
        env
    );

    // One changed byte in the written slot, or a system.env that is not one value per name.
    std::fs::remove_file(boot.join("slot-B.env")).unwrap();
    let mut bytes = std::fs::read(&slot).unwrap();
    bytes[5000] ^= 0x80;
    let changed = dir.path().join("changed.img");
    std::fs::write(&changed, &bytes).unwrap();
    let (ok, text) = hook("slot-post-install", &changed);
    assert!(
        !ok && text.contains("does not match the root hash"),
        "{text}"
    );
    assert!(!boot.join("slot-B.env").exists());
    for bad in [
        format!("{env}berth_verity_data_blocks=1\n"),
        env.replace("berth_verity_sectors=512", "berth_verity_sectors=511"),
        env.replace("berth_verity_salt=", "berth_verity_salt=x"),
    ] {
        std::fs::write(bundle.join(SYSTEM_ENV), &bad).unwrap();
        let (ok, text) = hook("slot-post-install", &slot);
        assert!(!ok && text.contains("berth bundle hook"), "{bad}\n{text}");
        assert!(!boot.join("slot-B.env").exists());
    }
}

#[test]
fn two_signings_of_one_build_differ_only_by_their_signature() {
    let Some(rauc) = tools("two_signings_of_one_build_differ_only_by_their_signature") else {
        return;
    };
    let f = Fixture::new(rauc);
    let first = f.bundle("first.raucb", &rauc::compatible(BOARD), no_edit);
    let second = f.bundle("second.raucb", &rauc::compatible(BOARD), no_edit);
    assert_ne!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "two signatures came out the same: the test shows nothing"
    );
    assert!(xtask::diff::signed::same_signed_content(&first, &second).unwrap());
    // Other content is still a difference.
    let other = f.bundle("other.raucb", "berth-other-board", no_edit);
    assert!(!xtask::diff::signed::same_signed_content(&first, &other).unwrap());

    // cargo xtask diff on two sealed folders: the bundles' rows in SHA256SUMS and the manifest
    // differ, the signed content does not.
    let sh = xshell::Shell::new().unwrap();
    let diff = |a: &Path, b: &Path| {
        let scratch = tempfile::tempdir().unwrap();
        xtask::diff::compare_outputs(&sh, a, b, scratch.path(), false).unwrap()
    };
    let (a, b, c) = (f.path("a"), f.path("b"), f.path("c"));
    sealed_folder(&a, &first, &f.signing.cert);
    sealed_folder(&b, &second, &f.signing.cert);
    sealed_folder(&c, &other, &f.signing.cert);
    assert_eq!(diff(&a, &b), Vec::new());
    let found = diff(&a, &c);
    assert!(
        found.iter().any(|d| d.path.ends_with(".raucb")),
        "{found:?}"
    );
}
