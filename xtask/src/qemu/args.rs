//! The command line of `cargo xtask qemu`, apart from its flow so the suite can read it.

use std::path::PathBuf;

use clap::Args;

/// The host port forwarded to the twin's SSH unless `--ssh-port` names another.
pub const DEFAULT_SSH_PORT: u16 = 10022;

#[derive(Args, Debug, Default, Clone)]
pub struct QemuArgs {
    /// Buildroot output folder of the build to boot (its images/ holds the card); by default
    /// berth.toml's `output`, else output/odroid-xu4.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Run the runtime suite (boot, data, docker, updates, rollback, time, power cuts) and end
    /// with `N passed, N failed`, instead of an interactive boot.
    #[arg(long)]
    pub test: bool,
    /// With --test: only the tests whose name contains one of these (e.g. `boot/`, `power`).
    #[arg(long = "only", value_name = "PART")]
    pub only: Vec<String>,
    /// The private half of an SSH key the image authorizes (default: ~/.ssh/id_ed25519, then
    /// id_ecdsa, then id_rsa).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// Host loopback port forwarded to the twin's SSH.
    #[arg(long, default_value_t = DEFAULT_SSH_PORT)]
    pub ssh_port: u16,
    /// The pair the build signs bundles with (default: the development pair `image` made in
    /// the output folder); the update tests sign their broken bundles with it.
    #[arg(long, requires = "signing_cert")]
    pub signing_key: Option<PathBuf>,
    #[arg(long, requires = "signing_key")]
    pub signing_cert: Option<PathBuf>,
    /// With --test: power cuts to make (at least 20 make the suite's claim).
    #[arg(long, default_value_t = 20)]
    pub power_cuts: u32,
    /// With --test: seed of the power cuts' moments (default: from the clock; printed, so a
    /// run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the interactive twin keeps its card overlay and key medium between runs (default:
    /// `<cache>/berth/qemu-twin`).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Start the interactive twin from the release's card again, dropping what it wrote.
    #[arg(long)]
    pub fresh: bool,
}
