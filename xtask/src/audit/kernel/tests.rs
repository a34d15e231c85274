//! The kernel audit on hand-written rules and configs: every rule kind, `or` conditions, the
//! host-toolchain downgrade, exceptions, and systemd's own sysctl.d files.

use super::engine::judge_sysctl;
use super::*;
use crate::audit::exceptions::KernelException;
use crate::audit::report::Verdict;
use crate::kconfig::Resolved;

const RULES: &str = r#"
kconfig = [
    { option = "CONFIG_SECCOMP_FILTER", want = ["y"], source = "docker-required", severity = "required" },
    { option = "CONFIG_DEVMEM", want = ["n"], source = "kspp", severity = "required" },
    { option = "CONFIG_MODULE_SIG_FORCE", want = ["y"], or = ["CONFIG_MODULES=n"], source = "kspp", severity = "required" },
    { option = "CONFIG_DEFAULT_MMAP_MIN_ADDR", min = 32768, source = "kspp", severity = "required" },
    { option = "CONFIG_LSM", contains = ["yama", "landlock"], source = "kspp", severity = "recommended" },
    { option = "CONFIG_STACKPROTECTOR_PER_TASK", want = ["y"], compiler_probe = true, source = "self-protection", severity = "required" },
    { option = "CONFIG_USER_NS", want = ["n"], source = "attack-surface", severity = "required" },
    { option = "CONFIG_USER_NS", want = ["y"], source = "docker-optional", severity = "required" },
]
cmdline = [
    { param = "slab_nomerge", source = "kspp", severity = "required" },
    { param = "init_on_alloc", want = ["1"], allow_absent = true, source = "kspp", severity = "required" },
    { param = "nokaslr", absent = true, source = "self-protection", severity = "required" },
]
sysctl = [
    { key = "kernel.kptr_restrict", want = ["2"], source = "kspp", severity = "required" },
    { key = "kernel.io_uring_disabled", want = ["2"], or = ["CONFIG_IO_URING=n"], source = "attack-surface", severity = "required" },
]
"#;

const HARDENED: &str = "\
CONFIG_SECCOMP_FILTER=y
# CONFIG_DEVMEM is not set
# CONFIG_MODULES is not set
CONFIG_DEFAULT_MMAP_MIN_ADDR=32768
CONFIG_LSM=\"landlock,lockdown,yama\"
CONFIG_STACKPROTECTOR_PER_TASK=y
CONFIG_USER_NS=y
";

fn rules() -> Rules {
    parse_rules(RULES).unwrap()
}

fn userns_exception() -> Vec<KernelException> {
    vec![KernelException {
        subject: "CONFIG_USER_NS".into(),
        source: Some("attack-surface".into()),
        reason: "userns-remap".into(),
    }]
}

fn audit(
    config: &str,
    cmdline: Option<&str>,
    sysctl: Option<&str>,
    exceptions: &[KernelException],
) -> Report {
    let resolved = Resolved::parse(config, ".config").unwrap();
    let cmdline = cmdline.map(|c| parse_cmdline(c).unwrap());
    let sysctl = sysctl.map(|s| parse_sysctl([("90.conf", s)]).unwrap());
    let inputs = Inputs {
        config: &resolved,
        cmdline: cmdline.as_ref(),
        sysctl: sysctl.as_ref(),
    };
    evaluate("t", &rules(), &inputs, exceptions, Toolchain::Target).unwrap()
}

fn verdict<'a>(report: &'a Report, subject: &str) -> &'a Verdict {
    &report
        .findings
        .iter()
        .find(|f| f.subject == subject)
        .unwrap_or_else(|| panic!("no {subject}"))
        .verdict
}

#[test]
fn hardened_config_passes_with_its_exception() {
    let r = audit(
        HARDENED,
        Some("console=ttySAC2 slab_nomerge ro\n"),
        Some("kernel.kptr_restrict = 2\n"),
        &userns_exception(),
    );
    assert!(r.passed(), "{}", r.render_table());
    assert_eq!(r.totals().exceptions, 1);
    assert_eq!(r.findings.len(), 13);
    assert_eq!(
        verdict(&r, "CONFIG_USER_NS"),
        &Verdict::Exception("userns-remap".into())
    );
    let sig = r
        .findings
        .iter()
        .find(|f| f.subject == "CONFIG_MODULE_SIG_FORCE")
        .unwrap();
    assert!(
        sig.detail.contains("but CONFIG_MODULES=n"),
        "{}",
        sig.detail
    );
}

/// The verdict on `subject` when [`HARDENED`] has its text `from` replaced by `to`.
fn verdict_with((from, to): (&str, &str), subject: &str) -> Verdict {
    let config = HARDENED.replace(from, to);
    verdict(&audit(&config, None, None, &userns_exception()), subject).clone()
}

#[test]
fn flipping_one_option_flips_its_verdict() {
    let flipped = HARDENED.replace("# CONFIG_DEVMEM is not set", "CONFIG_DEVMEM=y");
    let r = audit(&flipped, None, None, &userns_exception());
    assert_eq!(verdict(&r, "CONFIG_DEVMEM"), &Verdict::Fail);
    assert!(!r.passed());
    assert_eq!(r.totals().failed_required, 1);

    let modules = ("# CONFIG_MODULES is not set", "CONFIG_MODULES=y");
    assert_eq!(
        verdict_with(modules, "CONFIG_MODULE_SIG_FORCE"),
        Verdict::Fail
    );
    let module = ("CONFIG_SECCOMP_FILTER=y", "CONFIG_SECCOMP_FILTER=m");
    assert_eq!(verdict_with(module, "CONFIG_SECCOMP_FILTER"), Verdict::Fail);
}

#[test]
fn absent_symbols_count_as_not_set() {
    let r = audit("CONFIG_USER_NS=y\n", None, None, &[]);
    assert_eq!(verdict(&r, "CONFIG_DEVMEM"), &Verdict::Pass);
    let seccomp = r
        .findings
        .iter()
        .find(|f| f.subject == "CONFIG_SECCOMP_FILTER")
        .unwrap();
    assert_eq!(seccomp.verdict, Verdict::Fail);
    assert!(seccomp.detail.starts_with("absent"), "{}", seccomp.detail);
    // Absent MODULES means no module support at all, which satisfies the 'or' condition.
    assert_eq!(verdict(&r, "CONFIG_MODULE_SIG_FORCE"), &Verdict::Pass);
    assert_eq!(verdict(&r, "CONFIG_USER_NS"), &Verdict::Fail);
}

#[test]
fn numbers_and_string_lists() {
    let min_addr = "CONFIG_DEFAULT_MMAP_MIN_ADDR";
    assert_eq!(verdict_with(("=32768", "=4096"), min_addr), Verdict::Fail);
    assert_eq!(
        verdict_with(("=32768", "=0x10000"), min_addr),
        Verdict::Pass
    );
    let no_yama = HARDENED.replace("lockdown,yama", "lockdown");
    let r = audit(&no_yama, None, None, &userns_exception());
    assert_eq!(verdict(&r, "CONFIG_LSM"), &Verdict::Fail);
    assert!(r.passed(), "a recommended rule must not fail the audit");
    assert_eq!(r.totals().failed, 1);
}

#[test]
fn compiler_probed_rules_drop_to_recommended_on_the_host_toolchain() {
    let config = HARDENED.replace("CONFIG_STACKPROTECTOR_PER_TASK=y\n", "");
    let resolved = Resolved::parse(&config, ".config").unwrap();
    let inputs = Inputs {
        config: &resolved,
        cmdline: None,
        sysctl: None,
    };
    let exceptions = userns_exception();
    let target = evaluate("t", &rules(), &inputs, &exceptions, Toolchain::Target).unwrap();
    assert!(!target.passed());
    let host = evaluate("t", &rules(), &inputs, &exceptions, Toolchain::Host).unwrap();
    assert!(host.passed());
    assert_eq!(host.totals().failed, 1);
}

#[test]
fn cmdline_rules() {
    let ok = audit(
        HARDENED,
        Some("slab_nomerge init_on_alloc=1"),
        None,
        &userns_exception(),
    );
    assert!(ok.passed(), "{}", ok.render_table());
    let r = audit(
        HARDENED,
        Some("init-on-alloc=0 nokaslr"),
        None,
        &userns_exception(),
    );
    assert_eq!(verdict(&r, "cmdline:slab_nomerge"), &Verdict::Fail);
    assert_eq!(
        verdict(&r, "cmdline:init_on_alloc"),
        &Verdict::Fail,
        "'-' and '_' are the same in names"
    );
    assert_eq!(verdict(&r, "cmdline:nokaslr"), &Verdict::Fail);
    assert!(parse_cmdline("a\nb\n").is_err());
    assert!(parse_cmdline("a=\"open").is_err());
    let quoted = parse_cmdline("dyndbg=\"file x +p\" ro\n").unwrap();
    assert_eq!(quoted.get("dyndbg"), Some("file x +p"));
    assert_eq!(quoted.get("ro"), Some(""));
}

/// The shipped rules keep AppArmor on: the board's command line passes, and each parameter that
/// would drop it fails (CIS Docker 5.2).
#[test]
fn the_command_line_cannot_turn_apparmor_off() {
    let repo = crate::project::Repo::checkout();
    let rules = load_rules(&repo.path(crate::audit::tables::KERNEL_RULES)).unwrap();
    let board = std::fs::read_to_string(
        crate::project::default_board()
            .dir(&repo)
            .join("cmdline.txt"),
    )
    .unwrap();
    let config = Resolved::parse(
        "CONFIG_LSM=\"landlock,lockdown,yama,apparmor\"\n",
        ".config",
    )
    .unwrap();
    let judge = |extra: &str| {
        let cmdline = parse_cmdline(&format!("{} {extra}", board.trim())).unwrap();
        let inputs = Inputs {
            config: &config,
            cmdline: Some(&cmdline),
            sysctl: None,
        };
        evaluate("t", &rules, &inputs, &[], Toolchain::Target).unwrap()
    };
    let shipped = judge("");
    for param in ["apparmor", "security", "lsm"] {
        assert_eq!(
            verdict(&shipped, &format!("cmdline:{param}")),
            &Verdict::Pass,
            "{param}"
        );
    }
    let lsm = shipped
        .findings
        .iter()
        .find(|f| f.subject == "CONFIG_LSM" && f.source == "docker-optional")
        .unwrap();
    assert_eq!(lsm.verdict, Verdict::Pass);
    let kept = judge("apparmor=1 security=apparmor lsm=yama,apparmor");
    for param in ["apparmor", "security", "lsm"] {
        assert_eq!(
            verdict(&kept, &format!("cmdline:{param}")),
            &Verdict::Pass,
            "{param}"
        );
    }
    for (extra, subject) in [
        ("apparmor=0", "cmdline:apparmor"),
        ("security=selinux", "cmdline:security"),
        ("lsm=landlock,yama", "cmdline:lsm"),
    ] {
        assert_eq!(verdict(&judge(extra), subject), &Verdict::Fail, "{extra}");
    }
}

#[test]
fn sysctl_rules_follow_file_order_and_or_conditions() {
    let s = parse_sysctl([
        (
            "50-default.conf",
            "kernel/kptr_restrict = 1\n# comment\n; comment\n",
        ),
        ("90-berth.conf", "-kernel.kptr_restrict=2\n"),
    ])
    .unwrap();
    assert_eq!(
        s.get("kernel.kptr_restrict"),
        Some(("2".to_string(), "90-berth.conf:1".to_string()))
    );
    assert!(parse_sysctl([("x.conf", "kernel.kptr_restrict\n")])
        .unwrap_err()
        .to_string()
        .contains("x.conf:1"));

    let weak = audit(
        HARDENED,
        None,
        Some("kernel.kptr_restrict = 1\n"),
        &userns_exception(),
    );
    assert_eq!(
        verdict(&weak, "sysctl:kernel.kptr_restrict"),
        &Verdict::Fail
    );
    // io_uring is not set in the config, so its sysctl does not exist and is not needed.
    assert_eq!(
        verdict(&weak, "sysctl:kernel.io_uring_disabled"),
        &Verdict::Pass
    );
    let uring = format!("{HARDENED}CONFIG_IO_URING=y\n");
    let r = audit(
        &uring,
        None,
        Some("kernel.kptr_restrict = 2\n"),
        &userns_exception(),
    );
    assert_eq!(
        verdict(&r, "sysctl:kernel.io_uring_disabled"),
        &Verdict::Fail
    );
}

/// The assignments of systemd 257's sysctl.d/50-default.conf, 50-pid-max.conf and
/// 50-coredump.conf (rendered), line for line as systemd ships them.
const SYSTEMD_50_DEFAULT: &str = "kernel.sysrq = 16\nkernel.core_uses_pid = 1\nnet.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\nnet.ipv4.conf.default.accept_source_route = 0\nnet.ipv4.conf.*.accept_source_route = 0\n-net.ipv4.conf.all.accept_source_route\nnet.ipv4.conf.default.promote_secondaries = 1\nnet.ipv4.conf.*.promote_secondaries = 1\n-net.ipv4.conf.all.promote_secondaries\n-net.ipv4.ping_group_range = 0 2147483647\n-net.core.default_qdisc = fq_codel\nfs.protected_hardlinks = 1\nfs.protected_symlinks = 1\nfs.protected_regular = 1\nfs.protected_fifos = 1\n";
const SYSTEMD_50_PID_MAX: &str = "kernel.pid_max = 4194304\n";
const SYSTEMD_50_COREDUMP: &str = "kernel.core_pattern=|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h %d %F\nkernel.core_pipe_limit=16\nfs.suid_dumpable=2\n";

#[test]
fn sysctl_reads_systemds_own_files_with_globs_and_exclusions() {
    let s = parse_sysctl([
        ("50-coredump.conf", SYSTEMD_50_COREDUMP),
        ("50-default.conf", SYSTEMD_50_DEFAULT),
        ("50-pid-max.conf", SYSTEMD_50_PID_MAX),
    ])
    .unwrap();
    let value = |k: &str| s.get(k).map(|(v, _)| v);
    assert_eq!(
        value("net.ipv4.conf.default.rp_filter").as_deref(),
        Some("2")
    );
    // The glob reaches every interface...
    assert_eq!(value("net.ipv4.conf.eth0.rp_filter").as_deref(), Some("2"));
    assert_eq!(value("net/ipv4/conf/eth0/rp_filter").as_deref(), Some("2"));
    // ...but not `all`, excluded by the bare `-key` after it.
    assert_eq!(value("net.ipv4.conf.all.rp_filter"), None);
    assert!(s
        .why_unset("net.ipv4.conf.all.rp_filter")
        .contains("50-default.conf:5"));
    assert_eq!(
        value("net.ipv4.ping_group_range").as_deref(),
        Some("0 2147483647")
    );
    assert_eq!(value("net.core.default_qdisc").as_deref(), Some("fq_codel"));
    assert_eq!(
        value("kernel.core_pattern").unwrap(),
        "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h %d %F"
    );
    assert_eq!(value("fs.suid_dumpable").as_deref(), Some("2"));

    // Berth's 90- file, later: a named key beats the glob whatever the order, and names
    // the excluded key back in.
    let berth = std::fs::read_to_string(
        crate::project::Repo::checkout()
            .path("board/odroid-xu4/rootfs-overlay/etc/sysctl.d/90-berth-hardening.conf"),
    )
    .unwrap();
    let s = parse_sysctl([
        ("50-default.conf", SYSTEMD_50_DEFAULT),
        ("90-berth-hardening.conf", berth.as_str()),
        ("95-glob.conf", "net.ipv4.conf.*.rp_filter = 0\n"),
    ])
    .unwrap();
    let value = |k: &str| s.get(k).map(|(v, _)| v);
    assert_eq!(value("net.ipv4.conf.all.rp_filter").as_deref(), Some("1"));
    assert_eq!(
        value("net.ipv4.conf.default.rp_filter").as_deref(),
        Some("1")
    );
    assert_eq!(value("net.ipv4.conf.eth0.rp_filter").as_deref(), Some("0"));
    assert_eq!(value("fs.suid_dumpable").as_deref(), Some("0"));

    // The rp_filter rules judge that effective value.
    let rules =
        load_rules(&crate::project::Repo::checkout().path(crate::audit::KERNEL_RULES)).unwrap();
    let judge = |files: &[(&str, &str)], key: &str| {
        let s = parse_sysctl(files.iter().copied()).unwrap();
        let rule = rules.sysctl.iter().find(|r| r.key == key).unwrap();
        let config = crate::kconfig::Resolved::parse(HARDENED, ".config").unwrap();
        judge_sysctl(rule, &s, &config)
    };
    let systemd_only = [("50-default.conf", SYSTEMD_50_DEFAULT)];
    let err = judge(&systemd_only, "net.ipv4.conf.all.rp_filter").unwrap_err();
    assert!(err.contains("excluded"), "{err}");
    assert!(judge(&systemd_only, "net.ipv4.conf.default.rp_filter").is_err());
    let with_berth = [
        ("50-default.conf", SYSTEMD_50_DEFAULT),
        ("90-berth-hardening.conf", berth.as_str()),
    ];
    assert!(judge(&with_berth, "net.ipv4.conf.all.rp_filter").is_ok());
    assert!(judge(&with_berth, "net.ipv4.conf.default.rp_filter").is_ok());
}

#[test]
fn exceptions_must_name_a_rule_and_its_source() {
    let resolved = Resolved::parse(HARDENED, ".config").unwrap();
    let inputs = Inputs {
        config: &resolved,
        cmdline: None,
        sysctl: None,
    };
    let typo = [KernelException {
        subject: "CONFIG_USERNS".into(),
        source: None,
        reason: "x".into(),
    }];
    let err = evaluate("t", &rules(), &inputs, &typo, Toolchain::Target)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CONFIG_USERNS"), "{err}");
    let wrong_source = [KernelException {
        subject: "CONFIG_USER_NS".into(),
        source: Some("kspp".into()),
        reason: "x".into(),
    }];
    assert!(evaluate("t", &rules(), &inputs, &wrong_source, Toolchain::Target).is_err());
    // An empty reason or a duplicate is refused when the file is read (audit::exceptions).
}

#[test]
fn malformed_rules_are_rejected() {
    assert!(parse_rules("[[kconfig]]\noption = \"DEVMEM\"\nwant = [\"n\"]\nsource = \"kspp\"\nseverity = \"required\"\n").is_err());
    assert!(parse_rules(
        "[[kconfig]]\noption = \"CONFIG_A\"\nsource = \"kspp\"\nseverity = \"required\"\n"
    )
    .is_err());
    assert!(parse_rules("[[kconfig]]\noption = \"CONFIG_A\"\nwant = [\"y\"]\nsource = \"ksp\"\nseverity = \"required\"\n").is_err());
    assert!(parse_rules("[[kconfig]]\noption = \"CONFIG_A\"\nwant = [\"y\"]\nor = [\"MODULES\"]\nsource = \"kspp\"\nseverity = \"required\"\n").is_err());
    assert!(parse_rules(
        "[[sysctl]]\nkey = \"a\"\nwant = [\"1\"]\nsource = \"kspp\"\nseverity = \"must\"\n"
    )
    .is_err());
    let twice = RULES.replacen(
        "kconfig = [\n",
        "kconfig = [\n{ option = \"CONFIG_DEVMEM\", want = [\"n\"], source = \"kspp\", severity = \"required\" },\n",
        1,
    );
    assert!(parse_rules(&twice)
        .unwrap_err()
        .to_string()
        .contains("two kspp rules for CONFIG_DEVMEM"));
}
