//! Berth's orchestrator as a library: `main.rs` is only the command line.
//!
//! The layers, read from the folder names (docs/architecture.md has the map and its rules):
//! - the verbs, one module each: [`image`], [`check`], [`audit`], [`flash`], [`bmap`], [`bench`](mod@bench),
//!   [`verify`], [`diff`], [`buildroot_tree`] (`cargo xtask buildroot`), [`qemu`] (the twin and
//!   its runtime suite);
//! - what they share: [`project`] (every pin, board and path), [`buildroot`], [`kconfig`],
//!   [`rootfs`], [`erofs`], [`tree`], [`manifest`], [`release`], [`rauc`], [`sbom`], [`sparse`], [`systemd_unit`], [`vulns`], [`git_tree`], [`reproducible`], [`util`];
//!   [`host`], the environment a verb runs in (home, cache folder, proxies), which only `main.rs`
//!   reads from the process;
//!   [`apps`], the declared containers that `image` preloads and `audit` checks.
//!
//! Pure logic (Kconfig, layout, audit rules, block maps) does no I/O, so its unit tests need no
//! Buildroot, no root and no network.

pub mod apps;
pub mod audit;
pub mod bench;
pub mod bmap;
pub mod buildroot;
pub mod buildroot_tree;
pub mod check;
pub mod diff;
pub mod erofs;
pub mod flash;
pub mod git_tree;
pub mod host;
pub mod image;
pub mod kconfig;
pub mod manifest;
pub mod prereqs;
pub mod project;
pub mod qemu;
pub mod rauc;
pub mod release;
pub mod reproducible;
pub mod rootfs;
pub mod sbom;
pub mod sparse;
pub mod systemd_unit;
pub mod target_dir;
pub mod tree;
pub mod util;
pub mod verify;
pub mod vulns;
