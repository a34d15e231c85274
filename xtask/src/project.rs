//! What Berth pins, which boards it builds for and where a checkout keeps its files: the single
//! source of these facts.

use std::path::{Path, PathBuf};

/// What the Buildroot pin is, for people: the 2025.02 long-term-support branch, which gets
/// security fixes for 3 years (buildroot.org/lts.html), so until February 2028.
pub const BUILDROOT_RELEASE: &str = "2025.02.x LTS";
/// The version its Makefile carries (`BR2_VERSION`): the last tag on the branch before the commit.
pub const BUILDROOT_VERSION: &str = "2025.02.16";
/// The git ref the pinned commit lives on, fetched when a server will not hand out the commit alone.
pub const BUILDROOT_REF: &str = "2025.02.x";
/// The commit Berth builds with (2026-08-21, 144 commits after 2025.02.16); anything else is
/// refused. `patches/buildroot/` is applied on top of it.
pub const BUILDROOT_COMMIT: &str = "1ef39b9196e0a5979581187f15fd665ca390c2a0";
/// The git tree id of that commit (`git rev-parse <commit>^{tree}`): a tree without `.git`, such
/// as a `git archive` export of the commit, is accepted only when its files hash to this.
pub const BUILDROOT_TREE: &str = "e9cc3b28ef7060b1a4512cd7a618ea42ce930dd7";
/// Upstream Buildroot git repository.
pub const BUILDROOT_GIT_URL: &str = "https://gitlab.com/buildroot.org/buildroot.git";
/// Kernel release (6.12 LTS, supported to December 2028): the newest 6.12 the pinned branch hashes.
pub const LINUX_VERSION: &str = "6.12.104";
/// Mainline U-Boot release; `patches/buildroot/` adds its hash.
pub const UBOOT_VERSION: &str = "2026.01";
/// The oldest version of each container-stack package Berth ships, what `patches/buildroot/`
/// brings onto the branch (upstream security releases); `check` fails on anything older. Each
/// entry names the packages that can provide it (Go is the virtual host-go: built from source or
/// a binary release).
pub const MINIMUM_VERSIONS: &[(&[&str], &str)] = &[
    (&["docker-engine"], "28.5.2"),
    (&["docker-cli"], "28.5.2"),
    (&["containerd"], "2.0.11"),
    (&["runc"], "1.3.6"),
    (&["host-go-src", "host-go-bin"], "1.26.6"),
];

/// A board Berth builds an image for.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// Name given to `--board`.
    pub name: &'static str,
    /// Buildroot defconfig under `configs/`.
    pub defconfig: &'static str,
    /// Folder under `board/` with genimage config, boot files, scripts and overlay.
    pub board_dir: &'static str,
    /// RAM in MiB; the board has no swap (declared apps' limits must fit it).
    pub memory_mib: u64,
    /// CPU cores (Exynos5422: 4 Cortex-A15 + 4 Cortex-A7).
    pub cpus: u32,
}

impl Board {
    /// The board folder in a checkout (genimage.cfg, cmdline.txt, rootfs-overlay, scripts).
    pub fn dir(&self, repo: &Repo) -> PathBuf {
        repo.path(self.board_dir)
    }
}

/// A Berth checkout: where every verb reads the defconfigs, fragments, rule tables, board files
/// and patches. The command line works on the checkout the xtask was built from; tests hand the
/// library a modified copy.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    /// The checkout this xtask was built from (`xtask/` sits one level below its root).
    pub fn checkout() -> Repo {
        Repo::at(crate::util::repo_root())
    }

    /// A checkout at `root`, such as a test's modified copy.
    pub fn at(root: impl Into<PathBuf>) -> Repo {
        Repo { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file or folder of the checkout, by its path from the root.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }
}

/// One image serves the XU3 Lite and XU4 (and XU3/HC1): mainline U-Boot picks the DTB at boot.
pub const BOARDS: &[Board] = &[Board {
    name: "odroid-xu4",
    defconfig: "berth_odroid_xu4_defconfig",
    board_dir: "board/odroid-xu4",
    memory_mib: 2048,
    cpus: 8,
}];

pub const DEFAULT_BOARD: &str = "odroid-xu4";

/// The board whose files `check` and `audit` read when no build says otherwise.
pub fn default_board() -> &'static Board {
    board(DEFAULT_BOARD).expect("DEFAULT_BOARD names an entry of BOARDS")
}

pub fn board(name: &str) -> anyhow::Result<&'static Board> {
    BOARDS.iter().find(|b| b.name == name).ok_or_else(|| {
        let known: Vec<_> = BOARDS.iter().map(|b| b.name).collect();
        anyhow::anyhow!("unknown board '{name}'; Berth knows: {}", known.join(", "))
    })
}
