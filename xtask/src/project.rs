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

/// Bytes per sector: the unit the boot ROM, the bootloaders and the partition table count in.
pub const SECTOR: u64 = 512;

/// One stage of the Exynos5422 boot chain on the card: the file Buildroot puts in the images
/// folder, the sector the stage before it reads it from, and the room it has there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootBlob {
    pub name: &'static str,
    pub file: &'static str,
    pub sd_sector: u64,
    pub slot_bytes: u64,
}

impl BootBlob {
    /// Byte offset on the SD card image.
    pub const fn sd_offset(&self) -> u64 {
        self.sd_sector * SECTOR
    }

    /// Byte offset in the eMMC `boot0` hardware partition.
    pub const fn emmc_boot0_offset(&self) -> u64 {
        (self.sd_sector - EMMC_BOOT0_SHIFT_SECTORS) * SECTOR
    }
}

/// The Hardkernel chain, in the order it runs and lies on the card, each slot ending where the
/// next begins: the boot ROM reads Samsung-signed BL1 from sector 1 (the 15,616-byte blob is
/// installed cut to its 15,360-byte slot); BL1 loads BL2; the "720k" BL2 loads at most 720 KiB
/// of U-Boot and then the TrustZone firmware, so a bigger U-Boot would be cut short at boot.
/// `board/odroid-xu4/genimage.cfg` lays them out; [`crate::image::layout`] checks it agrees.
pub const BOOT_CHAIN: [BootBlob; 4] = [
    BootBlob {
        name: "BL1",
        file: "bl1.bin.hardkernel",
        sd_sector: 1,
        slot_bytes: 15_360,
    },
    BootBlob {
        name: "BL2",
        file: "bl2.bin.hardkernel.720k_uboot",
        sd_sector: 31,
        slot_bytes: 16_384,
    },
    BootBlob {
        name: "U-Boot",
        file: "u-boot-dtb.bin",
        sd_sector: 63,
        slot_bytes: 737_280,
    },
    BootBlob {
        name: "TZSW",
        file: "tzsw.bin.hardkernel",
        sd_sector: 1503,
        slot_bytes: 262_144,
    },
];

/// On eMMC the boot ROM reads the same chain from the `boot0` hardware partition, one sector
/// lower (SD sector 1 is boot0 sector 0).
pub const EMMC_BOOT0_SHIFT_SECTORS: u64 = 1;

/// Where a stock Hardkernel U-Boot keeps its environment. Berth's U-Boot keeps none
/// (configs/uboot.fragment), but the first partition starts past it so a board still running
/// another U-Boot cannot overwrite Berth's files.
pub const STOCK_UBOOT_ENV_OFFSET: u64 = 0x31_0000;

/// Where the first partition (boot, FAT) starts: after the chain and the stock environment.
pub const FIRST_PARTITION_OFFSET: u64 = 4 << 20;

// The layout's invariants, checked when the crate compiles: each slot ends where the next
// begins, and the chain, the stock environment and the first partition do not overlap.
const _: () = {
    let mut i = 1;
    while i < BOOT_CHAIN.len() {
        let before = BOOT_CHAIN[i - 1];
        assert!(before.sd_offset() + before.slot_bytes == BOOT_CHAIN[i].sd_offset());
        i += 1;
    }
    let last = BOOT_CHAIN[BOOT_CHAIN.len() - 1];
    assert!(last.sd_offset() + last.slot_bytes <= STOCK_UBOOT_ENV_OFFSET);
    assert!(STOCK_UBOOT_ENV_OFFSET < FIRST_PARTITION_OFFSET);
};

/// The card's MBR disk signature: Linux names partition N of the card `PARTUUID=be27d0c4-0N`,
/// which the boot script and RAUC's slot list name.
pub const DISK_SIGNATURE: u32 = 0xbe27_d0c4;
/// What genimage aligns every partition to.
pub const PARTITION_ALIGN: u64 = 1 << 20;
/// The boot partition (FAT): the boot script, each slot's verity parameters and U-Boot's
/// boot-counter file; no kernel.
pub const BOOT_PARTITION_BYTES: u64 = 64 << 20;
/// Each system slot (A and B): a raw partition holding one `system.img`.
pub const SYSTEM_SLOT_BYTES: u64 = 768 << 20;
/// The most a `system.img` (EROFS root with the kernel inside, then its dm-verity hash tree)
/// may weigh: `cargo xtask image` refuses a bigger one. About 10 % over what the lab's real
/// build measured after the diet of docs/rootfs.md (101,928,960 bytes, 97.2 MiB), so growth is
/// caught when it happens, not when the slot is full; far below the slot, so an update that grows
/// the system still fits the slot of a card flashed today.
pub const SYSTEM_IMAGE_BUDGET_BYTES: u64 = 107 << 20;
/// The least the data partition gets on the image; it grows to fill the card on first boot.
pub const DATA_PARTITION_MIN_BYTES: u64 = 16 << 20;
/// dm-verity's data and hash block size: the EROFS image is a whole number of them.
pub const VERITY_BLOCK_BYTES: u64 = 4096;

/// One partition of the card's MBR: its number (`-0N` of the PARTUUID), its name in
/// genimage.cfg, its MBR type and its size (the least, for the data partition that grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub name: &'static str,
    pub mbr_type: u8,
    pub bytes: u64,
}

impl Partition {
    /// `be27d0c4-0N`: how Linux and U-Boot's `part uuid` name it.
    pub fn partuuid(&self) -> String {
        format!("{DISK_SIGNATURE:08x}-{:02x}", self.number)
    }
}

pub const BOOT_PARTITION: Partition = Partition {
    number: 1,
    name: "boot",
    mbr_type: 0x0c,
    bytes: BOOT_PARTITION_BYTES,
};
pub const SYSTEM_A_PARTITION: Partition = Partition {
    number: 2,
    name: "system-a",
    mbr_type: 0x83,
    bytes: SYSTEM_SLOT_BYTES,
};
pub const SYSTEM_B_PARTITION: Partition = Partition {
    number: 3,
    name: "system-b",
    mbr_type: 0x83,
    bytes: SYSTEM_SLOT_BYTES,
};
/// LUKS2, opened and grown on first boot (berth-data-crypt).
pub const DATA_PARTITION: Partition = Partition {
    number: 4,
    name: "data",
    mbr_type: 0x83,
    bytes: DATA_PARTITION_MIN_BYTES,
};
/// The card's partitions in table order, back to back from [`FIRST_PARTITION_OFFSET`].
pub const PARTITIONS: [Partition; 4] = [
    BOOT_PARTITION,
    SYSTEM_A_PARTITION,
    SYSTEM_B_PARTITION,
    DATA_PARTITION,
];
/// The size of `sdcard.img`: the data partition at its least.
pub const SDCARD_IMAGE_BYTES: u64 = {
    let mut end = FIRST_PARTITION_OFFSET;
    let mut i = 0;
    while i < PARTITIONS.len() {
        end += PARTITIONS[i].bytes;
        i += 1;
    }
    end
};

// The partitions fill the four MBR entries in order, on genimage's alignment, and a system
// image within its budget fits its slot.
const _: () = {
    assert!(FIRST_PARTITION_OFFSET.is_multiple_of(PARTITION_ALIGN));
    let mut i = 0;
    while i < PARTITIONS.len() {
        assert!(PARTITIONS[i].number as usize == i + 1);
        assert!(PARTITIONS[i].bytes.is_multiple_of(PARTITION_ALIGN));
        i += 1;
    }
    assert!(SYSTEM_A_PARTITION.bytes == SYSTEM_B_PARTITION.bytes);
    assert!(SYSTEM_IMAGE_BUDGET_BYTES <= SYSTEM_SLOT_BYTES);
    assert!(SYSTEM_IMAGE_BUDGET_BYTES.is_multiple_of(VERITY_BLOCK_BYTES));
};

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
        Repo::at(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask lives one level below the repository root"),
        )
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
