//! Docker on the running twin: the daemon's storage, cgroup and isolation settings, a test app
//! run exactly as an app unit runs it (the suite declares it and builds its image offline), the
//! inter-container isolation, and the apps the build declared, loaded from the slot.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use super::harness::{check, Suite, COMMAND_DEADLINE};
use crate::apps::spec::{self, App};
use crate::apps::{self, units};
use crate::project;

const PROBE_SOURCE: &str = include_str!("../probe.c");
/// The name the test container's image is imported under.
const PROBE_IMAGE: &str = "berth-twin-probe:test";
/// Both listener and client of the isolation test.
const PROBE_PORT: u16 = 8080;

/// The test app, declared as a user declares one (apps.toml), with limits of its own so the
/// cgroup shows these and not the defaults. The image reference is never pulled: the suite
/// runs the image it imported, by ID, as the units do.
fn test_app(s: &Suite, name: &str, command: &str) -> Result<App> {
    let text = format!(
        "[[app]]\nname = \"{name}\"\n\
         image = \"registry.invalid/berth/probe:1@sha256:{zeros}\"\n\
         command = {command}\nmemory = \"48m\"\npids = 24\ncpus = 0.5\n",
        zeros = "0".repeat(64)
    );
    let board = project::board(project::DEFAULT_BOARD)?;
    let (limits, _) = apps::board_limits(s.repo, board)?;
    let mut parsed = spec::parse(&text, "the suite's test app", &limits)?;
    parsed.pop().context("the test app did not parse")
}

pub fn all(s: &mut Suite) {
    s.test(
        "docker/info-overlay2-cgroup-v2-userns-remap-apparmor-seccomp",
        |s| {
            s.ensure_up()?;
            let info = s.ssh("docker info --format '{{json .}}'")?;
            let v: serde_json::Value =
                serde_json::from_str(&info).context("docker info is not JSON")?;
            let options: Vec<&str> = v["SecurityOptions"]
                .as_array()
                .map(|a| a.iter().filter_map(|o| o.as_str()).collect())
                .unwrap_or_default();
            let has = |name: &str| {
                options
                    .iter()
                    .any(|o| o.starts_with(&format!("name={name}")))
            };
            check(v["Driver"] == "overlay2", || {
                format!("storage driver {}", v["Driver"])
            })?;
            check(v["CgroupVersion"] == "2", || {
                format!("cgroup version {}", v["CgroupVersion"])
            })?;
            check(has("userns") && has("apparmor") && has("seccomp"), || {
                format!("security options {options:?} lack userns, apparmor or seccomp")
            })
        },
    );
    s.test("docker/test-app-imported-offline", |s| {
        s.ensure_up()?;
        import_probe(s).map(|id| println!("     {PROBE_IMAGE} is {id}"))
    });
    s.test(
        "docker/test-app-runs-hardened-as-its-unit-runs-it",
        hardened_app,
    );
    s.test(
        "docker/containers-without-a-link-cannot-reach-each-other",
        isolation,
    );
    s.test(
        "docker/declared-apps-run-from-the-slot-hardened",
        declared_apps,
    );
}

/// Build the probe (a static ARM program), import it as the only file of an image, and return
/// the image's ID.
fn import_probe(s: &Suite) -> Result<String> {
    let dir = s.work.join("probe");
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("probe.c");
    let binary = dir.join("probe");
    std::fs::write(&source, PROBE_SOURCE)?;
    let sh = &s.sh;
    cmd!(
        sh,
        "arm-linux-gnueabihf-gcc -static -O2 -Wall -o {binary} {source}"
    )
    .run()
    .context(
        "could not build the test container's program (is libc6-dev-armhf-cross installed?)",
    )?;
    let tarball = dir.join("probe.tar");
    write_image_tar(&binary, &tarball)?;
    let out = s.twin.ssh_output(
        &format!("docker import - {PROBE_IMAGE}"),
        Some(&tarball),
        COMMAND_DEADLINE,
    )?;
    if !out.status.success() {
        bail!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `docker import` prints the new image's ID.
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write_image_tar(binary: &Path, tarball: &Path) -> Result<()> {
    let mut tar = tar::Builder::new(std::fs::File::create(tarball)?);
    let bytes = std::fs::read(binary)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, "probe", bytes.as_slice())?;
    tar.into_inner()?;
    Ok(())
}

fn probe_id(s: &Suite) -> Result<String> {
    let id = s.twin.ssh_output(
        &format!("docker image inspect --format '{{{{.Id}}}}' {PROBE_IMAGE}"),
        None,
        COMMAND_DEADLINE,
    )?;
    if id.status.success() {
        return Ok(String::from_utf8_lossy(&id.stdout).trim().to_string());
    }
    import_probe(s)
}

/// The unit's `docker run` arguments as one shell line (each argument single-quoted).
fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Start `app` detached, as its unit would (plus `-d`); returns the container's PID on the twin.
fn start_detached(s: &Suite, app: &App, id: &str) -> Result<String> {
    let mut args = units::run_args(app, id);
    args.insert(2, "-d".into());
    let name = units::container_name(&app.name);
    let _ = s
        .twin
        .ssh_output(&format!("docker rm -f {name}"), None, COMMAND_DEADLINE);
    s.ssh(&shell_line(&args))?;
    Ok(s.ssh(&format!(
        "docker inspect --format '{{{{.State.Pid}}}}' {name}"
    ))?
    .trim()
    .to_string())
}

/// What a container's process must show from the host.
struct Expected {
    no_capabilities: bool,
    no_new_privileges: bool,
    apparmor_profile: String,
    memory_bytes: u64,
    pids: u64,
    /// CPU time per 100 ms period, in microseconds.
    cpu_quota: u64,
}

impl Expected {
    fn of(app: &App) -> Expected {
        Expected {
            no_capabilities: app.hardening.cap_add.is_empty(),
            no_new_privileges: app.hardening.no_new_privileges,
            apparmor_profile: app.apparmor_profile().to_string(),
            memory_bytes: app.limits.memory_bytes,
            pids: app.limits.pids.into(),
            cpu_quota: (app.limits.cpus * 100_000.0).round() as u64,
        }
    }
}

/// A container's process as the host sees it: its capabilities, no_new_privs, seccomp mode,
/// AppArmor label, and its cgroup's limits.
fn judge_process(s: &Suite, pid: &str, want: &Expected) -> Result<()> {
    let status = s.ssh(&format!(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/{pid}/status"
    ))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or("?")
            .to_string()
    };
    let mut wrong = Vec::new();
    if want.no_capabilities && field("CapEff") != "0000000000000000" {
        wrong.push(format!("CapEff is {}", field("CapEff")));
    }
    if want.no_new_privileges && field("NoNewPrivs") != "1" {
        wrong.push(format!("NoNewPrivs is {}", field("NoNewPrivs")));
    }
    if field("Seccomp") != "2" {
        wrong.push(format!("Seccomp is {} (2 is filtering)", field("Seccomp")));
    }
    let label = s.ssh(&format!("cat /proc/{pid}/attr/current"))?;
    let want_label = format!("{} (enforce)", want.apparmor_profile);
    if label.trim() != want_label {
        wrong.push(format!(
            "its AppArmor label is {:?}, not {want_label:?}",
            label.trim()
        ));
    }
    let cgroup = s.ssh(&format!("sed -n 's/^0:://p' /proc/{pid}/cgroup"))?;
    let dir = format!("/sys/fs/cgroup{}", cgroup.trim());
    let limits = s.ssh(&format!(
        "cat {dir}/memory.max {dir}/pids.max {dir}/cpu.max"
    ))?;
    let limits: Vec<&str> = limits.lines().map(str::trim).collect();
    let expected = [
        want.memory_bytes.to_string(),
        want.pids.to_string(),
        format!("{} 100000", want.cpu_quota),
    ];
    if limits != expected {
        wrong.push(format!(
            "cgroup {dir} has memory.max, pids.max, cpu.max {limits:?}, not {expected:?}"
        ));
    }
    check(wrong.is_empty(), || wrong.join("; "))
}

fn hardened_app(s: &mut Suite) -> Result<()> {
    s.ensure_up()?;
    let id = probe_id(s)?;
    // Seen from inside: the root and the sysrq trigger cannot be written.
    let status_app = test_app(s, "probe-status", "[\"/probe\", \"status\"]")?;
    let inside = s.ssh(&shell_line(&units::run_args(&status_app, &id)))?;
    let mut wrong = Vec::new();
    if !inside.contains("RootWrite:\tdenied (Read-only file system)") {
        wrong.push("the root was writable (or failed otherwise)".to_string());
    }
    if !inside.lines().any(|l| l.starts_with("SysrqWrite:\tdenied")) {
        wrong.push("/proc/sysrq-trigger was writable".to_string());
    }
    check(wrong.is_empty(), || {
        format!("{}:\n{inside}", wrong.join("; "))
    })?;
    // Seen from the host: capabilities, no_new_privs, seccomp, AppArmor and the cgroup.
    let app = test_app(s, "probe", "[\"/probe\", \"sleep\"]")?;
    let pid = start_detached(s, &app, &id)?;
    let judged = judge_process(s, &pid, &Expected::of(&app));
    let _ = s.ssh(&format!(
        "docker rm -f {}",
        units::container_name(&app.name)
    ));
    judged
}

fn isolation(s: &mut Suite) -> Result<()> {
    s.ensure_up()?;
    let id = probe_id(s)?;
    let server = test_app(
        s,
        "probe-server",
        &format!("[\"/probe\", \"listen\", \"{PROBE_PORT}\"]"),
    )?;
    start_detached(s, &server, &id)?;
    let server_name = units::container_name(&server.name);
    let result = (|| {
        let ip = s.ssh(&format!(
            "docker inspect --format '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' {server_name}"
        ))?;
        let ip = ip.trim();
        // The listener answers inside its own container, so a refusal below is the network's.
        let local = s.ssh(&format!(
            "docker exec {server_name} /probe connect 127.0.0.1 {PROBE_PORT}"
        ))?;
        check(local.trim() == "connected", || {
            format!("the listener does not answer locally: {local}")
        })?;
        let client = test_app(
            s,
            "probe-client",
            &format!("[\"/probe\", \"connect\", \"{ip}\", \"{PROBE_PORT}\"]"),
        )?;
        let out = s.twin.ssh_output(
            &shell_line(&units::run_args(&client, &id)),
            None,
            COMMAND_DEADLINE,
        )?;
        let said = String::from_utf8_lossy(&out.stdout);
        check(said.trim().starts_with("refused"), || {
            format!("a container without a link reached {ip}:{PROBE_PORT}: {said}")
        })
    })();
    let _ = s.ssh(&format!("docker rm -f {server_name}"));
    result
}

/// The apps the build declared (the loader's list in the slot): each unit active, its container
/// running the preloaded image by the ID the list gives (the twin has no network, so nothing was
/// pulled), its process hardened as its unit says (`docker inspect`).
fn declared_apps(s: &mut Suite) -> Result<()> {
    s.ensure_up()?;
    let list = s.ssh(&format!(
        "cat /{}/{} 2>/dev/null || true",
        apps::ARCHIVE_DIR,
        apps::LIST_FILE
    ))?;
    let declared = apps::parse_list(&list);
    if declared.is_empty() {
        bail!(
            "this build declares no app (cargo xtask image --apps apps.toml), so the loader has \
             nothing to load; build with apps.example.toml to run this test"
        );
    }
    for (name, image_id) in &declared {
        let unit = units::unit_name(name);
        s.wait_for_unit(&unit, super::harness::GOOD_DEADLINE)
            .or_else(|_| s.ssh(&format!("systemctl is-active {unit}")).map(|_| ()))?;
        let container = units::container_name(name);
        let inspect = s.ssh(&format!("docker inspect {container}"))?;
        let v: serde_json::Value = serde_json::from_str(&inspect).context("docker inspect")?;
        let c = &v[0];
        let host = &c["HostConfig"];
        check(c["Image"].as_str() == Some(image_id.as_str()), || {
            format!(
                "{container} runs {}, not the preloaded {image_id}",
                c["Image"]
            )
        })?;
        check(host["ReadonlyRootfs"] == true, || {
            format!("{container}'s root is writable")
        })?;
        let opts: Vec<&str> = host["SecurityOpt"]
            .as_array()
            .map(|a| a.iter().filter_map(|o| o.as_str()).collect())
            .unwrap_or_default();
        let want = Expected {
            no_capabilities: host["CapAdd"].as_array().is_none_or(|a| a.is_empty()),
            no_new_privileges: opts.contains(&"no-new-privileges"),
            apparmor_profile: opts
                .iter()
                .find_map(|o| o.strip_prefix("apparmor="))
                .unwrap_or("docker-default")
                .to_string(),
            memory_bytes: host["Memory"].as_u64().unwrap_or(0),
            pids: host["PidsLimit"].as_u64().unwrap_or(0),
            cpu_quota: host["NanoCpus"].as_u64().unwrap_or(0) / 10_000,
        };
        let pid = c["State"]["Pid"].to_string();
        judge_process(s, &pid, &want).with_context(|| format!("app {name}"))?;
    }
    println!("     {} declared app(s) running", declared.len());
    Ok(())
}
