use super::tree::{audit_tree, written_path};
use super::*;
use crate::audit::exceptions::Exceptions;
use crate::rootfs::tests::MemFs;

fn tables() -> Tables {
    Tables::load(&Repo::checkout()).unwrap()
}

fn failures(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .map(|f| format!("{}: {}", f.subject, f.detail))
        .collect()
}

/// A tree like Buildroot's on a read-only root, with the data volume and Docker's bind.
fn good_tree() -> MemFs {
    let mut fs = MemFs::default();
    fs.file("/etc/fstab", 0o644, "# c\n/dev/root / auto ro 0 1\n");
    let unit = "/etc/systemd/system";
    fs.file(
        &format!("{unit}/data.mount"),
        0o644,
        "[Mount]\nWhat=/dev/mapper/berth-data\nWhere=/data\nType=ext4\n",
    );
    fs.file(
        &format!("{unit}/var-lib-docker.mount"),
        0o644,
        "[Mount]\nWhat=/data/docker\nWhere=/var/lib/docker\nOptions=bind\n",
    );
    fs.file(
        &format!("{unit}/etc-machine-id.mount"),
        0o644,
        "[Mount]\nWhat=/data/machine-id\nWhere=/etc/machine-id\nOptions=bind,ro\n",
    );
    fs.file(
        &format!("{unit}/run-systemd-network.mount"),
        0o644,
        "[Mount]\nWhat=/data/network\nWhere=/run/systemd/network\nOptions=bind\n",
    );
    let lib = "/usr/lib/systemd/system";
    fs.file(
        &format!("{lib}/tmp.mount"),
        0o644,
        "[Mount]\nWhat=tmpfs\nWhere=/tmp\nType=tmpfs\n",
    );
    fs.file(
        &format!("{lib}/dev-mqueue.mount"),
        0o644,
        "[Mount]\nWhat=mqueue\nWhere=/dev/mqueue\nType=mqueue\n",
    );
    fs.file(
        &format!("{lib}/systemd-timesyncd.service"),
        0o644,
        "[Service]\nStateDirectory=systemd/timesync\nReadWritePaths=-/run/x %t/y\n",
    );
    fs
}

#[test]
fn the_shipped_tables_load() {
    let t = tables();
    assert_eq!(t.state.home.path, "/data");
    assert!(t.state.declares("/var/lib/docker/overlay2"));
    assert!(!t.state.declares("/var/lib/dockerx"));
    assert!(t
        .rules
        .buildroot
        .iter()
        .any(|r| r.tmpfs.as_deref() == Some("/var")));
}

#[test]
fn a_read_only_tree_with_declared_state_passes() {
    let findings = audit_tree(&tables(), &good_tree(), &["/var".into()]).unwrap();
    assert!(failures(&findings).is_empty(), "{:#?}", failures(&findings));
    // Without the configuration's tmpfs on /var, systemd's timesync state has nowhere to go.
    let findings = audit_tree(&tables(), &good_tree(), &[]).unwrap();
    let fails = failures(&findings);
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("/var/lib/systemd/timesync"), "{fails:?}");
}

#[test]
fn a_writable_root_in_fstab_fails_naming_why() {
    for line in [
        "/dev/root / auto rw 0 1",
        "/dev/root / ext4 defaults 0 1",
        "",
    ] {
        let mut fs = good_tree();
        fs.file("/etc/fstab", 0o644, line);
        let fails = failures(&audit_tree(&tables(), &fs, &["/var".into()]).unwrap());
        assert_eq!(fails.len(), 1, "{line}: {fails:?}");
        assert!(fails[0].starts_with("/etc/fstab: /etc/fstab"), "{fails:?}");
    }
}

#[test]
fn a_unit_writing_outside_declared_state_fails() {
    let mut fs = good_tree();
    fs.file(
        "/usr/lib/systemd/system/stray.service",
        0o644,
        "[Service]\nReadWritePaths=/opt/stray -/srv\nConfigurationDirectory=stray\n",
    );
    let fails = failures(&audit_tree(&tables(), &fs, &["/var".into()]).unwrap());
    assert_eq!(fails.len(), 3, "{fails:?}");
    for path in ["/opt/stray", "/srv", "/etc/stray"] {
        assert!(
            fails
                .iter()
                .any(|f| f.starts_with("stray.service:") && f.contains(&format!("write {path} "))),
            "{path}: {fails:?}"
        );
    }
    // A masked unit (a link to /dev/null, absent from the tree) is never started.
    fs.link("/etc/systemd/system/stray.service", "/dev/null");
    assert!(failures(&audit_tree(&tables(), &fs, &["/var".into()]).unwrap()).is_empty());
}

#[test]
fn an_exception_waives_one_unit_and_path() {
    let mut fs = good_tree();
    fs.file(
        "/usr/lib/systemd/system/systemd-logind.service",
        0o644,
        "[Service]\nReadWritePaths=/etc /run\nStateDirectory=systemd/linger\n",
    );
    let mut t = tables();
    t.exceptions = Exceptions::parse(
        "[[root]]\nunit = \"systemd-logind.service\"\npath = \"/etc\"\nreason = \"seat rules\"\n",
    )
    .unwrap();
    let findings = audit_tree(&t, &fs, &["/var".into()]).unwrap();
    assert!(failures(&findings).is_empty());
    assert!(findings.iter().any(
        |f| f.subject == "systemd-logind.service" && matches!(f.verdict, Verdict::Exception(_))
    ));
    t.exceptions = Exceptions::default();
    let fails = failures(&audit_tree(&t, &fs, &["/var".into()]).unwrap());
    assert!(
        fails.len() == 1 && fails[0].contains("write /etc "),
        "{fails:?}"
    );
}

#[test]
fn writable_mounts_must_be_declared_where_they_are_stored() {
    let mut fs = good_tree();
    fs.file(
        "/etc/systemd/system/srv.mount",
        0o644,
        "[Mount]\nWhat=/dev/sda1\nWhere=/srv\nType=ext4\n",
    );
    fs.file(
        "/etc/systemd/system/opt.mount",
        0o644,
        "[Mount]\nWhat=/dev/sda2\nWhere=/opt\nType=ext4\nOptions=nodev,ro\n",
    );
    // Docker's data bound from somewhere other than the data volume.
    fs.file(
        "/etc/systemd/system/var-lib-docker.mount",
        0o644,
        "[Mount]\nWhat=/dev/sdb1\nWhere=/var/lib/docker\nType=ext4\n",
    );
    fs.file("/etc/fstab", 0o644, "/dev/root / auto ro 0 1\n/dev/sdc1 /mnt ext4 defaults 0 2\ntmpfs /scratch tmpfs size=1m 0 0\n");
    let fails = failures(&audit_tree(&tables(), &fs, &["/var".into()]).unwrap());
    assert_eq!(fails.len(), 4, "{fails:#?}");
    assert!(fails
        .iter()
        .any(|f| f.starts_with("srv.mount:") && f.contains("not declared")));
    assert!(fails
        .iter()
        .any(|f| f.starts_with("/etc/fstab:2:") && f.contains("/mnt")));
    assert!(fails
        .iter()
        .any(|f| f.starts_with("var-lib-docker.mount:") && f.contains("stored at /data/docker")));
    // ... and then the declared bind itself is missing.
    assert!(fails
        .iter()
        .any(|f| f.starts_with("/var/lib/docker:") && f.contains("no mount unit")));
}

#[test]
fn a_writable_root_configuration_fails_naming_why() {
    let rules = tables().rules;
    let good = crate::kconfig::Resolved::parse(
        "BR2_TARGET_ROOTFS_EROFS=y\nBR2_INIT_SYSTEMD_VAR_FACTORY=y\n",
        "good",
    )
    .unwrap();
    let (findings, tmpfs) = config_findings(&rules, &good);
    assert!(failures(&findings).is_empty());
    assert_eq!(tmpfs, ["/var"]);
    let writable = crate::kconfig::Resolved::parse(
        "BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW=y\nBR2_TARGET_ROOTFS_EXT2=y\n",
        "writable",
    )
    .unwrap();
    let (findings, tmpfs) = config_findings(&rules, &writable);
    let fails = failures(&findings);
    assert_eq!(fails.len(), 3, "{fails:?}");
    assert!(
        fails[0].contains(
            "BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is y: the root would be remounted read-write"
        ),
        "{fails:?}"
    );
    assert!(tmpfs.is_empty());
}

#[test]
fn directive_words_become_the_folders_written() {
    assert_eq!(
        written_path("/var/lib", "systemd/timesync"),
        "/var/lib/systemd/timesync"
    );
    assert_eq!(written_path("/var/lib", "private:link"), "/var/lib/private");
    assert_eq!(written_path("", "-/srv/"), "/srv");
    assert_eq!(written_path("", "+%t/x"), "/run/x");
    assert_eq!(written_path("", "/a//b"), "/a/b");
}

#[test]
fn malformed_tables_are_refused() {
    let state = |extra: &str| {
        StateTable::parse(&format!(
            "[home]\npath = \"/data\"\nwhat = \"/dev/mapper/x\"\n[[state]]\n{extra}"
        ))
    };
    let ok = "path = \"/var/lib/x\"\nstored = \"/data/x\"\nkind = \"dir\"\nmode = \"0700\"\nwhy = \"y\"\n";
    assert!(state(ok).is_ok());
    for (bad, says) in [
        (ok.replace("/data/x", "/srv/x"), "not inside the home"),
        (ok.replace("0700", "rwx"), "octal"),
        (ok.replace("why = \"y\"", "why = \" \""), "why"),
        (ok.replace("/var/lib/x", "var/lib/x"), "absolute"),
        (format!("{ok}[[state]]\n{ok}"), "declared twice"),
    ] {
        let err = format!("{:#}", state(&bad).unwrap_err());
        assert!(err.contains(says), "{bad}: {err}");
    }
}
