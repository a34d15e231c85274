use super::*;

pub(crate) fn board() -> BoardLimits {
    BoardLimits {
        memory_bytes: 2 << 30,
        cpus: 8,
        volume_root: "/var/lib/docker/berth-volumes".into(),
    }
}

pub(crate) const DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn app(extra: &str) -> String {
    format!("[[app]]\nname = \"web\"\nimage = \"docker.io/library/busybox@{DIGEST}\"\n{extra}")
}

fn refusal(text: &str) -> String {
    format!("{:#}", parse(text, "apps.toml", &board()).unwrap_err())
}

#[test]
fn a_minimal_app_gets_the_hardened_defaults_and_limits() {
    let apps = parse(&app(""), "apps.toml", &board()).unwrap();
    let a = &apps[0];
    assert_eq!(a.name, "web");
    assert_eq!(a.line, 1);
    assert_eq!(a.image.registry, "docker.io");
    assert_eq!(a.image.repository, "library/busybox");
    assert_eq!(a.limits.memory_bytes, 192 << 20);
    assert_eq!((a.limits.pids, a.limits.cpus), (DEFAULT_PIDS, DEFAULT_CPUS));
    assert_eq!(a.restart, Restart::OnFailure(5));
    let h = &a.hardening;
    assert!(h.read_only && h.no_new_privileges && !h.privileged && h.cap_add.is_empty());
    assert_eq!(
        (h.network, h.pid, h.ipc, h.seccomp, h.userns),
        (
            Network::Bridge,
            Namespace::Private,
            Namespace::Private,
            Seccomp::Default,
            Userns::Daemon
        )
    );
    assert!(Setting::WEAKENABLE
        .iter()
        .all(|s| a.weakening(*s).is_none()));
}

#[test]
fn every_field_parses() {
    let text = app(
        "command = [\"httpd\", \"-f\"]\nmemory = \"64m\"\npids = 32\ncpus = 0.5\nrestart = \"on-failure:3\"\n\
         ports = [\"127.0.0.1:8080:80\", \"53:53/udp\"]\nvolumes = [\"/var/lib/docker/berth-volumes/web:/data:ro\", \"cache:/cache\"]\n\
         tmpfs = [\"/tmp\"]\nenv = { MODE = \"demo\" }\n",
    );
    let a = &parse(&text, "apps.toml", &board()).unwrap()[0];
    assert_eq!(a.limits.memory_bytes, 64 << 20);
    assert_eq!((a.limits.pids, a.limits.cpus), (32, 0.5));
    assert_eq!(a.restart, Restart::OnFailure(3));
    assert_eq!(a.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!((a.ports[1].host, a.ports[1].protocol.as_str()), (53, "udp"));
    assert!(a.volumes[0].read_only && !a.volumes[1].read_only);
    assert_eq!(a.env["MODE"], "demo");
    assert_eq!(a.tmpfs, ["/tmp"]);
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let err = refusal(&app("memroy = \"64m\"\n"));
    assert!(err.starts_with("apps.toml:4:"), "{err}");
    assert!(err.contains("memroy"), "{err}");
    let err = refusal("[[apps]]\nname = \"x\"\n");
    assert!(
        err.starts_with("apps.toml:1:") && err.contains("apps"),
        "{err}"
    );
    let err = refusal(&app("[app.reasons]\nnetwork = \"x\"\n"));
    assert!(
        err.contains("apps.toml:5:") && err.contains("`reasons`"),
        "{err}"
    );
    let err = refusal(&app("network = \"bridged\"\n"));
    assert!(
        err.starts_with("apps.toml:4:") && err.contains("bridged"),
        "{err}"
    );
}

#[test]
fn a_tag_without_a_digest_is_refused_with_its_line() {
    let err = refusal("\n[[app]]\nname = \"web\"\nimage = \"docker.io/library/busybox:1.36\"\n");
    assert!(
        err.starts_with("apps.toml:4: app \"web\", `image`"),
        "{err}"
    );
    assert!(err.contains("has no digest"), "{err}");
    let short = "[[app]]\nname = \"web\"\nimage = \"docker.io/library/busybox@sha256:abc\"\n";
    assert!(refusal(short).contains("is not a sha256 digest"));
    let bare = format!("[[app]]\nname = \"web\"\nimage = \"busybox@{DIGEST}\"\n");
    let err = refusal(&bare);
    assert!(err.contains("does not name its registry"), "{err}");
    let tagged = format!("[[app]]\nname = \"w\"\nimage = \"localhost:5000/a/b:1@{DIGEST}\"\n");
    let a = &parse(&tagged, "apps.toml", &board()).unwrap()[0];
    assert_eq!(
        (a.image.registry.as_str(), a.image.tag.as_deref()),
        ("localhost:5000", Some("1"))
    );
}

#[test]
fn limits_over_the_board_are_refused_with_their_line() {
    let err = refusal(&app("memory = \"3g\"\n"));
    assert!(
        err.starts_with("apps.toml:4: app \"web\", `memory`"),
        "{err}"
    );
    assert!(err.contains("over the board's 2147483648 bytes"), "{err}");
    assert!(refusal(&app("memory = \"4m\"\n")).contains("at least 6m"));
    assert!(refusal(&app("memory = \"lots\"\n")).contains("not a size"));
    let err = refusal(&app("cpus = 9.0\n"));
    assert!(err.starts_with("apps.toml:4: app \"web\", `cpus`"), "{err}");
    assert!(refusal(&app("pids = 0\n")).contains("no limit"));
    assert!(refusal(&app("restart = \"unless-stopped\"\n")).contains("not a restart policy"));
    assert!(refusal(&app("restart = \"on-failure:0\"\n")).contains("positive number"));
}

#[test]
fn a_volume_outside_the_data_partition_is_refused_with_its_line() {
    for outside in [
        "/etc:/etc",
        "/var/lib/docker/overlay2:/x",
        "/var/lib/docker/berth-volumes/../../../etc:/x",
        "/var/lib/docker/berth-volumes:/x",
        "/var/lib/docker/berth-volumesX/a:/x",
    ] {
        let err = refusal(&app(&format!("volumes = [\"{outside}\"]\n")));
        assert!(
            err.starts_with("apps.toml:4: app \"web\", `volumes`")
                && err.contains("outside the encrypted data partition"),
            "{outside}: {err}"
        );
    }
    let relative_target = refusal(&app("volumes = [\"data:data\"]\n"));
    assert!(
        relative_target.contains("not an absolute path"),
        "{relative_target}"
    );
    assert!(refusal(&app("volumes = [\"a:/b:rx\"]\n")).contains("source:target"));
    assert!(refusal(&app("tmpfs = [\"tmp\"]\n")).contains("`tmpfs`"));
}

#[test]
fn duplicate_names_and_host_ports_are_refused_with_their_line() {
    let two = |second: &str| {
        format!(
            "{}\n[[app]]\nimage = \"docker.io/a/b@{DIGEST}\"\n{second}",
            app("ports = [\"8080:80\"]")
        )
    };
    let err = refusal(&two("name = \"web\"\n"));
    assert!(
        err.starts_with("apps.toml:7: app \"web\", `name`: the name is declared twice"),
        "{err}"
    );
    let err = refusal(&two(
        "name = \"api\"\nports = [\"9000:9000\", \"0.0.0.0:8080:81\"]\n",
    ));
    assert!(
        err.starts_with("apps.toml:8: app \"api\", `ports`"),
        "{err}"
    );
    assert!(
        err.contains("8080/tcp is already published by app \"web\""),
        "{err}"
    );
    // The same number over another protocol is another port.
    parse(
        &two("name = \"dns\"\nports = [\"8080:80/udp\"]\n"),
        "apps.toml",
        &board(),
    )
    .unwrap();
    assert!(refusal(&app("ports = [\"80\"]\n")).contains("host-port:container-port"));
    assert!(refusal(&app("ports = [\"0:80\"]\n")).contains("not a host port"));
    assert!(refusal(&app("ports = [\"80:80/sctp\"]\n")).contains("not tcp or udp"));
}

#[test]
fn names_links_env_and_capabilities_are_checked() {
    let named = |n: &str| format!("[[app]]\nname = \"{n}\"\nimage = \"docker.io/a/b@{DIGEST}\"\n");
    assert!(refusal(&named("Web")).contains("an app name is"));
    assert!(refusal(&named("-web")).contains("an app name is"));
    let err = refusal(&app("links = [\"db\"]\n"));
    assert!(
        err.contains("`links`") && err.contains("not an app declared above"),
        "{err}"
    );
    let linked = format!("{}{}links = [\"db\"]\n", named("db"), named("web"));
    assert_eq!(
        parse(&linked, "apps.toml", &board()).unwrap()[1].links,
        ["db"]
    );
    assert!(refusal(&app("env = { \"A=B\" = \"c\" }\n")).contains("not a variable name"));
    assert!(
        refusal(&app("cap_add = [\"ALL\"]\nreasons = { cap_add = \"x\" }\n"))
            .contains("ALL is refused")
    );
    let caps = app("cap_add = [\"CAP_NET_BIND_SERVICE\"]\n");
    assert_eq!(
        parse(&caps, "a", &board()).unwrap()[0].hardening.cap_add,
        ["NET_BIND_SERVICE"]
    );
    let host = refusal(&app("network = \"host\"\nports = [\"80:80\"]\n"));
    assert!(host.contains("host network"), "{host}");
}

#[test]
fn weakenings_are_accepted_with_or_without_a_reason_and_recorded() {
    // The parser records them; the audit (audit.rs) fails those without a reason.
    let a = &parse(&app("privileged = true\n"), "a", &board()).unwrap()[0];
    assert_eq!(
        a.weakening(Setting::Privileged).as_deref(),
        Some("privileged")
    );
    assert!(a.reasons.is_empty());
    let text = app("read_only = false\nrestart = \"always\"\n[app.reasons]\nread_only = \"writes its cache to /\"\nrestart = \"must stay up\"\n");
    let a = &parse(&text, "a", &board()).unwrap()[0];
    assert_eq!(a.reasons[&Setting::ReadOnly], "writes its cache to /");
    assert!(a.weakening(Setting::Restart).is_some());
}

#[test]
fn a_reason_for_a_kept_default_or_an_empty_reason_is_refused() {
    let err = refusal(&app("[app.reasons]\nprivileged = \"just in case\"\n"));
    assert!(
        err.starts_with("apps.toml:5: app \"web\", `reasons`"),
        "{err}"
    );
    assert!(err.contains("keeps its hardened default"), "{err}");
    let err = refusal(&app(
        "privileged = true\n[app.reasons]\nprivileged = \" \"\n",
    ));
    assert!(err.contains("is empty"), "{err}");
    assert!(refusal(&app("[app.reasons]\nmemory = \"x\"\n"))
        .contains("not a setting that can be weakened"));
}

#[test]
fn an_empty_file_declares_no_apps() {
    assert!(parse("", "apps.toml", &board()).unwrap().is_empty());
}

/// Parse `text` with profile files read from `files` (name, text).
fn with_files(text: &str, files: &[(&str, &str)]) -> Result<Vec<App>> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let read = |file: &str| -> Result<String> {
        files
            .get(file)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("could not read {file}"))
    };
    parse_reading(text, "apps.toml", &board(), &read)
}

const WEB_PROFILE: &str = "#include <tunables/global>\nprofile berth-web flags=(attach_disconnected) {\n  /srv/** r,\n}\n";

#[test]
fn apparmor_is_docker_default_unconfined_or_a_profile_file() {
    let a = &parse(&app(""), "a", &board()).unwrap()[0];
    assert_eq!(a.hardening.apparmor, AppArmor::DockerDefault);
    assert_eq!(a.apparmor_profile(), "docker-default");
    let a = &parse(&app("apparmor = \"docker-default\"\n"), "a", &board()).unwrap()[0];
    assert!(a.weakening(Setting::AppArmor).is_none());

    // Unconfined is a weakening, recorded with its reason as privileged is.
    let a = &parse(&app("apparmor = \"unconfined\"\n"), "a", &board()).unwrap()[0];
    assert_eq!(
        a.weakening(Setting::AppArmor).as_deref(),
        Some("AppArmor unconfined")
    );
    assert!(a.reason(Setting::AppArmor).is_none());
    let text =
        app("apparmor = \"unconfined\"\n[app.reasons]\napparmor = \"ptraces its workers\"\n");
    let a = &parse(&text, "a", &board()).unwrap()[0];
    assert_eq!(a.reason(Setting::AppArmor), Some("ptraces its workers"));
    assert_eq!(a.apparmor_profile(), "unconfined");

    // Docker runs a privileged container unconfined: the privileged reason covers it.
    let text = app("privileged = true\n[app.reasons]\nprivileged = \"drives GPIO\"\n");
    let a = &parse(&text, "a", &board()).unwrap()[0];
    assert!(a.weakening(Setting::AppArmor).is_some());
    assert_eq!(a.reason(Setting::AppArmor), Some("drives GPIO"));
    assert_eq!(a.apparmor_profile(), "unconfined");

    let a = &with_files(
        &app("apparmor = \"apparmor/web\"\n"),
        &[("apparmor/web", WEB_PROFILE)],
    )
    .unwrap()[0];
    let AppArmor::Profile(p) = &a.hardening.apparmor else {
        panic!("{:?}", a.hardening.apparmor)
    };
    assert_eq!(
        (p.file.as_str(), p.name.as_str()),
        ("apparmor/web", "berth-web")
    );
    assert_eq!(p.text, WEB_PROFILE);
    assert_eq!(a.apparmor_profile(), "berth-web");
    assert!(a.weakening(Setting::AppArmor).is_none());
}

#[test]
fn a_bad_profile_file_is_refused_naming_the_file_and_line() {
    let err = format!(
        "{:#}",
        with_files(&app("apparmor = \"nope\"\n"), &[]).unwrap_err()
    );
    assert!(
        err.starts_with("apps.toml:4: app \"web\", `apparmor`")
            && err.contains(
                "\"nope\" is neither docker-default, unconfined nor a readable profile file"
            )
            && err.contains("could not read nope"),
        "{err}"
    );
    let two = "profile a {\n}\nprofile b {\n}\n";
    let err = format!(
        "{:#}",
        with_files(&app("apparmor = \"two\"\n"), &[("two", two)]).unwrap_err()
    );
    assert!(
        err.starts_with("apps.toml:4: app \"web\", `apparmor`: the profile file two: declares 2 top-level profiles"),
        "{err}"
    );
    // Parsed without a folder, no file can be read.
    assert!(refusal(&app("apparmor = \"p\"\n")).contains("only an apps.toml read from a folder"));
    let err = format!(
        "{:#}",
        with_files(
            &app("privileged = true\napparmor = \"p\"\n"),
            &[("p", WEB_PROFILE)]
        )
        .unwrap_err()
    );
    assert!(
        err.contains("`apparmor`: Docker runs a privileged container unconfined"),
        "{err}"
    );
    // Two files declaring one name: loading one would replace the other.
    let other = WEB_PROFILE.replace("/srv/** r,", "/srv/** rw,");
    let text = format!(
        "{}[[app]]\nname = \"api\"\nimage = \"docker.io/a/b@{DIGEST}\"\napparmor = \"q\"\n",
        app("apparmor = \"p\"\n")
    );
    let err = format!(
        "{:#}",
        with_files(&text, &[("p", WEB_PROFILE), ("q", &other)]).unwrap_err()
    );
    assert!(
        err.starts_with("apps.toml:8: app \"api\", `apparmor`")
            && err.contains("as app \"web\" declares another"),
        "{err}"
    );
    // The same file for two apps is one profile.
    with_files(&text, &[("p", WEB_PROFILE), ("q", WEB_PROFILE)]).unwrap();
}
