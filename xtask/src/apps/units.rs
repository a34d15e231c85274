//! The systemd unit of each app: `docker run` with the declared limits and the hardened defaults,
//! after dockerd, the encrypted data partition and the app's image loader. Pure.
//!
//! The command is built as a list of arguments and only then written in systemd's quoting, so
//! no value from `apps.toml` can add an argument or a shell construct.

use super::spec::{App, Namespace, Network, Restart, Seccomp, Setting, Userns};

/// Where the board's Docker client lives (Buildroot's docker-cli).
const DOCKER: &str = "/usr/bin/docker";
/// The loader template unit shipped in the rootfs overlay; one instance per app.
pub const LOADER_TEMPLATE: &str = "berth-apps-load@.service";
/// Each weakening's reason is written in the unit under this prefix and the setting's key
/// (`X-Berth-Reason-apparmor=…`), so the image audit and a reader see why: systemd ignores keys
/// that start with `X-` (systemd.unit(5)).
pub const REASON_KEY_PREFIX: &str = "X-Berth-Reason-";
/// How long systemd counts restarts over, for `on-failure:N`.
const RESTART_WINDOW_SECS: u32 = 600;

/// `berth-app-<name>.service`.
pub fn unit_name(app: &str) -> String {
    format!("berth-app-{app}.service")
}

/// The Docker container name, apart from any container started by hand.
pub fn container_name(app: &str) -> String {
    format!("berth-{app}")
}

fn loader_instance(app: &str) -> String {
    LOADER_TEMPLATE.replace('@', &format!("@{app}"))
}

/// `docker run …` for `app`, whose image was loaded with the ID `image_id` (`sha256:…`, the
/// digest of its config): running by ID means nothing but the preloaded image can start.
pub fn run_args(app: &App, image_id: &str) -> Vec<String> {
    let h = &app.hardening;
    let memory = app.limits.memory_bytes.to_string();
    let mut args: Vec<String> = vec![DOCKER.into(), "run".into(), "--pull=never".into()];
    args.extend(["--rm".into(), "--name".into(), container_name(&app.name)]);
    // The same value for both: no swap on top of the memory limit (the board has none anyway).
    args.extend(["--memory".into(), memory.clone()]);
    args.extend(["--memory-swap".into(), memory]);
    args.extend(["--pids-limit".into(), app.limits.pids.to_string()]);
    args.extend(["--cpus".into(), app.limits.cpus.to_string()]);
    if h.read_only {
        args.push("--read-only".into());
    }
    args.extend(["--cap-drop".into(), "ALL".into()]);
    for cap in &h.cap_add {
        args.extend(["--cap-add".into(), cap.clone()]);
    }
    if h.privileged {
        args.push("--privileged".into());
    }
    if h.no_new_privileges {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    // Explicit even for docker-default, so the unit shows which profile confines the app.
    args.extend([
        "--security-opt".into(),
        format!("apparmor={}", app.apparmor_profile()),
    ]);
    if h.seccomp == Seccomp::Unconfined {
        args.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
    args.push(
        match h.network {
            Network::Bridge => "--network=bridge",
            Network::None => "--network=none",
            Network::Host => "--network=host",
        }
        .into(),
    );
    if h.pid == Namespace::Host {
        args.push("--pid=host".into());
    }
    if h.ipc == Namespace::Host {
        args.push("--ipc=host".into());
    }
    if h.userns == Userns::Host {
        args.push("--userns=host".into());
    }
    for link in &app.links {
        let target = container_name(link);
        args.extend(["--link".into(), format!("{target}:{link}")]);
    }
    for p in &app.ports {
        let ip = p
            .host_ip
            .as_ref()
            .map(|ip| format!("{ip}:"))
            .unwrap_or_default();
        let publish = format!("{ip}{}:{}/{}", p.host, p.container, p.protocol);
        args.extend(["--publish".into(), publish]);
    }
    for v in &app.volumes {
        let mode = if v.read_only { ":ro" } else { "" };
        args.extend([
            "--volume".into(),
            format!("{}:{}{mode}", v.source, v.target),
        ]);
    }
    for t in &app.tmpfs {
        args.extend(["--tmpfs".into(), format!("{t}:rw,noexec,nosuid,nodev")]);
    }
    for (key, value) in &app.env {
        args.extend(["--env".into(), format!("{key}={value}")]);
    }
    args.push(image_id.into());
    args.extend(app.command.iter().cloned());
    args
}

/// One argument in systemd's command-line syntax: `%` and `$` doubled so systemd expands
/// nothing, and double quotes (with `\` escapes) around anything systemd would split or unquote.
pub fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && !escaped
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | ';'));
    if plain {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The unit file of `app`; `data_mount` is where the encrypted data partition is mounted.
pub fn unit(app: &App, image_id: &str, data_mount: &str) -> String {
    let loader = loader_instance(&app.name);
    let links: Vec<String> = app.links.iter().map(|l| unit_name(l)).collect();
    let after = [
        vec!["docker.service".to_string(), loader.clone()],
        links.clone(),
    ]
    .concat();
    let (restart, burst) = match app.restart {
        Restart::No => ("no", None),
        // systemd counts starts, so N restarts are N + 1 starts within the window.
        Restart::OnFailure(n) => ("on-failure", Some(n + 1)),
        Restart::Always => ("always", None),
    };
    let container = container_name(&app.name);
    let mut text = format!(
        "# Generated by `cargo xtask image` from apps.toml: edit apps.toml, not this file.\n\
         [Unit]\n\
         Description=Berth app {name} ({image})\n\
         Requires=docker.service {loader}{requires_links}\n\
         After={after}\n\
         RequiresMountsFor={data_mount}\n",
        name = app.name,
        image = app.image,
        requires_links = links.iter().map(|l| format!(" {l}")).collect::<String>(),
        after = after.join(" "),
    );
    for setting in Setting::WEAKENABLE {
        if let (Some(_), Some(reason)) = (app.weakening(*setting), app.reason(*setting)) {
            // A unit value is one line.
            let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            text.push_str(&format!("{REASON_KEY_PREFIX}{}={reason}\n", setting.key()));
        }
    }
    if let Some(burst) = burst {
        text.push_str(&format!(
            "StartLimitIntervalSec={RESTART_WINDOW_SECS}\nStartLimitBurst={burst}\n"
        ));
    }
    text.push_str(&format!(
        "\n[Service]\n\
         # A container left behind by a power cut would block the name.\n\
         ExecStartPre=-{DOCKER} rm --force {container}\n\
         ExecStart={run}\n\
         ExecStop={DOCKER} stop {container}\n\
         Restart={restart}\n\
         RestartSec=5\n\
         \n[Install]\n\
         WantedBy=multi-user.target\n",
        run = command_line(&run_args(app, image_id)),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::super::spec::tests::{board, DIGEST};
    use super::super::spec::{parse, Setting};
    use super::*;

    const ID: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn one(extra: &str) -> App {
        let text = format!(
            "[[app]]\nname = \"db\"\nimage = \"docker.io/a/db@{DIGEST}\"\n\
             [[app]]\nname = \"web\"\nimage = \"docker.io/library/busybox@{DIGEST}\"\n{extra}"
        );
        parse(&text, "apps.toml", &board()).unwrap().remove(1)
    }

    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn units_carry_the_declared_limits_and_the_hardened_defaults() {
        let app = one("memory = \"64m\"\npids = 50\ncpus = 0.25\ncommand = [\"httpd\", \"-f\"]\n");
        let args = run_args(&app, ID);
        assert_eq!(args[..3], ["/usr/bin/docker", "run", "--pull=never"]);
        assert!(has_pair(&args, "--memory", "67108864"));
        assert!(has_pair(&args, "--memory-swap", "67108864"));
        assert!(has_pair(&args, "--pids-limit", "50"));
        assert!(has_pair(&args, "--cpus", "0.25"));
        assert!(args.contains(&"--read-only".into()));
        assert!(has_pair(&args, "--cap-drop", "ALL"));
        assert!(has_pair(&args, "--security-opt", "no-new-privileges"));
        assert!(args.contains(&"--network=bridge".into()));
        for weak in [
            "--privileged",
            "--pid=host",
            "--ipc=host",
            "--userns=host",
            "--cap-add",
        ] {
            assert!(!args.contains(&weak.into()), "{weak} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("seccomp")));
        assert_eq!(args[args.len() - 3..], [ID, "httpd", "-f"]);

        let text = unit(&app, ID, "/var/lib/docker");
        assert!(
            text.contains("\nRequires=docker.service berth-apps-load@web.service\n"),
            "{text}"
        );
        assert!(
            text.contains("\nAfter=docker.service berth-apps-load@web.service\n"),
            "{text}"
        );
        assert!(
            text.contains("\nRequiresMountsFor=/var/lib/docker\n"),
            "{text}"
        );
        assert!(
            text.contains("\nRestart=on-failure\n") && text.contains("\nStartLimitBurst=6\n"),
            "{text}"
        );
        assert!(text.contains("--memory 67108864 --memory-swap 67108864 --pids-limit 50 --cpus 0.25 --read-only --cap-drop ALL --security-opt no-new-privileges"), "{text}");
    }

    #[test]
    fn weakenings_and_wiring_appear_as_declared() {
        let app = one(
            "privileged = true\nread_only = false\nno_new_privileges = false\ncap_add = [\"NET_ADMIN\"]\n\
             seccomp = \"unconfined\"\npid = \"host\"\nipc = \"host\"\nuserns = \"host\"\nrestart = \"always\"\n\
             links = [\"db\"]\nports = [\"127.0.0.1:8080:80\"]\nvolumes = [\"/var/lib/docker/berth-volumes/w:/w:ro\"]\n\
             tmpfs = [\"/tmp\"]\nenv = { GREETING = \"hello world\" }\n",
        );
        let kept = [Setting::Network];
        for setting in Setting::WEAKENABLE.iter().filter(|s| !kept.contains(s)) {
            assert!(app.weakening(*setting).is_some(), "{setting:?}");
        }
        let args = run_args(&app, ID);
        for flag in ["--privileged", "--pid=host", "--ipc=host", "--userns=host"] {
            assert!(args.contains(&flag.into()), "{flag}");
        }
        assert!(!args.contains(&"--read-only".into()));
        assert!(has_pair(&args, "--cap-drop", "ALL") && has_pair(&args, "--cap-add", "NET_ADMIN"));
        assert!(has_pair(&args, "--security-opt", "seccomp=unconfined"));
        assert!(!has_pair(&args, "--security-opt", "no-new-privileges"));
        assert!(has_pair(&args, "--link", "berth-db:db"));
        assert!(has_pair(&args, "--publish", "127.0.0.1:8080:80/tcp"));
        assert!(has_pair(
            &args,
            "--volume",
            "/var/lib/docker/berth-volumes/w:/w:ro"
        ));
        assert!(has_pair(&args, "--tmpfs", "/tmp:rw,noexec,nosuid,nodev"));
        let text = unit(&app, ID, "/var/lib/docker");
        assert!(text.contains("--env \"GREETING=hello world\""), "{text}");
        assert!(text.contains(
            "\nRequires=docker.service berth-apps-load@web.service berth-app-db.service\n"
        ));
        assert!(text.contains("\nRestart=always\n") && !text.contains("StartLimitBurst"));
    }

    #[test]
    fn the_apparmor_profile_is_explicit_and_a_reason_is_written_in_the_unit() {
        let default = run_args(&one(""), ID);
        assert!(has_pair(
            &default,
            "--security-opt",
            "apparmor=docker-default"
        ));
        let text = unit(&one(""), ID, "/var/lib/docker");
        assert!(!text.contains(REASON_KEY_PREFIX), "{text}");

        // Unconfined with its reason (made one line), and privileged, which Docker runs
        // unconfined, with the privileged reason standing for apparmor.
        for (extra, reasons) in [
            (
                "apparmor = \"unconfined\"\n[app.reasons]\napparmor = \"ptraces\\n its workers\"\n",
                "\nX-Berth-Reason-apparmor=ptraces its workers\n",
            ),
            (
                "privileged = true\n[app.reasons]\nprivileged = \"GPIO\"\n",
                "\nX-Berth-Reason-privileged=GPIO\nX-Berth-Reason-apparmor=GPIO\n",
            ),
        ] {
            let app = one(extra);
            let args = run_args(&app, ID);
            assert!(
                has_pair(&args, "--security-opt", "apparmor=unconfined"),
                "{extra}"
            );
            let text = unit(&app, ID, "/var/lib/docker");
            assert!(text.contains(reasons), "{text}");
        }
    }

    #[test]
    fn quoting_keeps_every_value_one_literal_argument() {
        assert_eq!(systemd_quote("plain"), "plain");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("$HOME%n"), "$$HOME%%n");
        assert_eq!(systemd_quote("say \"hi\"; rm"), "\"say \\\"hi\\\"; rm\"");
        assert_eq!(systemd_quote("a\\b\nc"), "\"a\\\\b\\nc\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }
}
