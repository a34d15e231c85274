//! The QEMU command line of the twin (pure): `-M virt` with the board's CPU, the twin's U-Boot as
//! its firmware, the card and the key medium as virtio disks, and user networking that reaches
//! nothing but the host, with the guest's SSH port forwarded to one on the host's loopback.

use std::ffi::OsString;
use std::path::PathBuf;

/// The emulator the twin runs under (Debian's qemu-system-arm).
pub const QEMU: &str = "qemu-system-arm";
/// The XU4's Cortex-A15 cores; two of them, as the machine running the twin has two.
pub const CPU: &str = "cortex-a15";
/// The board has 2 GiB; 1 GiB keeps the twin's RAM within the 32-bit `virt` map below 4 GiB
/// (`highmem=off`, which the ARMv7 kernel without LPAE needs) and leaves the host room.
pub const MEMORY_MIB: u32 = 1024;
pub const CPUS: u32 = 2;

/// How QEMU's serial console is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// On the terminal, for a person (`-nographic`: Ctrl-A X quits).
    Terminal,
    /// On QEMU's standard input and output, for the test suite to read and write.
    Pipe,
}

/// One twin machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The twin's U-Boot (`u-boot-qemu-twin.bin`), run as the machine's firmware.
    pub firmware: PathBuf,
    /// The card the twin boots: a copy-on-write overlay over the release's card, or a copy.
    pub card: PathBuf,
    /// `qcow2` for an overlay, `raw` for a copy.
    pub card_format: &'static str,
    /// A write log of the card (a raw copy then): QEMU's `blklogwrites` records every write and
    /// flush in it, for the power-cut model that replays a prefix ([`super::writelog`]).
    pub card_log: Option<PathBuf>,
    /// A FAT image holding the data partition's key file, when the build's key policy needs one.
    pub key_medium: Option<PathBuf>,
    /// The host loopback port forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// The real-time clock's start, as QEMU's `-rtc base=` takes it; `None` is the host's UTC.
    pub rtc_base: Option<String>,
    pub console: Console,
}

impl Machine {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "-M",
            "virt,highmem=off",
            "-cpu",
            CPU,
            "-smp",
            &CPUS.to_string(),
            "-m",
            &MEMORY_MIB.to_string(),
            // A reset (the boot script's `reset`, a reboot, panic=10) restarts the machine, as on
            // the board; only what the suite asks for is attached.
            "-no-user-config",
            "-nodefaults",
            "-bios",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(self.firmware.clone().into_os_string());
        match &self.card_log {
            None => args.extend(drive("card", &self.card, self.card_format)),
            Some(log) => {
                args.extend(
                    super::writelog::blockdev_args(&self.card, log, "card")
                        .into_iter()
                        .map(OsString::from),
                );
                args.push("-device".into());
                args.push("virtio-blk-device,drive=card".into());
            }
        }
        if let Some(key) = &self.key_medium {
            args.extend(drive("key", key, "raw"));
        }
        // restrict=on: the guest reaches nothing, not even the host, but the forwarded port
        // still reaches the guest.
        args.push("-netdev".into());
        args.push(
            format!(
                "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:22",
                self.ssh_port
            )
            .into(),
        );
        args.push("-device".into());
        args.push("virtio-net-device,netdev=net0".into());
        args.push("-device".into());
        args.push("virtio-rng-device".into());
        args.push("-rtc".into());
        args.push(match &self.rtc_base {
            Some(base) => format!("base={base},clock=vm").into(),
            None => "base=utc".into(),
        });
        match self.console {
            // -nodefaults drops the default serial port: the console and the monitor share
            // the terminal, Ctrl-A C switching between them and Ctrl-A X quitting.
            Console::Terminal => {
                for a in ["-nographic", "-serial", "mon:stdio"] {
                    args.push(a.into());
                }
            }
            Console::Pipe => {
                for a in ["-display", "none", "-monitor", "none", "-serial", "stdio"] {
                    args.push(a.into());
                }
            }
        }
        args
    }
}

/// A virtio-mmio disk; the first one declared is U-Boot's `virtio 0`, where bootstd finds boot.scr.
fn drive(id: &str, file: &std::path::Path, format: &str) -> Vec<OsString> {
    let mut spec = OsString::from(format!(
        "if=none,id={id},format={format},cache=writeback,file="
    ));
    // QEMU's option syntax doubles a comma inside a value.
    spec.push(file.as_os_str().to_string_lossy().replace(',', ",,"));
    vec![
        "-drive".into(),
        spec,
        "-device".into(),
        format!("virtio-blk-device,drive={id}").into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            firmware: "/out/images/u-boot-qemu-twin.bin".into(),
            card: "/state/card,1.qcow2".into(),
            card_format: "qcow2",
            card_log: None,
            key_medium: Some("/state/key.img".into()),
            ssh_port: 10022,
            rtc_base: None,
            console: Console::Pipe,
        }
    }

    fn line(m: &Machine) -> String {
        m.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_twin_is_a_cortex_a15_virt_machine_below_4_gib_booting_its_u_boot() {
        let l = line(&machine());
        assert!(
            l.starts_with("-M virt,highmem=off -cpu cortex-a15 -smp 2 -m 1024 "),
            "{l}"
        );
        assert!(
            l.contains(" -bios /out/images/u-boot-qemu-twin.bin "),
            "{l}"
        );
    }

    #[test]
    fn the_card_is_the_first_virtio_disk_and_commas_in_paths_are_escaped() {
        let l = line(&machine());
        let card = l
            .find("id=card,format=qcow2,cache=writeback,file=/state/card,,1.qcow2")
            .unwrap();
        let key = l
            .find("id=key,format=raw,cache=writeback,file=/state/key.img")
            .unwrap();
        assert!(card < key, "{l}");
        let mut no_key = machine();
        no_key.key_medium = None;
        assert!(!line(&no_key).contains("id=key"));
    }

    #[test]
    fn a_logged_card_is_a_blklogwrites_node_and_still_the_first_disk() {
        let mut m = machine();
        m.card = "/state/card.img".into();
        m.card_log = Some("/state/card.log".into());
        let l = line(&m);
        assert!(!l.contains("id=card,"), "{l}");
        let filter = l
            .find("driver=blklogwrites,node-name=card,file=card-base,log=card-log")
            .unwrap();
        let device = l.find("-device virtio-blk-device,drive=card ").unwrap();
        let key = l.find("id=key,").unwrap();
        assert!(filter < device && device < key, "{l}");
    }

    #[test]
    fn the_network_reaches_only_the_forwarded_ssh_port_on_loopback() {
        let l = line(&machine());
        assert!(
            l.contains("-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:10022-:22"),
            "{l}"
        );
    }

    #[test]
    fn the_console_is_the_terminal_or_a_pipe_and_the_clock_can_start_in_1970() {
        let mut m = machine();
        assert!(line(&m).contains("-display none -monitor none -serial stdio"));
        assert!(line(&m).contains("-rtc base=utc"));
        m.console = Console::Terminal;
        m.rtc_base = Some("1970-01-01T00:00:00".into());
        let l = line(&m);
        assert!(
            l.contains("-nographic") && !l.contains("-serial stdio"),
            "{l}"
        );
        assert!(l.contains("-rtc base=1970-01-01T00:00:00,clock=vm"), "{l}");
    }
}
