//! The A/B boot script (board/odroid-xu4/boot.cmd) run for real: U-Boot 2026.01 built as
//! `sandbox_defconfig` with the board's own fragment (environment nowhere, EROFS with LZ4,
//! setexpr, FAT write), a card made by the real tools (MBR with Berth's disk signature, vfat p1
//! holding boot.scr from Debian's mkimage and slot-A.env / slot-B.env, p2 and p3 EROFS made by
//! mkfs.erofs -zlz4hc holding /boot/zImage and /boot/<dtb>), and one sandbox run per simulated
//! boot, with the boot state persisting on the card in between: the two copies that the board's
//! fw_env.config names, made as post-image.sh makes them. fw_printenv / fw_setenv built from the
//! same tree (U-Boot's tools/env, which RAUC runs on the board) read and write those copies with
//! the board's fw_env.config, so the formats and the choice of the newer copy are shown to agree.
//!
//! The sandbox is built once per test binary in `<target>/tmp/uboot-sandbox` and reused while its
//! inputs (tree, sandbox_defconfig, both fragments) stay the same.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use xtask::util::sha256_hex;

/// Over sandbox_defconfig and configs/uboot.fragment: the environment nowhere, as on the board
/// (sandbox_defconfig also keeps one in ext4), the hush parser the board has (`cargo xtask check`
/// requires it there), and no signed EFI capsules, whose build step needs efitools'
/// cert-to-efi-sig-list and which the boot script never touches.
const SANDBOX_FRAGMENT: &str = "# CONFIG_ENV_IS_IN_EXT4 is not set\nCONFIG_HUSH_OLD_PARSER=y\n\
                                # CONFIG_EFI_CAPSULE_AUTHENTICATE is not set\n";

/// The card's MBR disk signature, so the slots' PARTUUIDs are be27d0c4-02 and -03 as on the board.
const DISK_SIGNATURE: &str = "0xbe27d0c4";
const MIB: u64 = 1 << 20;
/// p1 vfat 64 MiB at 4 MiB as on the board; the slots are small here.
const P1_START: u64 = 4 * MIB;
const P1_SIZE: u64 = 64 * MIB;
const SLOT_SIZE: u64 = 8 * MIB;
/// What board/samsung/common sets on an XU4.
const FDTFILE: &str = "exynos5422-odroidxu4.dtb";
/// Linux's COMMAND_LINE_SIZE on ARM.
const ARM_COMMAND_LINE_SIZE: usize = 1024;
/// The twin's fdt_addr (QEMU virt's is the start of RAM): clear of the sandbox's scriptaddr
/// (0x1000), fdt_addr_r (0xc00000), kernel_addr_r (0x1000000) and ramdisk_addr_r (0x2000000).
const TWIN_FDT_ADDR: &str = "0x3000000";
/// The model of the stand-in for the device tree QEMU virt builds.
const TWIN_MODEL: &str = "Berth stand-in QEMU virt";
/// What the script adds to the command line on the twin.
const TWIN_CONSOLE: &str = " console=ttyAMA0,115200";

/// Every tool the test runs, with its Debian package; the first one missing is the skip.
const TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("swig", "swig"),
    ("dtc", "device-tree-compiler"),
    ("mkimage", "u-boot-tools"),
    ("mkfs.erofs", "erofs-utils"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("mkenvimage", "u-boot-tools"),
    ("timeout", "coreutils"),
];

/// The sandbox U-Boot and the tree's fw_printenv (fw_setenv is the same program by another name).
#[derive(Clone)]
struct Sandbox {
    uboot: PathBuf,
    fw_printenv: PathBuf,
    fw_setenv: PathBuf,
}

/// The sandbox, built once; None (with the skip printed) when a tree or tool is absent.
fn sandbox(test: &str) -> Option<Sandbox> {
    let tree = common::uboot_tree(test)?;
    if !TOOLS
        .iter()
        .all(|(tool, package)| common::have_tool(test, tool, package))
    {
        return None;
    }
    static BUILT: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    match BUILT.get_or_init(|| build_sandbox(&tree)) {
        Ok(binary) => Some(binary.clone()),
        Err(why) => panic!("the U-Boot sandbox did not build: {why}"),
    }
}

fn build_sandbox(tree: &Path) -> Result<Sandbox, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uboot-sandbox");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let board_fragment = common::repo_root().join("configs/uboot.fragment");
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let key = sha256_hex(
        &[
            tree.as_os_str().as_encoded_bytes().to_vec(),
            read(&tree.join("configs/sandbox_defconfig"))?,
            read(&board_fragment)?,
            SANDBOX_FRAGMENT.as_bytes().to_vec(),
        ]
        .join(&0u8),
    );
    let built = Sandbox {
        uboot: out.join("u-boot"),
        fw_printenv: out.join("tools/env/fw_printenv"),
        fw_setenv: out.join("tools/env/fw_setenv"),
    };
    let stamp = out.join("berth-inputs.sha256");
    if built.uboot.is_file()
        && built.fw_setenv.is_file()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&key)
    {
        return Ok(built);
    }
    // Other inputs: nothing of the old build may be reused, as its objects and dependency files
    // name the tree it was built from (which may be gone).
    std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let test_fragment = out.join("berth-sandbox.fragment");
    std::fs::write(&test_fragment, SANDBOX_FRAGMENT).map_err(|e| e.to_string())?;
    let make = |args: &[&str]| {
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "10", "make", "-C"])
            .arg(tree)
            .arg(format!("O={}", out.display()))
            .args(args)
            .env("NO_SDL", "1");
        cmd
    };
    let run = |cmd: &mut Command| -> Result<(), String> {
        let output = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let text = common::output_text(&output);
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{cmd:?} failed:\n{}", tail.join("\n")))
    };
    run(&mut make(&["sandbox_defconfig"]))?;
    run(Command::new(tree.join("scripts/kconfig/merge_config.sh"))
        .args(["-m", "-O"])
        .arg(&out)
        .arg(out.join(".config"))
        .arg(&board_fragment)
        .arg(&test_fragment)
        .current_dir(&out))?;
    run(&mut make(&["olddefconfig"]))?;
    // Every fragment line must hold in the result, or the sandbox would test another U-Boot.
    let config = String::from_utf8_lossy(&read(&out.join(".config"))?).into_owned();
    let fragments =
        String::from_utf8_lossy(&read(&board_fragment)?).into_owned() + SANDBOX_FRAGMENT;
    for line in fragments.lines() {
        let wanted = line.starts_with("CONFIG_") || line.ends_with(" is not set");
        let holds = config.lines().any(|c| c == line)
            || (line.ends_with(" is not set")
                && !config.contains(&format!("\n{}=", &line[2..line.len() - 11])));
        if wanted && !holds {
            return Err(format!(
                "'{line}' did not survive olddefconfig in the sandbox"
            ));
        }
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(&mut make(&[&format!("-j{jobs}"), "u-boot", "envtools"]))?;
    std::os::unix::fs::symlink("fw_printenv", &built.fw_setenv).map_err(|e| e.to_string())?;
    std::fs::write(&stamp, &key).map_err(|e| e.to_string())?;
    Ok(built)
}

/// One slot's stand-ins: a zImage (ARM magic, compressible so EROFS stores it LZ4-compressed) and
/// a DTB naming the slot, and the verity parameters its system.env would carry.
struct Slot {
    name: char,
    zimage: Vec<u8>,
    root_hash: String,
    salt: String,
    data_blocks: u64,
}

impl Slot {
    fn new(name: char) -> Self {
        let len = 512 * 1024;
        let mut zimage: Vec<u8> = (0..)
            .flat_map(|i| {
                format!("berth stand-in zImage of slot {name}, line {i:08}\n").into_bytes()
            })
            .take(len)
            .collect();
        // arch/arm/boot/compressed/head.S: magic at 0x24, then start and end.
        zimage[0x24..0x28].copy_from_slice(&0x016f_2818u32.to_le_bytes());
        zimage[0x28..0x2c].copy_from_slice(&0u32.to_le_bytes());
        zimage[0x2c..0x30].copy_from_slice(&(len as u32).to_le_bytes());
        Slot {
            name,
            zimage,
            root_hash: sha256_hex(format!("root of slot {name}").as_bytes()),
            salt: sha256_hex(format!("salt of slot {name}").as_bytes()),
            data_blocks: 0,
        }
    }

    fn model(&self) -> String {
        format!("Berth stand-in XU4, slot {}", self.name)
    }

    fn partuuid(&self) -> String {
        let number = if self.name == 'A' { 2 } else { 3 };
        format!("{}-{number:02}", &DISK_SIGNATURE[2..])
    }

    /// The EROFS image of the slot's root, as the image build makes it (LZ4HC).
    fn erofs(&mut self, work: &Path) -> Vec<u8> {
        let root = work.join(format!("root-{}", self.name));
        common::write_file(&root.join("boot/zImage"), &self.zimage, 0o644);
        let dtb = root.join("boot").join(FDTFILE);
        make_dtb(&dtb, &self.model(), "hardkernel,odroid-xu4");
        let image = work.join(format!("{}.erofs", self.name));
        common::run_ok(
            Command::new("mkfs.erofs")
                .arg("-zlz4hc")
                .arg(&image)
                .arg(&root),
        );
        let bytes = std::fs::read(&image).unwrap();
        self.data_blocks = bytes.len() as u64 / 4096;
        bytes
    }

    /// system.env for this slot, in the contract's format.
    fn env(&self) -> String {
        let cmdline =
            std::fs::read_to_string(common::repo_root().join("board/odroid-xu4/cmdline.txt"))
                .unwrap();
        format!(
            "berth_cmdline={}\nberth_verity_sectors={}\nberth_verity_data_blocks={}\n\
             berth_verity_hash_start={}\nberth_verity_root_hash={}\nberth_verity_salt={}\n",
            cmdline.trim_end(),
            self.data_blocks * 8,
            self.data_blocks,
            self.data_blocks,
            self.root_hash,
            self.salt
        )
    }

    /// The kernel command line the script must build for this slot, with `console` ("" on the
    /// board, TWIN_CONSOLE on the twin) between the slot's command line and the root.
    fn bootargs(&self, console: &str) -> String {
        let cmdline =
            std::fs::read_to_string(common::repo_root().join("board/odroid-xu4/cmdline.txt"))
                .unwrap();
        let uuid = self.partuuid();
        format!(
            "{}{console} root=/dev/dm-0 rootfstype=erofs rauc.slot={} \
             dm-mod.waitfor=PARTUUID={uuid} dm-mod.create=\"berth-root,,,ro,0 {} verity 1 \
             PARTUUID={uuid} PARTUUID={uuid} 4096 4096 {} {} sha256 {} {} 1 \
             restart_on_corruption\"",
            cmdline.trim_end(),
            self.name,
            self.data_blocks * 8,
            self.data_blocks,
            self.data_blocks,
            self.root_hash,
            self.salt
        )
    }
}

/// A DTB at `dtb` with `model` and `compatible`, an empty /chosen, and padding for the bootargs.
fn make_dtb(dtb: &Path, model: &str, compatible: &str) {
    let dts = format!(
        "/dts-v1/;\n/ {{ model = \"{model}\"; compatible = \"{compatible}\"; \
         #address-cells = <1>; #size-cells = <1>; chosen {{ }}; \
         memory@40000000 {{ device_type = \"memory\"; reg = <0x40000000 0x80000000>; }}; }};\n"
    );
    common::run_ok_with_input(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-p", "4096", "-o"])
            .arg(dtb)
            .arg("-"),
        dts.as_bytes(),
    );
}

/// How the U-Boot that runs the script knows the device tree.
#[derive(Clone, Copy)]
enum Dt {
    /// An XU4: fdtfile names the DTB the script loads from the slot to fdt_addr_r.
    Board,
    /// The QEMU twin: no fdtfile, and the DTB QEMU built (a stand-in with TWIN_MODEL) at fdt_addr.
    Twin,
    /// Neither: no fdtfile and no fdt_addr.
    Neither,
}

/// The copies of the boot state the board's fw_env.config names, as `(file name on p1, size)`.
fn state_copies() -> Vec<(String, String)> {
    let config = common::repo_root().join("board/odroid-xu4/rootfs-overlay/etc/fw_env.config");
    std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let name = fields[0].strip_prefix("/boot/firmware/").unwrap();
            (name.to_string(), fields[2].to_string())
        })
        .collect()
}

/// A card image in a scratch folder, as a board would have it after flashing.
struct Card {
    dir: tempfile::TempDir,
    image: PathBuf,
    slots: [Slot; 2],
}

impl Card {
    /// `slot_envs`: which slots have their slot-<X>.env on p1.
    fn new(slot_envs: &[char]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let mut slots = [Slot::new('A'), Slot::new('B')];
        let erofs: Vec<Vec<u8>> = slots.iter_mut().map(|s| s.erofs(work)).collect();

        let boot_scr = work.join("boot.scr");
        common::run_ok(
            Command::new("mkimage")
                .args([
                    "-A", "arm", "-O", "linux", "-T", "script", "-C", "none", "-n", "berth", "-d",
                ])
                .arg(common::repo_root().join("board/odroid-xu4/boot.cmd"))
                .arg(&boot_scr),
        );
        let vfat = work.join("p1.vfat");
        common::run_ok(
            Command::new("mkfs.vfat")
                .args(["-C", "-n", "BERTH-BOOT"])
                .arg(&vfat)
                .arg((P1_SIZE / 1024).to_string()),
        );
        let mut files = vec![boot_scr];
        // Both copies of the boot state, valid and empty, as post-image.sh makes them.
        for (name, size) in state_copies() {
            let copy = work.join(&name);
            common::run_ok(
                Command::new("mkenvimage")
                    .args(["-r", "-p", "0", "-s", &size, "-o"])
                    .arg(&copy)
                    .arg("/dev/null"),
            );
            files.push(copy);
        }
        for slot in slots.iter().filter(|s| slot_envs.contains(&s.name)) {
            let env = work.join(format!("slot-{}.env", slot.name));
            std::fs::write(&env, slot.env()).unwrap();
            files.push(env);
        }
        common::run_ok(
            Command::new("mcopy")
                .arg("-i")
                .arg(&vfat)
                .args(&files)
                .arg("::/"),
        );

        let image = work.join("card.img");
        let card = std::fs::File::create(&image).unwrap();
        let p2_start = P1_START + P1_SIZE;
        let p3_start = p2_start + SLOT_SIZE;
        card.set_len(p3_start + SLOT_SIZE).unwrap();
        card.write_all_at(&std::fs::read(&vfat).unwrap(), P1_START)
            .unwrap();
        card.write_all_at(&erofs[0], p2_start).unwrap();
        card.write_all_at(&erofs[1], p3_start).unwrap();
        drop(card);
        let sectors = |bytes: u64| bytes / 512;
        let table = format!(
            "label: dos\nlabel-id: {DISK_SIGNATURE}\nunit: sectors\n\
             start={}, size={}, type=c, bootable\nstart={}, size={}, type=83\nstart={}, size={}, type=83\n",
            sectors(P1_START),
            sectors(P1_SIZE),
            sectors(p2_start),
            sectors(SLOT_SIZE),
            sectors(p3_start),
            sectors(SLOT_SIZE)
        );
        common::run_ok_with_input(
            Command::new("sfdisk")
                .args(["--quiet", "--wipe", "never"])
                .arg(&image),
            table.as_bytes(),
        );
        Card { dir, image, slots }
    }

    fn slot(&self, name: char) -> &Slot {
        self.slots.iter().find(|s| s.name == name).unwrap()
    }

    fn p1(&self) -> String {
        format!("{}@@{P1_START}", self.image.display())
    }

    /// Power on an XU4: `boot_with` its fdtfile.
    fn boot(&self, sandbox: &Sandbox) -> Boot {
        self.boot_with(sandbox, Dt::Board)
    }

    /// Power on: one sandbox run that binds the card and runs boot.scr as distro boot (and
    /// bootstd's script bootmeth) would, with devtype and devnum naming the card and the device
    /// tree as `dt` says (for the twin, fdt_addr set and the stand-in DTB loaded there from the
    /// host, as QEMU leaves its own in RAM). The script ends every boot it does not hand to Linux
    /// with `reset`, which in the sandbox starts U-Boot again with the same arguments: that
    /// second run finds the marker the first one left, prints what the kernel would have got
    /// (the DTB in RAM, which the -m memory file keeps over the reset, with /chosen/bootargs, and
    /// the zImage's digest), and powers off.
    fn boot_with(&self, sandbox: &Sandbox, dt: Dt) -> Boot {
        let marker = self.dir.path().join("reset-once");
        let memory = self.dir.path().join("ram.bin");
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_file(&memory);
        let zimage_len = self.slots[0].zimage.len();
        let (fdt, dt_setup) = match dt {
            Dt::Board => ("${fdt_addr_r}", format!("setenv fdtfile {FDTFILE}")),
            Dt::Twin => {
                let dtb = self.dir.path().join("virt.dtb");
                make_dtb(&dtb, TWIN_MODEL, "linux,dummy-virt");
                let load = format!("load hostfs - {TWIN_FDT_ADDR} {}", dtb.display());
                (
                    TWIN_FDT_ADDR,
                    format!("setenv fdt_addr {TWIN_FDT_ADDR}; {load}"),
                )
            }
            Dt::Neither => ("${fdt_addr_r}", "setenv fdt_addr".to_string()),
        };
        let commands = format!(
            "if test -e hostfs - {marker}; then \
                 echo berth-test: after reset; fdt addr {fdt}; fdt print /; \
                 hash sha256 ${{kernel_addr_r}} {zimage_len:x}; poweroff; \
             fi; \
             save hostfs - ${{scriptaddr}} {marker} 1; \
             host bind 0 {card}; \
             setenv devtype host; setenv devnum 0; setenv distro_bootpart 1; setenv prefix /; \
             setenv fdtfile; {dt_setup}; \
             setenv fdt_high 0xffffffffffffffff; \
             load host 0:1 ${{scriptaddr}} boot.scr; source ${{scriptaddr}}; \
             echo berth-test: the script returned; poweroff",
            marker = marker.display(),
            card = self.image.display(),
        );
        // fdt_high all ones keeps the DTB in place at fdt_addr_r, where the second run reads it;
        // on the board U-Boot may move it, which changes nothing in it.
        let out = Command::new("timeout")
            .arg("120")
            .arg(&sandbox.uboot)
            .arg("-m")
            .arg(&memory)
            .arg("-c")
            .arg(&commands)
            .output()
            .unwrap();
        let console = common::output_text(&out);
        assert!(out.status.success(), "the sandbox failed:\n{console}");
        Boot::parse(console)
    }

    /// The boot state as fw_printenv reads it from the card with the board's fw_env.config.
    fn state(&self, sandbox: &Sandbox) -> BTreeMap<String, String> {
        let config = self.copies_out();
        let out = common::run_ok(Command::new(&sandbox.fw_printenv).arg("-c").arg(&config));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Set variables with fw_setenv, as RAUC's U-Boot backend does.
    fn fw_setenv(&self, sandbox: &Sandbox, vars: &[(&str, &str)]) {
        let config = self.copies_out();
        let script = self.dir.path().join("fw_setenv.script");
        let lines: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&script, lines).unwrap();
        common::run_ok(
            Command::new(&sandbox.fw_setenv)
                .arg("-c")
                .arg(&config)
                .arg("-s")
                .arg(&script),
        );
        self.copies_in();
    }

    /// Both copies of the boot state from p1 into the scratch folder, and the board's
    /// fw_env.config with /boot/firmware standing for that folder.
    fn copies_out(&self) -> PathBuf {
        let mut config = String::new();
        for (name, size) in state_copies() {
            let file = self.copy_out(&name);
            config.push_str(&format!("{} 0x0 {size}\n", file.display()));
        }
        let path = self.dir.path().join("fw_env.config");
        std::fs::write(&path, config).unwrap();
        path
    }

    fn copy_out(&self, name: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        common::run_ok(
            Command::new("mcopy")
                .args(["-o", "-n", "-i"])
                .arg(self.p1())
                .arg(format!("::{name}"))
                .arg(&file),
        );
        file
    }

    fn copies_in(&self) {
        for (name, _) in state_copies() {
            self.copy_in(&name);
        }
    }

    fn copy_in(&self, name: &str) {
        common::run_ok(
            Command::new("mcopy")
                .args(["-o", "-i"])
                .arg(self.p1())
                .arg(self.dir.path().join(name))
                .arg(format!("::{name}")),
        );
    }

    /// Change copy `name` on the card in place with `edit`.
    fn edit_copy(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let file = self.copy_out(name);
        let mut bytes = std::fs::read(&file).unwrap();
        edit(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();
        self.copy_in(name);
    }
}

/// What one simulated boot showed.
struct Boot {
    console: String,
    /// The slot the script said it boots.
    slot: Option<char>,
    /// Present only when the script reached bootz: /chosen/bootargs, the DTB's model and the
    /// zImage digest as the second run read them from RAM.
    bootargs: Option<String>,
    model: Option<String>,
    kernel_sha256: Option<String>,
}

impl Boot {
    fn parse(console: String) -> Self {
        let slot = console
            .lines()
            .find_map(|l| l.strip_prefix("berth: booting slot "))
            .and_then(|rest| rest.chars().next());
        let handed_over = console.contains("## Transferring control to Linux");
        let after = console
            .split("berth-test: after reset")
            .nth(1)
            .unwrap_or("");
        let quoted = |key: &str| {
            after.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{key} = \""))
                    .and_then(|v| v.strip_suffix("\";"))
                    .map(str::to_string)
            })
        };
        let kernel_sha256 = after
            .lines()
            .find_map(|l| l.split_once("==> ").map(|(_, h)| h.trim().to_string()));
        Boot {
            slot,
            bootargs: quoted("bootargs").filter(|_| handed_over),
            model: quoted("model").filter(|_| handed_over),
            kernel_sha256: kernel_sha256.filter(|_| handed_over),
            console,
        }
    }

    /// Assert that `slot` of `card` was handed to Linux with its own kernel, DTB and command line.
    fn assert_booted(&self, card: &Card, slot: char) {
        let want = card.slot(slot);
        self.assert_started(card, slot, &want.bootargs(""), &want.model());
    }

    /// Assert that `slot` of `card` was handed to Linux with its own kernel, and a DTB of `model`
    /// whose /chosen/bootargs are `bootargs`.
    fn assert_started(&self, card: &Card, slot: char, bootargs: &str, model: &str) {
        let want = card.slot(slot);
        assert_eq!(self.slot, Some(slot), "{}", self.console);
        let got = self.bootargs.as_deref().unwrap_or_else(|| {
            panic!("no kernel was started:\n{}", self.console);
        });
        assert_eq!(got, bootargs, "{}", self.console);
        assert!(got.len() < ARM_COMMAND_LINE_SIZE, "{got}");
        assert_eq!(self.model.as_deref(), Some(model), "{}", self.console);
        assert_eq!(
            self.kernel_sha256.as_deref(),
            Some(sha256_hex(&want.zimage).as_str()),
            "the zImage in RAM is not slot {slot}'s"
        );
    }
}

fn counters(card: &Card, sandbox: &Sandbox) -> (String, String, String) {
    let state = card.state(sandbox);
    let get = |k: &str| state.get(k).cloned().unwrap_or_default();
    (get("BOOT_ORDER"), get("BOOT_A_LEFT"), get("BOOT_B_LEFT"))
}

fn expect(order: &str, a: &str, b: &str) -> (String, String, String) {
    (order.to_string(), a.to_string(), b.to_string())
}

#[test]
fn boots_a_counts_down_falls_back_to_b_after_three_failed_boots_and_boots_b_after_mark_good() {
    let test =
        "boots_a_counts_down_falls_back_to_b_after_three_failed_boots_and_boots_b_after_mark_good";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);

    // A fresh card's two copies are valid and empty: the defaults, written into the second.
    let first = card.boot(&sandbox);
    first.assert_booted(&card, 'A');
    assert_eq!(counters(&card, &sandbox), expect("A B", "2", "3"));
    // Only the three bootchooser names are written.
    assert_eq!(card.state(&sandbox).len(), 3, "{:?}", card.state(&sandbox));

    // A never marks itself good (its root does not mount, panic=10 resets): each boot costs a try.
    card.boot(&sandbox).assert_booted(&card, 'A');
    assert_eq!(counters(&card, &sandbox), expect("A B", "1", "3"));
    card.boot(&sandbox).assert_booted(&card, 'A');
    assert_eq!(counters(&card, &sandbox), expect("A B", "0", "3"));

    // Three failed boots of A: B.
    card.boot(&sandbox).assert_booted(&card, 'B');
    assert_eq!(counters(&card, &sandbox), expect("A B", "0", "2"));

    // B comes up and RAUC marks it good (and primary) through libubootenv.
    card.fw_setenv(&sandbox, &[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "3")]);
    for _ in 0..3 {
        card.boot(&sandbox).assert_booted(&card, 'B');
        assert_eq!(counters(&card, &sandbox), expect("B A", "0", "2"));
        // ...and again after each good boot, so B keeps booting.
        card.fw_setenv(&sandbox, &[("BOOT_B_LEFT", "3")]);
    }

    // Both slots out of tries: the counters go back to 3 and the board resets without booting.
    card.fw_setenv(&sandbox, &[("BOOT_A_LEFT", "0"), ("BOOT_B_LEFT", "0")]);
    let exhausted = card.boot(&sandbox);
    assert!(
        exhausted.console.contains(
            "berth: no slot has tries left; every counter goes back to 3 and the board resets"
        ),
        "{}",
        exhausted.console
    );
    assert_eq!(exhausted.slot, None);
    assert_eq!(exhausted.bootargs, None, "{}", exhausted.console);
    assert_eq!(counters(&card, &sandbox), expect("B A", "3", "3"));
    card.boot(&sandbox).assert_booted(&card, 'B');
}

#[test]
fn a_slot_without_its_env_file_is_skipped() {
    let test = "a_slot_without_its_env_file_is_skipped";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    // The factory card: slot B is an empty hole until an update writes slot-B.env.
    let card = Card::new(&['A']);
    card.boot(&sandbox).assert_booted(&card, 'A');
    card.fw_setenv(&sandbox, &[("BOOT_ORDER", "B A")]);
    let boot = card.boot(&sandbox);
    assert!(
        boot.console
            .contains("berth: slot B has no slot-B.env, skipped"),
        "{}",
        boot.console
    );
    boot.assert_booted(&card, 'A');
    assert_eq!(counters(&card, &sandbox), expect("B A", "1", "3"));

    // No slot-X.env at all: nothing to boot here; distro boot goes on to the next device.
    let empty = Card::new(&[]);
    let boot = empty.boot(&sandbox);
    assert!(
        boot.console
            .contains("berth: no slot-A.env or slot-B.env on host 0:1, nothing to boot here")
            && boot.console.contains("berth-test: the script returned"),
        "{}",
        boot.console
    );
    assert_eq!(boot.bootargs, None);
}

/// Where the copy's flag byte is: after its CRC.
const FLAG_OFFSET: usize = 4;

#[test]
fn with_both_copies_corrupt_the_defaults_apply() {
    let test = "with_both_copies_corrupt_the_defaults_apply";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);
    card.boot(&sandbox).assert_booted(&card, 'A');
    card.fw_setenv(&sandbox, &[("BOOT_ORDER", "B A"), ("BOOT_A_LEFT", "1")]);
    for (name, _) in state_copies() {
        card.edit_copy(&name, |bytes| bytes[8] ^= 0x01);
    }

    let boot = card.boot(&sandbox);
    for (name, _) in state_copies() {
        let line = format!("berth: {name} is unreadable or corrupt");
        assert!(boot.console.contains(&line), "{}", boot.console);
    }
    assert!(
        boot.console
            .contains("berth: no copy of the boot state is valid, using the defaults"),
        "{}",
        boot.console
    );
    boot.assert_booted(&card, 'A');
    assert_eq!(counters(&card, &sandbox), expect("A B", "2", "3"));
}

/// The defect the twin's power cut found: with one uboot.env, fw_setenv wrote a new file and
/// renamed it over the old on the FAT, a cut left the file's cluster chain broken, and every
/// boot after that fell back to the defaults while mark-good failed. Two copies, each written in
/// place: a write cut short spoils only the copy it was writing, and the other one holds.
#[test]
fn a_write_cut_short_spoils_only_its_copy_and_the_other_holds() {
    let test = "a_write_cut_short_spoils_only_its_copy_and_the_other_holds";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);
    let copies = state_copies();
    assert_eq!(copies.len(), 2, "fw_env.config must name two copies");
    // Each write goes to the other copy: U-Boot's, then RAUC's (B good and primary), then U-Boot's.
    card.boot(&sandbox).assert_booted(&card, 'A');
    card.fw_setenv(&sandbox, &[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "3")]);
    let b_good = card.boot(&sandbox);
    b_good.assert_booted(&card, 'B');
    assert_eq!(counters(&card, &sandbox), expect("B A", "2", "2"));
    // That boot read one copy and wrote the other: the written one is now the newer.
    let read_first = b_good
        .console
        .contains(&format!("berth: boot state read from {}", copies[0].0));
    let (newest, older) = if read_first {
        (&copies[1].0, &copies[0].0)
    } else {
        (&copies[0].0, &copies[1].0)
    };

    // The power goes while U-Boot writes the next try over the older copy: its tail is lost.
    card.edit_copy(older, |bytes| {
        let half = bytes.len() / 2;
        bytes[half..].fill(0xff);
    });
    let after_cut = card.boot(&sandbox);
    assert!(
        after_cut
            .console
            .contains(&format!("berth: {older} is unreadable or corrupt"))
            && after_cut
                .console
                .contains(&format!("berth: boot state read from {newest}")),
        "{}",
        after_cut.console
    );
    // The try is counted from the state before the cut, not from the defaults (which are A).
    after_cut.assert_booted(&card, 'B');
    assert_eq!(counters(&card, &sandbox), expect("B A", "2", "1"));

    // The spoiled copy is simply the next one written; fw_setenv still marks good.
    card.fw_setenv(&sandbox, &[("BOOT_B_LEFT", "3")]);
    assert_eq!(counters(&card, &sandbox), expect("B A", "2", "3"));
    card.boot(&sandbox).assert_booted(&card, 'B');
    assert_eq!(counters(&card, &sandbox), expect("B A", "2", "2"));
}

/// fw_env's choice (the higher flag; the first copy on a tie; 0 after ff) and the script's agree.
#[test]
fn the_script_and_fw_printenv_choose_the_same_copy_by_its_flag() {
    let test = "the_script_and_fw_printenv_choose_the_same_copy_by_its_flag";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);
    let copies = state_copies();
    // Two valid copies that differ: the first says A first, the second B first.
    let orders = ["A B", "B A"];
    for (first_flag, second_flag, winner) in [
        (7u8, 9u8, 1),
        (9, 7, 0),
        (5, 5, 0),
        (0xff, 0, 1),
        (0, 0xff, 0),
    ] {
        let case = format!("flags {first_flag:#x} and {second_flag:#x}");
        for ((name, size), (order, flag)) in copies
            .iter()
            .zip(orders.iter().zip([first_flag, second_flag]))
        {
            let file = card.dir.path().join(name);
            common::run_ok_with_input(
                Command::new("mkenvimage")
                    .args(["-r", "-p", "0", "-s", size, "-o"])
                    .arg(&file)
                    .arg("-"),
                format!("BOOT_ORDER={order}\n").as_bytes(),
            );
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[FLAG_OFFSET] = flag;
            std::fs::write(&file, bytes).unwrap();
            card.copy_in(name);
        }
        assert_eq!(
            card.state(&sandbox)["BOOT_ORDER"],
            orders[winner],
            "fw_printenv, {case}"
        );
        let boot = card.boot(&sandbox);
        let read = format!("berth: boot state read from {}", copies[winner].0);
        assert!(boot.console.contains(&read), "{case}:\n{}", boot.console);
        boot.assert_booted(&card, ['A', 'B'][winner]);
        // The script wrote the other copy, its flag one past the winner's, so that one now wins.
        let written = std::fs::read(card.copy_out(&copies[1 - winner].0)).unwrap();
        let won = [first_flag, second_flag][winner];
        assert_eq!(written[FLAG_OFFSET], won.wrapping_add(1), "{case}");
        assert_eq!(card.state(&sandbox)["BOOT_ORDER"], orders[winner], "{case}");
    }
}

#[test]
fn a_uboot_env_carrying_other_variables_or_bad_values_changes_nothing() {
    let test = "a_uboot_env_carrying_other_variables_or_bad_values_changes_nothing";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);
    card.boot(&sandbox).assert_booted(&card, 'A');
    card.fw_setenv(
        &sandbox,
        &[
            ("bootargs", "init=/bin/sh"),
            ("bootcmd", "echo owned"),
            ("fdtfile", "evil.dtb"),
            ("berth_cmdline", "init=/bin/sh"),
            ("berth_verity_root_hash", "00"),
            ("kernel_addr_r", "0x0"),
            // Unknown and repeated slots are dropped; an out-of-range count is taken as missing.
            ("BOOT_ORDER", "C B B A"),
            ("BOOT_A_LEFT", "7"),
        ],
    );
    let boot = card.boot(&sandbox);
    boot.assert_booted(&card, 'B');
    assert!(!boot.console.contains("owned"), "{}", boot.console);
    // Written back: only the three names, cleaned.
    let state = card.state(&sandbox);
    assert_eq!(
        state.keys().map(String::as_str).collect::<Vec<_>>(),
        ["BOOT_A_LEFT", "BOOT_B_LEFT", "BOOT_ORDER"]
    );
    assert_eq!(counters(&card, &sandbox), expect("B A", "3", "2"));
}

#[test]
fn the_twin_boots_with_the_device_tree_at_fdt_addr_and_without_one_spends_the_try() {
    let test = "the_twin_boots_with_the_device_tree_at_fdt_addr_and_without_one_spends_the_try";
    let Some(sandbox) = sandbox(test) else {
        return;
    };
    let card = Card::new(&['A', 'B']);

    // No fdtfile and nothing at fdt_addr: the slot cannot start, and its try is spent.
    let lost = card.boot_with(&sandbox, Dt::Neither);
    assert!(
        lost.console
            .contains("berth: slot A did not start; resetting")
            && !lost.console.contains("## Transferring control to Linux"),
        "{}",
        lost.console
    );
    assert_eq!(lost.bootargs, None, "{}", lost.console);
    assert_eq!(counters(&card, &sandbox), expect("A B", "2", "3"));

    // QEMU virt's own DTB at fdt_addr: slot A's kernel boots on it, the PL011 named last.
    let twin = card.boot_with(&sandbox, Dt::Twin);
    assert!(
        twin.console.contains("## Transferring control to Linux")
            && twin
                .console
                .contains(&format!("Booting using the fdt blob at {TWIN_FDT_ADDR}")),
        "{}",
        twin.console
    );
    assert_ne!(card.slot('A').model(), TWIN_MODEL);
    twin.assert_started(
        &card,
        'A',
        &card.slot('A').bootargs(TWIN_CONSOLE),
        TWIN_MODEL,
    );
    assert_eq!(counters(&card, &sandbox), expect("A B", "1", "3"));
}
