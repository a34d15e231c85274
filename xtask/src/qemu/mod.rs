//! `cargo xtask qemu`: the built card booted in QEMU's `virt` machine, the twin of the board
//! (docs/testing.md). The same sdcard.img, boot.scr, kernel and system slots; only the firmware
//! differs, U-Boot's `qemu_arm` build of the same source (br2-external/package/berth-twin-uboot).
//! The release's card is only read: the twin writes to an overlay in its state folder.
//!
//! `--test` runs the runtime suite ([`suite`]) instead of handing the console to a person.

pub mod args;
pub mod build;
pub mod command;
pub mod console;
pub mod disk;
pub mod machine;
pub mod report;
pub mod suite;
pub mod writelog;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::host::Host;
use crate::image::config::{self, BerthConfig};
use crate::prereqs;
use crate::project::{self, Repo};

pub use args::QemuArgs;
use build::Build;
use command::{Console, Machine};

/// Every tool the twin needs, with its Debian package.
pub const TOOLS: &[(&str, &str)] = &[
    (command::QEMU, "qemu-system-arm"),
    ("qemu-img", "qemu-utils"),
    ("mformat", "mtools"),
    ("mcopy", "mtools"),
    ("ssh", "openssh-client"),
];

/// What `--test` needs besides: the test container is a static ARM program built here, and the
/// broken bundles are made with RAUC and squashfs-tools.
pub const TEST_TOOLS: &[(&str, &str)] = &[
    ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
    ("rauc", "rauc"),
    ("unsquashfs", "squashfs-tools"),
    ("openssl", "openssl"),
];

pub fn run(repo: &Repo, args: QemuArgs, host: &Host) -> Result<()> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut problems = prereqs::missing_tools(TOOLS, &path);
    if args.test {
        problems.extend(prereqs::missing_tools(TEST_TOOLS, &path));
    }
    if let Some(text) = prereqs::report(&problems, "the QEMU twin needs") {
        bail!("{text}");
    }
    let output = output_folder(repo, args.output.as_deref(), host)?;
    let build = Build::find(&output.join("images"))?;
    if !build.sealed {
        println!(
            "note: {} has no SHA256SUMS (not sealed by `cargo xtask image`), so nothing proves \
             its card and twin U-Boot are of one build",
            build.images.display()
        );
    }
    let ssh_key = ssh_key(args.ssh_key.clone(), host.home.as_deref())?;
    if args.test {
        return suite::run(repo, &args, &build, &output, &ssh_key);
    }
    interactive(&args, &build, &ssh_key, host)
}

/// The flag, then berth.toml's `output`, then `output/<default board>` in the checkout.
pub fn output_folder(repo: &Repo, flag: Option<&Path>, host: &Host) -> Result<PathBuf> {
    let file = BerthConfig::load(repo.root())?;
    let cwd = std::env::current_dir().context("could not read the current directory")?;
    let picked = config::pick_path(
        flag,
        file.output.as_deref(),
        &cwd,
        repo.root(),
        host.home.as_deref(),
    )?;
    Ok(picked.unwrap_or_else(|| repo.root().join("output").join(project::DEFAULT_BOARD)))
}

/// The SSH key to log in with: the one named, else the first of the usual ones in ~/.ssh.
pub fn ssh_key(given: Option<PathBuf>, home: Option<&Path>) -> Result<PathBuf> {
    if let Some(key) = given {
        if !key.is_file() {
            bail!("the SSH key {} does not exist", key.display());
        }
        return Ok(key);
    }
    let ssh = home.map(|h| h.join(".ssh"));
    config::DEFAULT_PUBLIC_KEYS
        .iter()
        .filter_map(|public| Some(ssh.as_ref()?.join(public.strip_suffix(".pub")?)))
        .find(|private| private.is_file())
        .context(
            "no SSH key to log in to the twin with: pass --ssh-key with the private half of the \
             key the image was built with (--ssh-authorized-keys)",
        )
}

/// The card overlay and key medium of the interactive twin, kept between runs for one card.
fn interactive(args: &QemuArgs, build: &Build, ssh_key: &Path, host: &Host) -> Result<()> {
    let state = match &args.state {
        Some(dir) => dir.clone(),
        None => host.cache()?.join("qemu-twin"),
    };
    let stamp = state.join("card.sha256");
    let overlay = state.join("card.qcow2");
    let key = state.join("key.img");
    let kept = std::fs::read_to_string(&stamp).ok();
    if kept.is_some() && kept.as_deref() != Some(build.card_sha256.as_str()) && !args.fresh {
        bail!(
            "the twin in {} was made from another card; pass --fresh to start it again from this \
             build's (what it wrote is dropped)",
            state.display()
        );
    }
    let sh = host.shell()?;
    if args.fresh || kept.is_none() || !overlay.is_file() || !key.is_file() {
        std::fs::create_dir_all(&state)
            .with_context(|| format!("could not make {}", state.display()))?;
        let _ = std::fs::remove_file(&stamp);
        disk::overlay(&sh, &build.card, &overlay)?;
        disk::key_medium(&sh, &key)?;
        std::fs::write(&stamp, &build.card_sha256)
            .with_context(|| format!("could not write {}", stamp.display()))?;
    }
    let machine = Machine {
        firmware: build.firmware.clone(),
        card: overlay,
        card_format: "qcow2",
        card_log: None,
        key_medium: Some(key),
        ssh_port: args.ssh_port,
        rtc_base: None,
        console: Console::Terminal,
    };
    println!(
        "Berth's twin: the console follows (Ctrl-A X ends QEMU). Once it is up:\n  ssh -p {} -i {} root@127.0.0.1",
        args.ssh_port,
        ssh_key.display()
    );
    let (qemu, qemu_args) = (command::QEMU, machine.args());
    cmd!(sh, "{qemu} {qemu_args...}")
        .run()
        .context("QEMU ended with an error")
}
