//! Updates on the running twin: the build's bundle from A to B and back, bundles RAUC or the
//! slot hook must refuse, and slots that must be left after three tries (docs/updates.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use super::harness::{
    check, Suite, BOOTING_SLOT, COMMAND_DEADLINE, GOOD_DEADLINE, INSTALL_DEADLINE, SSH_DEADLINE,
};
use crate::image::signing;
use crate::project::{self, SYSTEM_A_PARTITION, SYSTEM_B_PARTITION};
use crate::rauc::{self, Rauc};
use crate::release::SYSTEM_ENV;

/// Where bundles are put on the twin: the data volume, as a user would.
const REMOTE_DIR: &str = "/data";
/// A failing slot's three tries and the fallback, each a boot that may run until mark-good
/// gives up (a minute of waiting for dockerd).
const ROLLBACK_DEADLINE: Duration = Duration::from_secs(3600);

pub fn all(s: &mut Suite) {
    s.test("updates/bundle-from-a-to-b-and-back-to-a", |s| {
        s.ensure_up()?;
        let start = s.rauc_state()?.booted;
        check(start == "A", || format!("the twin runs {start}, not A"))?;
        let b = install_and_boot(s, 'B')?;
        check(b == 'B', || format!("booted {b} after the first update"))?;
        let a = install_and_boot(s, 'A')?;
        check(a == 'A', || format!("booted {a} after the second update"))
    });
    s.test("updates/bundle-signed-with-another-key-is-refused", |s| {
        let (key, cert) = other_pair(s)?;
        let bundle = make_bundle(s, "other-key", &board_compatible()?, (&key, &cert), None)?;
        refused(s, &bundle, "signature")
    });
    s.test("updates/bundle-for-another-compatible-is-refused", |s| {
        let pair = build_pair(s)?;
        let bundle = make_bundle(
            s,
            "other-compatible",
            "berth-not-this-board",
            (&pair.0, &pair.1),
            None,
        )?;
        refused(s, &bundle, "compatible")
    });
    s.test(
        "updates/bundle-whose-written-slot-fails-verity-never-becomes-primary",
        |s| {
            let pair = build_pair(s)?;
            // The root hash's last digit changed: the slot is written but cannot match it.
            let bundle = make_bundle(
                s,
                "bad-root-hash",
                &board_compatible()?,
                (&pair.0, &pair.1),
                Some(&|env: &str| {
                    env.lines()
                        .map(|l| match l.strip_prefix("berth_verity_root_hash=") {
                            Some(h) => {
                                let (head, last) = h.split_at(h.len() - 1);
                                format!(
                                    "berth_verity_root_hash={head}{}",
                                    if last == "0" { "1" } else { "0" }
                                )
                            }
                            None => l.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                        + "\n"
                }),
            )?;
            refused(s, &bundle, "slot hook")
        },
    );
    s.test("rollback/slot-with-a-flipped-byte-is-left-after-3-tries", |s| {
        let (bad, good) = install_then_break(s, |s, slot| {
            // Byte 100 of block 0: in the 1 KiB EROFS leaves before its superblock, so U-Boot
            // still reads the kernel, but dm-verity hashes the whole block the root mount reads.
            let dev = partition_of(slot).partuuid();
            let byte = s.ssh(&format!("dd if=/dev/disk/by-partuuid/{dev} bs=1 skip=100 count=1 2>/dev/null | od -An -tu1"))?;
            let flipped = byte.trim().parse::<u8>().context("could not read byte 100")? ^ 0xff;
            s.ssh(&format!(
                "printf '\\{flipped:03o}' | dd of=/dev/disk/by-partuuid/{dev} bs=1 seek=100 conv=notrunc 2>/dev/null && sync"
            ))
            .map(|_| ())
        })?;
        left_after_three_tries(s, bad, good)
    });
    s.test(
        "rollback/slot-whose-kernel-panics-is-left-after-3-tries",
        |s| {
            let (bad, good) = install_then_break(s, |s, slot| {
                edit_cmdline(s, slot, "init=/berth-twin-no-such-init")
            })?;
            left_after_three_tries(s, bad, good)
        },
    );
    s.test(
        "rollback/slot-whose-docker-never-answers-is-not-marked-good-and-is-left",
        |s| {
            let (bad, good) = install_then_break(s, |s, slot| {
                edit_cmdline(
                    s,
                    slot,
                    "systemd.mask=docker.service systemd.mask=docker.socket",
                )
            })?;
            left_after_three_tries(s, bad, good)
        },
    );
}

fn partition_of(slot: char) -> project::Partition {
    if slot == 'A' {
        SYSTEM_A_PARTITION
    } else {
        SYSTEM_B_PARTITION
    }
}

fn board_compatible() -> Result<String> {
    Ok(rauc::compatible(project::DEFAULT_BOARD))
}

/// Copy `bundle` to the twin's data volume; returns its path there.
pub fn upload(s: &Suite, bundle: &Path) -> Result<String> {
    let name = bundle
        .file_name()
        .context("a bundle without a name")?
        .to_string_lossy();
    let target = format!("{REMOTE_DIR}/{name}");
    let out = s.twin.ssh_output(
        &format!("cat > {target}.partial && mv {target}.partial {target}"),
        Some(bundle),
        Duration::from_secs(900),
    )?;
    if !out.status.success() {
        bail!(
            "could not copy {} to the twin: {}",
            bundle.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(target)
}

/// Install the build's bundle, which must make `slot` primary, and boot it until it is good.
pub fn install_and_boot(s: &mut Suite, slot: char) -> Result<char> {
    install_release(s, slot)?;
    let t = s.reboot_until_good(Some(slot))?;
    let state = s.rauc_state()?;
    check(
        state.booted == slot.to_string()
            && state.boot_status.get(&slot.to_string()).map(String::as_str) == Some("good"),
        || format!("after the reboot: {}", state.describe()),
    )?;
    println!(
        "     slot {slot} booted and marked good {:.1} s after the reboot",
        t.good.as_secs_f64()
    );
    Ok(t.slot)
}

/// `rauc install` of the build's bundle; it must make `slot` primary with 3 tries.
fn install_release(s: &mut Suite, slot: char) -> Result<()> {
    let bundle = s
        .build
        .bundle
        .clone()
        .context("the build made no update bundle (.raucb)")?;
    let target = upload(s, &bundle)?;
    let started = Instant::now();
    let out = s
        .twin
        .ssh_output(&format!("rauc install {target}"), None, INSTALL_DEADLINE)?;
    if !out.status.success() {
        bail!(
            "rauc install failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    println!(
        "     rauc install took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let state = s.rauc_state()?;
    check(
        state.primary == slot.to_string() && state.var(&format!("BOOT_{slot}_LEFT")) == "3",
        || format!("after the install: {}", state.describe()),
    )
}

/// The install must fail with `why` in its message, and leave the boot state as it was.
fn refused(s: &mut Suite, bundle: &Path, why: &str) -> Result<()> {
    s.ensure_up()?;
    let before = s.rauc_state()?;
    let target = upload(s, bundle)?;
    let out = s
        .twin
        .ssh_output(&format!("rauc install {target}"), None, INSTALL_DEADLINE)?;
    let _ = s.ssh(&format!("rm -f {target}"));
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // RAUC's last word, not its progress lines.
    let last_error = said
        .lines()
        .find(|l| l.contains("LastError"))
        .or_else(|| said.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
        .to_string();
    check(!out.status.success(), || {
        format!("rauc installed it: {last_error}")
    })?;
    check(last_error.to_lowercase().contains(why), || {
        format!("refused, but not for its {why}: {last_error}")
    })?;
    let hook_failed = why == "slot hook";
    if hook_failed {
        // The hook says why on RAUC's log: the written slot did not match the bundle's hash.
        let log = s.ssh("journalctl -b -u rauc --no-pager -n 40")?;
        check(
            log.contains("berth bundle hook") && log.contains("does not match the root hash"),
            || format!("the slot hook failed, but not for the slot's verity check:\n{log}"),
        )?;
    }
    let after = s.rauc_state()?;
    let other = if before.booted == "A" { 'B' } else { 'A' };
    // A bundle refused before the write leaves the state as it was; one whose written slot failed
    // leaves that slot marked bad (RAUC marks it before writing, docs/updates.md): in both, the
    // running slot stays primary and first, and the other gets no try.
    let unchanged = after.var("BOOT_ORDER") == before.var("BOOT_ORDER");
    let left_bad = hook_failed
        && after.var("BOOT_ORDER").split_whitespace().next() == Some(before.booted.as_str())
        && after.var(&format!("BOOT_{other}_LEFT")) == "0";
    check(
        after.primary == before.primary && (unchanged || left_bad),
        || {
            format!(
                "the boot state changed: before {}, after {}",
                before.describe(),
                after.describe()
            )
        },
    )?;
    let env = s.twin.ssh_output(
        &format!("test -e /boot/firmware/slot-{other}.env"),
        None,
        COMMAND_DEADLINE,
    )?;
    check(!env.status.success() || !hook_failed, || {
        format!("slot-{other}.env exists after a slot failed verity")
    })?;
    println!("     refused: {last_error}");
    Ok(())
}

/// The build's signing pair: named on the command line, else `image`'s development pair.
fn build_pair(s: &Suite) -> Result<(PathBuf, PathBuf)> {
    if let (Some(key), Some(cert)) = (&s.args.signing_key, &s.args.signing_cert) {
        return Ok((key.clone(), cert.clone()));
    }
    let dir = s.output.join(signing::DEVELOPMENT_DIR);
    let (key, cert) = (
        dir.join(signing::DEVELOPMENT_KEY),
        dir.join(signing::DEVELOPMENT_CERT),
    );
    if !key.is_file() || !cert.is_file() {
        bail!(
            "this test signs a bundle as the build does: pass --signing-key and --signing-cert \
             (the build used neither the development pair in {})",
            dir.display()
        );
    }
    Ok((key, cert))
}

/// A throw-away pair the image does not trust.
fn other_pair(s: &Suite) -> Result<(PathBuf, PathBuf)> {
    let dir = s.work.join("other-signer");
    std::fs::create_dir_all(&dir)?;
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let sh = &s.sh;
    cmd!(sh, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=not-berth -keyout {key} -out {cert}")
        .quiet()
        .ignore_stderr()
        .run()
        .context("openssl could not make a throw-away signing pair")?;
    Ok((key, cert))
}

/// A bundle of the build's slot, with `compatible`, signed with `pair`, its system.env changed
/// by `edit`.
fn make_bundle(
    s: &Suite,
    name: &str,
    compatible: &str,
    pair: (&Path, &Path),
    edit: Option<&dyn Fn(&str) -> String>,
) -> Result<PathBuf> {
    let content = s.work.join(format!("bundle-{name}"));
    let board = project::board(project::DEFAULT_BOARD)?;
    let manifest = rauc::render_manifest(compatible, &format!("twin-{name}"), "twin-suite")?;
    rauc::stage_content(&content, &s.build.images, &board.dir(s.repo), &manifest)?;
    if let Some(edit) = edit {
        let env = content.join(SYSTEM_ENV);
        let text = std::fs::read_to_string(&env)?;
        // A hard link to the build's file: replace it, never write through it.
        std::fs::remove_file(&env)?;
        std::fs::write(&env, edit(&text))?;
    }
    let rauc = Some(Rauc::in_buildroot_output(s.output))
        .filter(|r| r.binary.is_file())
        .or_else(Rauc::on_path)
        .context("no rauc to make the test bundles with (apt-get install rauc)")?;
    let out = s.work.join(format!("berth-twin-{name}.raucb"));
    rauc.bundle(&s.sh, &content, pair, 0, &out)?;
    std::fs::remove_dir_all(&content)?;
    Ok(out)
}

/// Install the build's bundle into the other slot, then break that slot with `breaker`; returns
/// (the broken slot, the running one) with the broken one primary.
fn install_then_break(
    s: &mut Suite,
    breaker: impl FnOnce(&mut Suite, char) -> Result<()>,
) -> Result<(char, char)> {
    s.ensure_up()?;
    let good = s
        .rauc_state()?
        .booted
        .chars()
        .next()
        .context("rauc names no booted slot")?;
    let bad = if good == 'A' { 'B' } else { 'A' };
    install_release(s, bad)?;
    breaker(s, bad)?;
    Ok((bad, good))
}

/// Append `args` to slot `slot`'s kernel command line in its slot-<X>.env.
fn edit_cmdline(s: &mut Suite, slot: char, args: &str) -> Result<()> {
    s.ssh(&format!(
        "sed -i 's|^berth_cmdline=.*|& {args}|' /boot/firmware/slot-{slot}.env && sync"
    ))
    .map(|_| ())
}

/// Reboot; U-Boot must try `bad` three times, then boot `good`, which is marked good, with the
/// counters docs/updates.md gives: `bad` at 0 tries, `good` back at 3.
fn left_after_three_tries(s: &mut Suite, bad: char, good: char) -> Result<()> {
    let mut from = s.reboot()?;
    let until = Instant::now() + ROLLBACK_DEADLINE;
    let mut chosen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let found = s.twin.expect(from, &[BOOTING_SLOT], left)?;
        let slot = found.line[found.line.find(BOOTING_SLOT).unwrap() + BOOTING_SLOT.len()..]
            .chars()
            .next()
            .unwrap_or('?');
        chosen.push(slot);
        from = found.next;
        if slot == good || chosen.len() > 4 {
            break;
        }
    }
    let want = vec![bad, bad, bad, good];
    check(chosen == want, || {
        format!("U-Boot chose {chosen:?}, not {want:?}")
    })?;
    s.twin.wait_for_ssh(SSH_DEADLINE)?;
    s.wait_for_unit("berth-rauc-mark-good.service", GOOD_DEADLINE)?;
    let state = s.rauc_state()?;
    check(
        state.booted == good.to_string()
            && state.var(&format!("BOOT_{bad}_LEFT")) == "0"
            && state.var(&format!("BOOT_{good}_LEFT")) == "3",
        || state.describe(),
    )?;
    println!("     U-Boot chose {chosen:?}; then {}", state.describe());
    Ok(())
}
