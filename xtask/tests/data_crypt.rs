//! The first-boot script of berth-data-crypt, run for real against a 64 MiB loop device with
//! cryptsetup (as root). Configuration, device, mapping name and LUKS options come from the
//! environment overrides the script honours, so no board is needed. Steps that need the kernel's
//! device-mapper (opening, formatting, mounting) run only where it works, and say so otherwise.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SIZE: u64 = 64 << 20;
/// LUKS2's default header area; everything the script must never touch when it stops.
const HEADER_BYTES: usize = 16 << 20;

fn script() -> PathBuf {
    common::repo_root().join("br2-external/package/berth-data-crypt/berth-data-crypt")
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loop device over a sparse file, its mapping name and a key folder; all undone on drop,
/// even when an assertion fails.
struct Rig {
    dir: tempfile::TempDir,
    device: String,
    name: String,
    mountpoint: PathBuf,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("data.img");
        fs::File::create(&backing).unwrap().set_len(SIZE).unwrap();
        let out = ok(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing));
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = format!("berth-test-{tag}-{}", std::process::id());
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        fs::write(keys.join("berth-data.key"), b"correct horse battery staple").unwrap();
        fs::write(
            dir.path().join("data-crypt.conf"),
            format!(
                "KEY_POLICY=keyfile\nKEY_DEVICE={}\nKEY_FILE_NAME=berth-data.key\nBOARD_ID_FILE=\n",
                keys.display()
            ),
        )
        .unwrap();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        Rig {
            dir,
            device,
            name,
            mountpoint,
        }
    }

    fn boot(&self) -> Output {
        Command::new("sh")
            .arg(script())
            .env(
                "BERTH_DATA_CRYPT_CONF",
                self.dir.path().join("data-crypt.conf"),
            )
            .env("BERTH_DATA_DEVICE", &self.device)
            .env("BERTH_DATA_NAME", &self.name)
            .env("BERTH_RUNTIME_DIR", self.dir.path())
            // Fast key derivation for tests only; the board uses cryptsetup's defaults.
            .env(
                "BERTH_LUKS_OPTIONS",
                "--pbkdf pbkdf2 --pbkdf-force-iterations 1000",
            )
            .output()
            .unwrap()
    }

    /// Boot, and assert that the script stopped with `why` in its message and left the header
    /// as it was; the message, for more checks.
    fn boot_refuses(&self, why: &str) -> String {
        let before = self.head();
        let out = self.boot();
        let message = common::stderr_text(&out);
        assert!(!out.status.success(), "{message}");
        assert!(message.contains(why), "{message}");
        assert_eq!(
            self.head(),
            before,
            "the header changed although the script stopped"
        );
        message
    }

    fn set_key(&self, key: &[u8]) {
        fs::write(self.dir.path().join("keys/berth-data.key"), key).unwrap();
    }

    fn head(&self) -> Vec<u8> {
        let mut bytes = fs::read(self.dir.path().join("data.img")).unwrap();
        bytes.truncate(HEADER_BYTES);
        bytes
    }

    fn write_at_start(&self, bytes: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join("data.img"))
            .unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(bytes).unwrap();
    }

    fn mapper(&self) -> PathBuf {
        Path::new("/dev/mapper").join(&self.name)
    }

    fn close(&self) {
        let _ = Command::new("umount").arg(&self.mountpoint).output();
        if self.mapper().exists() {
            let _ = Command::new("cryptsetup")
                .args(["close", &self.name])
                .output();
        }
    }

    fn is_luks2(&self) -> bool {
        let dump = Command::new("cryptsetup")
            .args(["luksDump", &self.device])
            .output()
            .unwrap();
        dump.status.success()
            && String::from_utf8_lossy(&dump.stdout)
                .lines()
                .any(|l| l.starts_with("Version:") && l.split_whitespace().nth(1) == Some("2"))
    }

    fn luks_label(&self) -> String {
        let out = Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "LABEL", &self.device])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn key_opens(&self, key: &[u8]) -> bool {
        let file = self.dir.path().join("probe.key");
        fs::write(&file, key).unwrap();
        Command::new("cryptsetup")
            .args(["open", "--test-passphrase", "--key-file"])
            .arg(&file)
            .arg(&self.device)
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.close();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

fn usable(test: &str) -> bool {
    common::is_root(test)
        && common::have_tool(test, "cryptsetup", "cryptsetup")
        && common::have_tool(test, "losetup", "mount")
        && common::have_tool(test, "mkfs.ext4", "e2fsprogs")
        && common::have_tool(test, "blkid", "util-linux")
}

fn device_mapper_works(test: &str) -> bool {
    let works = Command::new("dmsetup")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !works {
        common::skip(
            test,
            "kernel device-mapper unavailable here: opening, formatting and mounting not run",
        );
    }
    works
}

#[test]
fn first_boot_creates_luks2_then_later_boots_open_it() {
    let test = "first_boot_creates_luks2_then_later_boots_open_it";
    if !usable(test) {
        return;
    }
    let rig = Rig::new("boot");
    // The image ships the blank marker at the start of the data partition so a reused card is still "blank".
    rig.write_at_start(b"BERTH_DATA_BLANK");
    let first = rig.boot();
    assert!(
        rig.is_luks2(),
        "first boot made no LUKS2 volume: {}",
        common::stderr_text(&first)
    );
    assert!(rig.key_opens(b"correct horse battery staple"));
    assert!(!rig.key_opens(b"wrong"));
    assert!(
        common::stderr_text(&first).contains("first boot"),
        "{}",
        common::stderr_text(&first)
    );
    if !device_mapper_works(test) {
        // Without dm-crypt the script must stop after the header, with its message, and the
        // label must still say the filesystem is not made, so the next boot finishes the job.
        assert!(!first.status.success());
        assert!(
            common::stderr_text(&first).contains("STOPPED"),
            "{}",
            common::stderr_text(&first)
        );
        assert_eq!(rig.luks_label(), "berth-data-new");
        return;
    }
    assert!(first.status.success(), "{}", common::stderr_text(&first));
    assert_eq!(rig.luks_label(), "berth-data");
    let blkid = ok(Command::new("blkid")
        .args(["-o", "export"])
        .arg(rig.mapper()));
    let blkid = String::from_utf8_lossy(&blkid.stdout).into_owned();
    assert!(
        blkid.contains("TYPE=ext4") && blkid.contains("LABEL=berth-data"),
        "{blkid}"
    );
    // What data.mount does on the board.
    ok(Command::new("mount")
        .args(["-o", "noatime"])
        .arg(rig.mapper())
        .arg(&rig.mountpoint));
    fs::write(rig.mountpoint.join("kept"), b"container data").unwrap();
    rig.close();

    let header = rig.head();
    let second = rig.boot();
    assert!(second.status.success(), "{}", common::stderr_text(&second));
    assert!(
        !common::stderr_text(&second).contains("first boot"),
        "second boot formatted again"
    );
    ok(Command::new("mount").arg(rig.mapper()).arg(&rig.mountpoint));
    assert_eq!(
        fs::read(rig.mountpoint.join("kept")).unwrap(),
        b"container data"
    );
    rig.close();
    assert_eq!(rig.head(), header, "a normal boot changed the LUKS header");
}

#[test]
fn wrong_key_stops_and_changes_nothing() {
    let test = "wrong_key_stops_and_changes_nothing";
    if !usable(test) {
        return;
    }
    let rig = Rig::new("wrongkey");
    ok(Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
        ])
        .arg(rig.dir.path().join("keys/berth-data.key"))
        .arg(&rig.device));
    rig.set_key(b"a key from another card");
    let message = rig.boot_refuses("does not open the LUKS2 volume");
    assert!(message.contains("STOPPED"), "{message}");
    assert!(!message.contains("first boot"), "{message}");
    assert!(!rig.mapper().exists());
    assert!(
        rig.key_opens(b"correct horse battery staple"),
        "the original key no longer opens the volume"
    );

    // A missing key file stops the same way.
    fs::remove_file(rig.dir.path().join("keys/berth-data.key")).unwrap();
    rig.boot_refuses("no key file");
}

#[test]
fn partition_with_data_but_no_luks_header_is_never_formatted() {
    let test = "partition_with_data_but_no_luks_header_is_never_formatted";
    if !usable(test) {
        return;
    }
    // An ext4 filesystem (a signature blkid knows).
    let rig = Rig::new("ext4");
    ok(Command::new("mkfs.ext4")
        .args(["-q", "-L", "precious"])
        .arg(&rig.device));
    rig.boot_refuses("refusing to format");
    drop(rig);

    // Bytes no tool recognises: still not blank, still refused.
    let rig = Rig::new("raw");
    rig.write_at_start(b"\x01some application data that has no known signature");
    rig.boot_refuses("not blank");
    assert!(!rig.is_luks2());
}

/// Must match FORMATTING in the script: the last sector's mark of a first-boot format under way.
const FORMATTING: &[u8] = b"BERTH_DATA_FORMATTING";

impl Rig {
    fn last_sector(&self) -> Vec<u8> {
        let bytes = fs::read(self.dir.path().join("data.img")).unwrap();
        bytes[bytes.len() - 512..].to_vec()
    }

    fn write_last_sector(&self, bytes: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join("data.img"))
            .unwrap();
        f.seek(SeekFrom::Start(SIZE - 512)).unwrap();
        f.write_all(bytes).unwrap();
    }
}

/// The twin's power cuts during the first boot's format: cryptsetup wipes the header areas
/// (zeros, then random key slot area) before it writes the header, so a cut, or a failed header
/// write, left a partition that was neither blank nor LUKS2, refused on every later boot.
#[test]
fn a_first_boot_format_cut_short_is_started_again_and_a_finished_one_leaves_no_mark() {
    let test = "a_first_boot_format_cut_short_is_started_again_and_a_finished_one_leaves_no_mark";
    if !usable(test) {
        return;
    }
    let rig = Rig::new("cut");
    rig.write_at_start(b"BERTH_DATA_BLANK");
    // What the format had done when the power went: the mark, then the wipe's random key slots.
    rig.write_last_sector(FORMATTING);
    let mut wiped = vec![0u8; 1 << 20];
    for (i, b) in wiped.iter_mut().enumerate().skip(32 << 10) {
        *b = (i * 131 % 251) as u8;
    }
    rig.write_at_start(&wiped);
    let out = rig.boot();
    let message = common::stderr_text(&out);
    assert!(
        message.contains("was cut short: starting it again") && message.contains("first boot"),
        "{message}"
    );
    assert!(rig.is_luks2(), "{message}");
    assert!(rig.key_opens(b"correct horse battery staple"), "{message}");
    assert_eq!(
        rig.last_sector(),
        vec![0u8; 512],
        "the mark outlived the format"
    );

    // The volume is finished (or waits only for its filesystem): no second format.
    let uuid = |rig: &Rig| {
        let out = ok(Command::new("cryptsetup").args(["luksUUID", &rig.device]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let made = uuid(&rig);
    let again = rig.boot();
    assert!(
        !common::stderr_text(&again).contains("first boot"),
        "{}",
        common::stderr_text(&again)
    );
    // Where device-mapper works the second boot also makes the filesystem; the rig closes it.
    assert_eq!(uuid(&rig), made, "the second boot made another volume");
    assert!(rig.key_opens(b"correct horse battery staple"));

    // Without the mark, the same wiped bytes are not blank: refused, untouched.
    let refused = Rig::new("nomark");
    refused.write_at_start(&wiped);
    refused.boot_refuses("not blank");
}

#[test]
fn script_passes_shellcheck() {
    let test = "script_passes_shellcheck";
    if !common::have_tool(test, "shellcheck", "shellcheck") {
        return;
    }
    ok(Command::new("shellcheck").arg(script()).arg(state_script()));
}

fn state_script() -> PathBuf {
    common::repo_root().join("br2-external/package/berth-data-crypt/berth-state")
}

/// berth-state on an empty data volume (a folder here) with the repository's state table.
fn lay_out_state(root: &Path, machine_id: &Path) -> Output {
    Command::new("sh")
        .arg(state_script())
        .env(
            "BERTH_STATE_TABLE",
            common::repo_root().join("configs/hardening/persistent-state.toml"),
        )
        .env("BERTH_STATE_ROOT", root)
        .env("BERTH_MACHINE_ID_FILE", machine_id)
        .output()
        .unwrap()
}

#[test]
fn berth_state_lays_out_the_declared_state_once() {
    use std::os::unix::fs::PermissionsExt;
    let test = "berth_state_lays_out_the_declared_state_once";
    if !common::have_tool(test, "ssh-keygen", "openssh-client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("data")).unwrap();
    let machine_id = dir.path().join("machine-id");
    fs::write(&machine_id, "0123456789abcdef0123456789abcdef\n").unwrap();
    let out = lay_out_state(&root, &machine_id);
    assert!(out.status.success(), "{}", common::stderr_text(&out));
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    // Every folder the table keeps on the data volume, with its mode; nothing for the boot
    // partition's entry, which is a device.
    for (folder, want) in [
        ("data/docker", 0o710),
        ("data/ssh", 0o700),
        ("data/network", 0o755),
        ("data/rauc", 0o700),
    ] {
        assert_eq!(mode(folder), want, "{folder}");
    }
    assert!(!root.join("dev").exists());
    assert_eq!(
        fs::read_to_string(root.join("data/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    let key = fs::read(root.join("data/ssh/ssh_host_ed25519_key")).unwrap();
    // A later boot, with another transient machine ID, changes nothing.
    fs::write(&machine_id, "fedcba9876543210fedcba9876543210\n").unwrap();
    let again = lay_out_state(&root, &machine_id);
    assert!(again.status.success(), "{}", common::stderr_text(&again));
    assert!(
        common::stderr_text(&again).is_empty(),
        "{}",
        common::stderr_text(&again)
    );
    assert_eq!(
        fs::read_to_string(root.join("data/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert_eq!(
        fs::read(root.join("data/ssh/ssh_host_ed25519_key")).unwrap(),
        key
    );
}

#[test]
fn a_configuration_naming_no_data_partition_stops_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("data-crypt.conf");
    fs::write(
        &conf,
        "KEY_POLICY=keyfile\nKEY_DEVICE=/nonexistent\nKEY_FILE_NAME=k\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(script())
        .env("BERTH_DATA_CRYPT_CONF", &conf)
        .env_remove("BERTH_DATA_DEVICE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = common::stderr_text(&out);
    assert!(message.contains("names no DATA_DEVICE"), "{message}");
    assert!(message.contains("STOPPED"), "{message}");
}

#[test]
fn board_id_policy_opens_only_with_the_same_board_id() {
    let test = "board_id_policy_opens_only_with_the_same_board_id";
    if !usable(test) {
        return;
    }
    let rig = Rig::new("boardid");
    let id = rig.dir.path().join("serial-number");
    fs::write(&id, b"exynos5422-0123456789abcdef\0").unwrap();
    fs::write(
        rig.dir.path().join("data-crypt.conf"),
        format!(
            "KEY_POLICY=board-id\nKEY_DEVICE=\nKEY_FILE_NAME=\nBOARD_ID_FILE={}\n",
            id.display()
        ),
    )
    .unwrap();
    let first = rig.boot();
    assert!(rig.is_luks2(), "{}", common::stderr_text(&first));
    rig.close();
    let before = rig.head();

    // The card in another board: another ID, so the volume stays closed and untouched.
    fs::write(&id, b"exynos5422-fedcba9876543210\0").unwrap();
    let out = rig.boot();
    assert!(!out.status.success());
    assert!(
        common::stderr_text(&out).contains("does not open"),
        "{}",
        common::stderr_text(&out)
    );
    assert_eq!(rig.head(), before);

    // No ID exposed by the bootloader: a clear stop, not a key made from nothing.
    fs::write(&id, b"").unwrap();
    let out = rig.boot();
    assert!(!out.status.success());
    assert!(
        common::stderr_text(&out).contains("missing or empty"),
        "{}",
        common::stderr_text(&out)
    );
    assert_eq!(rig.head(), before);
}

#[test]
fn passphrase_policy_asks_twice_on_first_boot_and_formats_nothing_on_a_mismatch() {
    let test = "passphrase_policy_asks_twice_on_first_boot_and_formats_nothing_on_a_mismatch";
    if !usable(test) {
        return;
    }
    let rig = Rig::new("pass");
    fs::write(
        rig.dir.path().join("data-crypt.conf"),
        "KEY_POLICY=passphrase\nKEY_DEVICE=\nKEY_FILE_NAME=\nBOARD_ID_FILE=\n",
    )
    .unwrap();
    // Stands in for systemd's console prompt: answers from a file, one line per question.
    let bin = rig.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let answers = rig.dir.path().join("answers");
    let prompt = bin.join("systemd-ask-password");
    fs::write(
        &prompt,
        format!(
            "#!/bin/sh\nhead -n 1 {0}\nsed -i 1d {0}\n",
            answers.display()
        ),
    )
    .unwrap();
    ok(Command::new("chmod").arg("+x").arg(&prompt));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let boot = |lines: &str| {
        fs::write(&answers, lines).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg(script())
            .env("PATH", &path)
            .env(
                "BERTH_DATA_CRYPT_CONF",
                rig.dir.path().join("data-crypt.conf"),
            )
            .env("BERTH_DATA_DEVICE", &rig.device)
            .env("BERTH_DATA_NAME", &rig.name)
            .env("BERTH_RUNTIME_DIR", rig.dir.path())
            .env(
                "BERTH_LUKS_OPTIONS",
                "--pbkdf pbkdf2 --pbkdf-force-iterations 1000",
            );
        cmd.output().unwrap()
    };

    let out = boot("first try\nsecond try\n");
    assert!(!out.status.success());
    assert!(
        common::stderr_text(&out).contains("differ"),
        "{}",
        common::stderr_text(&out)
    );
    assert!(
        !rig.is_luks2(),
        "a mistyped confirmation still formatted the partition"
    );

    let out = boot("my long passphrase\nmy long passphrase\n");
    assert!(rig.is_luks2(), "{}", common::stderr_text(&out));
    assert!(rig.key_opens(b"my long passphrase"));
    rig.close();
    let before = rig.head();
    let out = boot("not it\n");
    assert!(
        common::stderr_text(&out).contains("does not open"),
        "{}",
        common::stderr_text(&out)
    );
    assert_eq!(rig.head(), before);
}
