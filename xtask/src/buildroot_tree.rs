//! `cargo xtask buildroot`: the Buildroot tree `image` builds with (the pinned commit, found,
//! fetched and verified, with `patches/buildroot` applied in Berth's copy), handed to tools that
//! run Buildroot themselves, such as the release workflow's `make pkg-stats`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::host::Host;
use crate::project::Repo;

#[derive(Args, Debug, Default)]
pub struct BuildrootArgs {
    /// A tree of the pinned Buildroot to start from (default: BERTH_BUILDROOT, else Berth's
    /// cache, fetched when missing).
    #[arg(long, value_name = "DIR")]
    pub buildroot: Option<PathBuf>,
    /// Print only the tree's path, on one line, for scripts (progress goes to stderr).
    #[arg(long)]
    pub print_path: bool,
}

/// Make (or find current) the tree `image` would build the checkout `repo` with on `host`, and
/// print it.
pub fn run(args: BuildrootArgs, repo: &Repo, host: &Host) -> Result<()> {
    let tree = crate::buildroot::resolve(repo, host, args.buildroot.as_deref(), true)?;
    if args.print_path {
        println!("{}", tree.root.display());
    } else {
        println!("Buildroot: {tree}");
    }
    Ok(())
}
