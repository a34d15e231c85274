//! The first boot and what it leaves: slot A chosen, a verified read-only root, no failed unit,
//! the data volume made and kept, the audited sysctl values live; and a boot with no network
//! and the clock in 1970.

use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::harness::{check, Suite, BOOTING_SLOT, COMMAND_DEADLINE, INSTALL_DEADLINE};
use crate::audit::exceptions::Exceptions;
use crate::audit::kernel::rules::load_rules;
use crate::audit::report::Severity;
use crate::audit::tables::{EXCEPTIONS, KERNEL_RULES};
use crate::project::DATA_PARTITION;

/// The real-time clock of the time test: the Unix epoch, as a board without its RTC battery.
const EPOCH: &str = "1970-01-01T00:00:00";

/// What berth-data-crypt says when it makes the data volume.
pub const FIRST_BOOT_FORMAT: &str = "berth-data-crypt: first boot: creating the LUKS2 volume";

pub fn boot_and_data(s: &mut Suite) {
    s.test("boot/first-boot-reaches-good", |s| {
        let t = s.power_on_until_good(Some('A'))?;
        println!(
            "     slot {} chosen at {:.1} s, SSH at {:.1} s, marked good at {:.1} s",
            t.slot,
            t.chose.as_secs_f64(),
            t.ssh.as_secs_f64(),
            t.good.as_secs_f64()
        );
        Ok(())
    });
    s.test("boot/u-boot-chose-slot-a", |s| {
        let said = s.twin.said_since(s.twin.since_power_on);
        let line = said
            .lines()
            .find(|l| l.contains(BOOTING_SLOT))
            .unwrap_or("");
        check(line.contains("booting slot A"), || {
            format!("U-Boot said: {line:?}")
        })
    });
    s.test("boot/root-is-read-only-erofs-on-dm-verity", |s| {
        let root = s.ssh("findmnt -n -o SOURCE,FSTYPE,OPTIONS /")?;
        let fields: Vec<&str> = root.split_whitespace().collect();
        check(
            fields.len() == 3 && fields[1] == "erofs" && fields[2].split(',').any(|o| o == "ro"),
            || format!("/ is {root:?}, not a read-only EROFS"),
        )?;
        // The device-mapper name of the root's block device (dm-mod.create= names it).
        let name = s.ssh(&format!(
            "cat /sys/class/block/$(basename $(readlink -f {}))/dm/name",
            fields[0]
        ))?;
        let table = s.ssh(&format!("dmsetup table {}", name.trim()))?;
        check(table.contains(" verity "), || {
            format!("{} is not dm-verity: {table}", fields[0])
        })?;
        let touch = s
            .twin
            .ssh_output("touch /berth-twin-write-test", None, COMMAND_DEADLINE)?;
        check(!touch.status.success(), || {
            "a file could be made in /".into()
        })
    });
    s.test("boot/no-failed-units", |s| {
        // Wait for the boot to finish; "degraded" is what the check below explains.
        let _ = s.twin.ssh_output(
            "systemctl is-system-running --wait",
            None,
            Duration::from_secs(600),
        );
        let failed = s.ssh("systemctl --failed --no-legend --plain")?;
        check(failed.trim().is_empty(), || {
            format!("failed units:\n{failed}")
        })
    });
    s.test("boot/rauc-says-a-booted-and-good", |s| {
        let state = s.rauc_state()?;
        check(
            state.booted == "A" && state.boot_status.get("A").map(String::as_str) == Some("good"),
            || state.describe(),
        )?;
        check(state.var("BOOT_A_LEFT") == "3", || {
            format!(
                "mark-good left BOOT_A_LEFT at {:?}, not 3: {}",
                state.var("BOOT_A_LEFT"),
                state.describe()
            )
        })
    });
    s.test("boot/kernel-not-tainted", |s| {
        let tainted = s.ssh("cat /proc/sys/kernel/tainted")?;
        check(tainted.trim() == "0", || {
            format!("/proc/sys/kernel/tainted is {}", tainted.trim())
        })
    });
    s.test("boot/sysctl-values-the-audit-requires", sysctl_values);
    s.test(
        "data/p4-is-luks2-made-on-first-boot-and-open-on-data",
        |s| {
            let said = s.twin.said_since(s.twin.since_power_on);
            check(said.contains(FIRST_BOOT_FORMAT), || {
                "the first boot did not make the data volume".into()
            })?;
            let dump = s.ssh(&format!(
                "cryptsetup luksDump /dev/disk/by-partuuid/{}",
                DATA_PARTITION.partuuid()
            ))?;
            check(
                dump.lines()
                    .any(|l| l.starts_with("Version:") && l.trim_end().ends_with('2')),
                || format!("p4 is not LUKS2:\n{dump}"),
            )?;
            let data = s.ssh("findmnt -n -o SOURCE,FSTYPE /data")?;
            check(
                data.split_whitespace().collect::<Vec<_>>() == ["/dev/mapper/berth-data", "ext4"],
                || format!("/data is {data:?}"),
            )
        },
    );
    s.test("data/var-lib-docker-is-on-data", |s| {
        let source = s.ssh("findmnt -n -o SOURCE /var/lib/docker")?;
        check(source.trim().starts_with("/dev/mapper/berth-data"), || {
            format!("/var/lib/docker comes from {source:?}")
        })
    });
    s.test("data/a-file-and-the-ssh-host-key-survive-a-reboot", |s| {
        let token = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        s.ssh(&format!("echo {token} > /data/berth-twin-token && sync"))?;
        let before = host_keys(s)?;
        let rebooted = s.reboot()?;
        s.until_good(rebooted, Some('A'))?;
        let read = s.ssh("cat /data/berth-twin-token")?;
        check(read.trim() == token, || {
            format!("/data/berth-twin-token holds {read:?} after the reboot")
        })?;
        let after = host_keys(s)?;
        check(before == after, || {
            format!("the host keys changed:\n{before}\n---\n{after}")
        })?;
        let said = s.twin.said_since(rebooted);
        check(!said.contains(FIRST_BOOT_FORMAT), || {
            "the second boot formatted the data volume again".into()
        })
    });
}

/// The guest's SSH host keys as the suite's own ssh recorded them on its first connection
/// (`StrictHostKeyChecking=accept-new`: a key that changes afterwards fails every later
/// connection). ssh-keyscan is not used: its unauthenticated probes count against the client in
/// OpenSSH's PerSourcePenalties, and on the twin it came back empty.
fn host_keys(s: &Suite) -> Result<String> {
    let path = &s.twin.ssh.known_hosts;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let mut keys: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!keys.is_empty(), "{} records no host key", path.display());
    keys.sort();
    Ok(keys.join("\n"))
}

/// Every required `[[sysctl]]` rule of the kernel table, read back from /proc/sys.
fn sysctl_values(s: &mut Suite) -> Result<()> {
    let rules = load_rules(&s.repo.path(KERNEL_RULES))?;
    // A key the exceptions file waives is not required (its reason says what it holds instead).
    let excepted: Vec<String> = Exceptions::load(&s.repo.path(EXCEPTIONS))?
        .kernel
        .iter()
        .filter_map(|e| e.subject.strip_prefix("sysctl:").map(str::to_string))
        .collect();
    let required: Vec<_> = rules
        .sysctl
        .iter()
        .filter(|r| r.severity == Severity::Required && !excepted.contains(&r.key))
        .collect();
    let paths: Vec<String> = required
        .iter()
        .map(|r| format!("/proc/sys/{}", r.key.replace('.', "/")))
        .collect();
    // One line a key, "-" for a key this kernel does not have.
    let script = paths
        .iter()
        .map(|p| format!("(cat {p} 2>/dev/null || echo -) | tr '\\t' ' '"))
        .collect::<Vec<_>>()
        .join("; ");
    let values = s.ssh(&script)?;
    let values: Vec<&str> = values.lines().collect();
    let mut wrong = Vec::new();
    for (rule, value) in required
        .iter()
        .zip(values.iter().chain(std::iter::repeat(&"?")))
    {
        let value = value.trim();
        let ok =
            rule.want.iter().any(|w| w == value) || (value == "-" && !rule.alternatives.is_empty());
        if !ok {
            wrong.push(format!(
                "{} is {value:?}, the audit requires {:?}",
                rule.key, rule.want
            ));
        }
    }
    println!(
        "     {} sysctl values read ({} excepted in {EXCEPTIONS}: {})",
        required.len(),
        excepted.len(),
        excepted.join(", ")
    );
    check(wrong.is_empty(), || wrong.join("\n"))
}

/// A boot with the real-time clock at 1970 and no network (the twin never has one), then an
/// update signed with the build's certificate.
pub fn time(s: &mut Suite) {
    s.test(
        "time/clock-at-1970-no-network-installs-a-signed-bundle",
        |s| {
            let bundle = s
                .build
                .bundle
                .clone()
                .context("the build made no update bundle")?;
            s.twin.power_cut()?;
            let t = s.power_on_until_good_with_clock(EPOCH, None)?;
            let year = s.ssh("date -u +%Y")?;
            println!(
                "     booted {} with the clock at 1970; the system says {}",
                t.slot,
                year.trim()
            );
            let target = super::updates::upload(s, &bundle)?;
            let out =
                s.twin
                    .ssh_output(&format!("rauc install {target}"), None, INSTALL_DEADLINE)?;
            check(out.status.success(), || {
                format!(
                    "rauc install failed with the clock at {}: {}",
                    year.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
            // The bundle written at 1970 boots, and is marked good, with the clock still there.
            let other = if t.slot == 'A' { 'B' } else { 'A' };
            let state = s.rauc_state()?;
            check(state.primary == other.to_string(), || state.describe())?;
            s.twin.power_cut()?;
            s.power_on_until_good_with_clock(EPOCH, Some(other))
                .map(|_| ())
        },
    );
}
