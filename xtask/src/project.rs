//! What Berth pins and which boards it builds for: the single source of these facts.

/// Buildroot release Berth is built and validated with (a 3-month stable release, not an LTS).
pub const BUILDROOT_VERSION: &str = "2026.02.3";
/// The git ref the pinned commit lives on, fetched when a server will not hand out the commit alone.
pub const BUILDROOT_REF: &str = "2026.02.3";
/// The commit Berth builds with; anything else is refused.
pub const BUILDROOT_COMMIT: &str = "679b9ead7620bbf193620d1ebf56f53c1764d37a";
/// The git tree id of that commit (`git rev-parse <commit>^{tree}`): a tree without `.git`, such
/// as a `git archive` export of the commit, is accepted only when its files hash to this.
pub const BUILDROOT_TREE: &str = "7687f049dcbb99ea686fa921153e9e33ff06a623";
/// Upstream Buildroot git repository.
pub const BUILDROOT_GIT_URL: &str = "https://gitlab.com/buildroot.org/buildroot.git";
/// Kernel release (6.12 LTS) whose hash ships in that Buildroot.
pub const LINUX_VERSION: &str = "6.12.91";
/// Mainline U-Boot release whose hash ships in that Buildroot.
pub const UBOOT_VERSION: &str = "2026.01";

/// A board Berth builds an image for.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// Name given to `--board`.
    pub name: &'static str,
    /// Buildroot defconfig under `configs/`.
    pub defconfig: &'static str,
    /// Folder under `board/` with genimage config, boot files, scripts and overlay.
    pub board_dir: &'static str,
}

impl Board {
    /// The board folder in this checkout (genimage.cfg, cmdline.txt, rootfs-overlay, scripts).
    pub fn dir(&self) -> std::path::PathBuf {
        crate::util::repo_root().join(self.board_dir)
    }
}

/// One image serves the XU3 Lite and XU4 (and XU3/HC1): mainline U-Boot picks the DTB at boot.
pub const BOARDS: &[Board] = &[Board {
    name: "odroid-xu4",
    defconfig: "berth_odroid_xu4_defconfig",
    board_dir: "board/odroid-xu4",
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
