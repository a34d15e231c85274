//! `cargo xtask audit image` on a small fake Buildroot output folder made here: a target/ tree
//! with real ARMv7 binaries (C from gcc-arm-linux-gnueabihf, Go with GOARCH=arm GOARM=7) and an
//! EROFS root filesystem image made with `mkfs.erofs`, so ownership is read as on a real build.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const C_PROGRAM: &str = r#"#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) { char buf[64]; strcpy(buf, argv[0]); printf("%s %d\n", buf, argc); return 0; }
"#;
/// No arrays, no address-taken locals: -fstack-protector-strong gives it no canary at all.
const C_NO_ARRAYS: &str = "int twice(int a) { return a * 2; }\nint main(int argc, char **argv) { (void)argv; return twice(argc); }\n";
/// A shared library that can also be run, as libc.so.6 is: a .interp section of its own.
const C_LIBRARY_WITH_INTERP: &str = "const char berth_interp[] __attribute__((section(\".interp\"))) = \"/lib/ld-linux-armhf.so.3\";\nint add_one(int x) { return x + 1; }\n";
const GO_PROGRAM: &str = "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"berth\") }\n";
const CGO_PROGRAM: &str =
    "package main\n// int add(int a, int b) { return a + b; }\nimport \"C\"\nimport \"fmt\"\nfunc main() { fmt.Println(C.add(1, 2)) }\n";

// Fixtures standing in for what docker-engine's package installs (moby contrib/init/systemd).
const DOCKER_SERVICE: &str = "[Unit]\nDescription=Docker Application Container Engine\nAfter=network-online.target docker.socket containerd.service\nRequires=docker.socket\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n\n[Install]\nWantedBy=multi-user.target\n";
const DOCKER_SOCKET: &str = "[Unit]\nDescription=Docker Socket for the API\n\n[Socket]\nListenStream=/run/docker.sock\nSocketMode=0660\nSocketUser=root\nSocketGroup=docker\n\n[Install]\nWantedBy=sockets.target\n";

/// What the image audit reads of the kernel's resolved config.
const KERNEL_CONFIG: &str =
    "CONFIG_SECURITY_APPARMOR=y\nCONFIG_LSM=\"landlock,lockdown,yama,apparmor\"\n";

/// A Buildroot-like output folder: target/ = repo overlay + package fixtures + `binaries`,
/// images/rootfs.erofs made from it. `adjust` edits target/ before the image is made.
fn fake_output(dir: &Path, binaries: &[(String, PathBuf)], adjust: impl Fn(&Path)) -> PathBuf {
    let output = dir.join("output");
    let target = output.join("target");
    fs::create_dir_all(&target).unwrap();
    common::copy_tree(
        &common::repo_root().join("board/odroid-xu4/rootfs-overlay"),
        &target,
    );
    // Git keeps only the executable bit; the permission table gives the modes on a real build.
    common::run_ok(
        Command::new("chmod")
            .args(["-R", "u=rwX,go=rX"])
            .arg(&target),
    );
    fs::set_permissions(
        target.join("etc/audit/rules.d"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    common::write_file(
        &target.join("usr/lib/systemd/system/docker.service"),
        DOCKER_SERVICE,
        0o644,
    );
    common::write_file(
        &target.join("usr/lib/systemd/system/docker.socket"),
        DOCKER_SOCKET,
        0o644,
    );
    common::write_file(
        &target.join("etc/group"),
        "root:x:0:\ndocker:x:101:\ndockremap:x:1000:\n",
        0o644,
    );
    common::write_file(
        &target.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndockremap:x:1000:1000::/:/bin/false\n",
        0o644,
    );
    common::write_file(
        &target.join("usr/sbin/auditd"),
        "placeholder for the audit package's daemon\n",
        0o755,
    );
    let script = common::repo_root().join("br2-external/package/berth-data-crypt/berth-data-crypt");
    common::write_file(
        &target.join("usr/libexec/berth-data-crypt"),
        fs::read_to_string(script).unwrap(),
        0o755,
    );
    for (name, path) in binaries {
        let dest = target.join("usr/bin").join(name);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(path, &dest).unwrap();
    }
    exception_stand_ins(&target);
    // The kernel has AppArmor (configs/linux-docker.fragment), so the image needs its parser at
    // /sbin/apparmor_parser, reached as on the board through /sbin -> usr/sbin (merged /usr).
    common::write_file(
        &output.join("build/linux-6.12.0/.config"),
        KERNEL_CONFIG,
        0o644,
    );
    common::write_file(
        &target.join("usr/sbin/apparmor_parser"),
        "placeholder for the apparmor package's parser\n",
        0o755,
    );
    if !target.join("sbin").exists() {
        std::os::unix::fs::symlink("usr/sbin", target.join("sbin")).unwrap();
    }
    // The hardening Buildroot's toolchain wrapper applies, as berth_odroid_xu4_defconfig resolves it.
    common::write_file(
        &output.join(".config"),
        "BR2_SSP_STRONG=y\nBR2_PIC_PIE=y\nBR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\n",
        0o644,
    );
    adjust(&target);
    let images = output.join("images");
    fs::create_dir_all(&images).unwrap();
    common::run_ok(
        Command::new("mkfs.erofs")
            .args(["--quiet", "-zlz4hc"])
            .arg(images.join("rootfs.erofs"))
            .arg(&target),
    );
    output
}

/// The files the shipped `[[elf]]` exceptions name (tini, built as docker-init). The audit refuses
/// an exception that matches no file of the image, so a small host ELF file stands in at each
/// path: `true` for a program (`/bin/` in its path), the smallest library this test runs with for
/// a library. (The toolchain's libraries are judged by their owning package instead: see
/// [`toolchain_output`].)
fn exception_stand_ins(target: &Path) {
    let repo = xtask::project::Repo::checkout();
    let exceptions =
        xtask::audit::exceptions::Exceptions::load(&repo.path(xtask::audit::EXCEPTIONS)).unwrap();
    let library = host_library();
    let program = ["/bin/true", "/usr/bin/true"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .expect("the host has true(1)");
    for e in &exceptions.elf {
        let stand_in = if e.path.contains("/bin/") {
            &program
        } else {
            &library
        };
        let dest = target.join(e.path.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(stand_in, &dest).unwrap();
    }
}

/// The smallest shared library this test runs with.
fn host_library() -> PathBuf {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .min_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX))
        .map(PathBuf::from)
        .expect("this test runs with shared libraries")
}

fn audit(output: &Path) -> Output {
    common::xtask()
        .args(["audit", "image", "--json"])
        .arg(output)
        .output()
        .unwrap()
}

fn audit_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn cis_finding<'a>(report: &'a Value, item: &str) -> &'a Value {
    report["cis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == format!("CIS {item}"))
        .unwrap_or_else(|| panic!("no finding for CIS {item}"))
}

fn cis_verdict(report: &Value, item: &str) -> String {
    cis_finding(report, item)["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

fn can_make_images(test: &str) -> bool {
    common::have_tool(test, "mkfs.erofs", "erofs-utils")
        && common::have_tool(test, "fsck.erofs", "erofs-utils")
}

#[test]
fn shipped_configuration_passes_every_cis_item_berth_claims() {
    let test = "shipped_configuration_passes_every_cis_item_berth_claims";
    // mkfs.erofs copies the owner of each file: only root can make root-owned files.
    if !can_make_images(test) || !common::is_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |_| {});
    let out = audit(&output);
    let report = audit_json(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["cis"]["totals"]["failed_required"], 0);
    for item in [
        "1.1.1", "1.1.2", "1.1.3", "2.2", "2.7", "2.9", "3.1", "3.4", "3.6", "3.15", "3.16",
        "3.18", "3.24", "5.2",
    ] {
        assert_eq!(cis_verdict(&report, item), "pass", "CIS {item}");
    }
    // Items Berth does not meet are exceptions with their reason, never silent passes.
    for item in ["2.1", "2.12", "2.13", "1.1.12"] {
        assert_eq!(cis_verdict(&report, item), "exception", "CIS {item}");
    }
}

fn assert_fails_naming(output: &Path, item: &str) {
    let out = audit(output);
    assert!(
        !out.status.success(),
        "audit passed although CIS {item} is broken"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("CIS {item}")),
        "error does not name CIS {item}: {stderr}"
    );
    assert_eq!(cis_verdict(&audit_json(&out), item), "fail");
}

#[test]
fn icc_true_fails_cis_2_2() {
    let test = "icc_true_fails_cis_2_2";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |target| {
        let path = target.join("etc/docker/daemon.json");
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"icc\": false", "\"icc\": true");
        assert!(text.contains("\"icc\": true"));
        fs::write(path, text).unwrap();
    });
    assert_fails_naming(&output, "2.2");
}

#[test]
fn missing_userns_remap_fails_cis_2_9() {
    let test = "missing_userns_remap_fails_cis_2_9";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |target| {
        let path = target.join("etc/docker/daemon.json");
        let mut json: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        json.as_object_mut()
            .unwrap()
            .remove("userns-remap")
            .unwrap();
        fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    });
    assert_fails_naming(&output, "2.9");
}

#[test]
fn a_kernel_with_apparmor_and_no_parser_in_the_image_fails_cis_5_2() {
    let test = "a_kernel_with_apparmor_and_no_parser_in_the_image_fails_cis_5_2";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |target| {
        fs::remove_file(target.join("usr/sbin/apparmor_parser")).unwrap();
    });
    let out = audit(&output);
    assert!(!out.status.success(), "audit passed without the parser");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CIS items not met") && stderr.contains("CIS 5.2"),
        "{stderr}"
    );
    let report = audit_json(&out);
    assert_eq!(cis_verdict(&report, "5.2"), "fail");
    assert_eq!(
        cis_finding(&report, "5.2")["detail"],
        "the kernel enables CONFIG_SECURITY_APPARMOR, but /sbin/apparmor_parser is not in the image"
    );

    // With the parser, the item passes; an app unit that runs unconfined without its reason, or
    // a docker.service drop-in that hides AppArmor from dockerd, fails it again.
    let output = fake_output(&tmp.path().join("with"), &[], |_| {});
    assert_eq!(cis_verdict(&audit_json(&audit(&output)), "5.2"), "pass");
    let output = fake_output(&tmp.path().join("unconfined"), &[], |target| {
        common::write_file(
            &target.join("etc/systemd/system/berth-app-a.service"),
            "[Service]\nExecStart=/usr/bin/docker run --security-opt apparmor=unconfined x\n",
            0o644,
        );
        common::write_file(
            &target.join("etc/systemd/system/docker.service.d/50-env.conf"),
            "[Service]\nEnvironment=container=docker\n",
            0o644,
        );
    });
    let out = audit(&output);
    assert!(!out.status.success());
    let report = audit_json(&out);
    let detail = cis_finding(&report, "5.2")["detail"].as_str().unwrap();
    assert!(
        detail.contains("docker.service: Environment sets container=docker")
            && detail.contains("berth-app-a.service runs a command with apparmor=unconfined"),
        "{detail}"
    );
}

#[test]
fn merged_bin_image_finds_auditd_through_the_usr_sbin_link() {
    let test = "merged_bin_image_finds_auditd_through_the_usr_sbin_link";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // BR2_ROOTFS_MERGED_BIN: /usr/sbin -> bin, auditd really is /usr/bin/auditd, and the
    // AppArmor parser /sbin/apparmor_parser is /usr/bin/apparmor_parser through two links.
    let output = fake_output(tmp.path(), &[], merge_usr_sbin);
    let report = audit_json(&audit(&output));
    assert_eq!(cis_verdict(&report, "1.1.3"), "pass");
    assert_eq!(cis_verdict(&report, "5.2"), "pass");
    // The link alone is not enough: without the daemon the item fails.
    let output = fake_output(&tmp.path().join("no-auditd"), &[], |target| {
        fs::remove_file(target.join("usr/sbin/auditd")).unwrap();
        merge_usr_sbin(target);
    });
    assert_eq!(cis_verdict(&audit_json(&audit(&output)), "1.1.3"), "fail");
}

/// BR2_ROOTFS_MERGED_BIN: what /usr/sbin held moves to /usr/bin, and /usr/sbin becomes a link.
fn merge_usr_sbin(target: &Path) {
    fs::create_dir_all(target.join("usr/bin")).unwrap();
    for entry in fs::read_dir(target.join("usr/sbin")).unwrap() {
        let entry = entry.unwrap();
        fs::rename(entry.path(), target.join("usr/bin").join(entry.file_name())).unwrap();
    }
    fs::remove_dir(target.join("usr/sbin")).unwrap();
    std::os::unix::fs::symlink("bin", target.join("usr/sbin")).unwrap();
}

#[test]
fn ownership_and_modes_are_read_from_the_image() {
    let test = "ownership_and_modes_are_read_from_the_image";
    if !can_make_images(test) || !common::is_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |target| {
        let json = target.join("etc/docker/daemon.json");
        fs::set_permissions(&json, fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::chown(target.join("etc/docker"), Some(1000), Some(1000)).unwrap();
    });
    let out = audit(&output);
    assert!(!out.status.success());
    let report = audit_json(&out);
    assert_eq!(cis_verdict(&report, "3.18"), "fail");
    assert_eq!(cis_verdict(&report, "3.5"), "fail");
    assert_eq!(cis_verdict(&report, "3.17"), "pass");
    // The target folder is not what is judged: fixing it after the image was made changes nothing.
    fs::set_permissions(
        output.join("target/etc/docker/daemon.json"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_eq!(cis_verdict(&audit_json(&audit(&output)), "3.18"), "fail");
}

/// A copy of the checkout's rule tables with `edit` applied to its exceptions file.
fn repo_with_exceptions(dir: &Path, edit: impl Fn(String) -> String) -> xtask::project::Repo {
    let repo = xtask::project::Repo::at(dir.join("repo"));
    common::copy_tree(
        &common::repo_root().join("configs/hardening"),
        &repo.path("configs/hardening"),
    );
    let path = repo.path(xtask::audit::EXCEPTIONS);
    let text = fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    fs::write(&path, edited).unwrap();
    repo
}

#[test]
fn a_mistyped_elf_exception_is_an_error_that_names_it() {
    let test = "a_mistyped_elf_exception_is_an_error_that_names_it";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = fake_output(tmp.path(), &[], |_| {});
    for (typo, named) in [
        (
            (
                "path = \"/usr/bin/tini\"\nproperty = \"pie\"",
                "path = \"/usr/bin/tinni\"\nproperty = \"pie\"",
            ),
            "/usr/bin/tinni (pie)",
        ),
        (
            (
                "path = \"/usr/bin/tini\"\nproperty = \"relro\"",
                "path = \"/usr/bin/tini\"\nproperty = \"relr\"",
            ),
            "/usr/bin/tini (relr)",
        ),
    ] {
        let repo = repo_with_exceptions(&tmp.path().join(named.replace('/', "_")), |t| {
            t.replace(typo.0, typo.1)
        });
        let err = xtask::audit::image::audit_image(&repo, &output, None)
            .err()
            .unwrap_or_else(|| panic!("the audit accepted the exception {named}"));
        let err = format!("{err:#}");
        assert!(err.contains(named), "{err}");
    }
    // Unchanged, the same image passes the check of its exceptions.
    let repo = xtask::project::Repo::checkout();
    assert!(xtask::audit::image::audit_image(&repo, &output, None).is_ok());
}

#[test]
fn merged_usr_image_matches_lib_exceptions_through_the_link() {
    let test = "merged_usr_image_matches_lib_exceptions_through_the_link";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // With systemd, Buildroot merges /usr: /lib is a link to usr/lib, and the audit walks the real
    // files, /usr/lib/... An exception names a library as users and the loader see it, /lib/...
    let output = fake_output(tmp.path(), &[], |target| {
        fs::copy(host_library(), target.join("usr/lib/libstand-in.so.1")).unwrap();
        std::os::unix::fs::symlink("usr/lib", target.join("lib")).unwrap();
    });
    let exception = |path: &str| {
        let entry = format!(
            "\n[[elf]]\npath = \"{path}\"\nproperty = \"stripped\"\nreason = \"kept with its symbols\"\n"
        );
        move |text: String| text + &entry
    };
    let repo = repo_with_exceptions(&tmp.path().join("lib"), exception("/lib/libstand-in.so.1"));
    let audit =
        xtask::audit::image::audit_image(&repo, &output, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(audit
        .files
        .iter()
        .any(|f| f.path == "/usr/lib/libstand-in.so.1"));
    // A name the link does not reach is still an error.
    let repo = repo_with_exceptions(
        &tmp.path().join("lib64"),
        exception("/lib64/libstand-in.so.1"),
    );
    let err = xtask::audit::image::audit_image(&repo, &output, None)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("/lib64/libstand-in.so.1 (stripped)"),
        "{err:#}"
    );
}

#[test]
fn output_folder_without_image_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("target")).unwrap();
    let out = common::xtask()
        .args(["audit", "image"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rootfs.erofs"));
}

// ---------------------------------------------------------------------------------------------
// ELF hardening against Debian's checksec

struct Built {
    name: String,
    path: PathBuf,
}

fn build_c(dir: &Path, built: &mut Vec<Built>) {
    let src = dir.join("prog.c");
    fs::write(&src, C_PROGRAM).unwrap();
    let cc = "arm-linux-gnueabihf-gcc";
    let variants: &[(&str, &[&str])] = &[
        (
            "c-hardened",
            &[
                "-O2",
                "-fstack-protector-strong",
                "-D_FORTIFY_SOURCE=2",
                "-fPIE",
                "-pie",
                "-Wl,-z,relro,-z,now",
            ],
        ),
        (
            "c-plain",
            &[
                "-O0",
                "-fno-stack-protector",
                "-U_FORTIFY_SOURCE",
                "-fno-PIE",
                "-no-pie",
                "-Wl,-z,norelro",
                "-Wl,-z,execstack",
            ],
        ),
        (
            "c-partial-relro",
            &[
                "-O2",
                "-fstack-protector-strong",
                "-fPIE",
                "-pie",
                "-Wl,-z,relro,-z,lazy",
            ],
        ),
        (
            "c-rpath",
            &[
                "-O2",
                "-fPIE",
                "-pie",
                "-Wl,--disable-new-dtags",
                "-Wl,-rpath,/opt/lib",
            ],
        ),
        (
            "c-runpath",
            &[
                "-O2",
                "-fPIE",
                "-pie",
                "-Wl,--enable-new-dtags",
                "-Wl,-rpath,/opt/lib",
            ],
        ),
        (
            "libc-shared.so",
            &["-O2", "-shared", "-fPIC", "-Wl,-z,relro,-z,now"],
        ),
    ];
    for (name, flags) in variants {
        let path = dir.join(name);
        common::run_ok(Command::new(cc).args(*flags).arg("-o").arg(&path).arg(&src));
        built.push(Built {
            name: name.to_string(),
            path,
        });
    }
    const HARDENED: &[&str] = &[
        "-O2",
        "-fstack-protector-strong",
        "-fPIE",
        "-pie",
        "-Wl,-z,relro,-z,now",
    ];
    let no_arrays = dir.join("no-arrays.c");
    fs::write(&no_arrays, C_NO_ARRAYS).unwrap();
    let with_interp = dir.join("with-interp.c");
    fs::write(&with_interp, C_LIBRARY_WITH_INTERP).unwrap();
    // Each RUNPATH case, linked as a hardened program with that search path.
    let runpath = |path: &str| {
        [
            "-Wl,--enable-new-dtags".to_string(),
            format!("-Wl,-rpath,{path}"),
        ]
    };
    let more: Vec<(&str, Vec<String>, &Path)> = vec![
        ("c-ssp-no-arrays", vec![], &no_arrays),
        (
            "c-runpath-systemd",
            runpath("/usr/lib/systemd").into(),
            &src,
        ),
        ("c-runpath-origin-up", runpath("$ORIGIN/../..").into(), &src),
        ("c-runpath-tmp", runpath("/tmp/x").into(), &src),
        // Emptied below with patchelf, as Buildroot's fix-rpath leaves libtool's build-tree path.
        (
            "c-runpath-emptied",
            runpath("/build/util-linux/.libs").into(),
            &src,
        ),
        (
            "c-static",
            vec!["-static".into(), "-fno-PIE".into(), "-no-pie".into()],
            &src,
        ),
        (
            "libinterp.so",
            vec!["-shared".into(), "-fPIC".into()],
            &with_interp,
        ),
    ];
    for (name, extra, source) in more {
        let path = dir.join(name);
        let flags = HARDENED
            .iter()
            .filter(|f| !(extra.iter().any(|e| e == "-shared" || e == "-static") && **f == "-pie"));
        common::run_ok(
            Command::new(cc)
                .args(flags)
                .args(&extra)
                .arg("-o")
                .arg(&path)
                .arg(source),
        );
        built.push(Built {
            name: name.to_string(),
            path,
        });
    }
    common::run_ok(
        Command::new("patchelf")
            .args(["--set-rpath", ""])
            .arg(dir.join("c-runpath-emptied")),
    );
    // static-pie needs rcrt1.o from glibc; Debian's armhf cross glibc 2.36 has none.
    let rcrt1 = common::run_ok(Command::new(cc).arg("-print-file-name=rcrt1.o"));
    if Path::new(String::from_utf8_lossy(&rcrt1.stdout).trim()).is_absolute() {
        let path = dir.join("c-static-pie");
        common::run_ok(
            Command::new(cc)
                .args(["-O2", "-fPIE", "-static-pie", "-Wl,-z,relro,-z,now", "-o"])
                .arg(&path)
                .arg(&src),
        );
        built.push(Built {
            name: "c-static-pie".into(),
            path,
        });
    } else {
        common::skip(
            "elf_audit_agrees_with_checksec_and_flags_text_relocations (static-pie case)",
            "arm-linux-gnueabihf-gcc's glibc has no rcrt1.o, so it cannot link -static-pie",
        );
    }
    // Non-PIC code (absolute word relocations in .text) linked with -pie: DT_TEXTREL.
    let obj = dir.join("nopic.o");
    common::run_ok(
        Command::new(cc)
            .args(["-O2", "-fno-PIC", "-mword-relocations", "-c", "-o"])
            .arg(&obj)
            .arg(&src),
    );
    let path = dir.join("c-textrel");
    common::run_ok(Command::new(cc).arg("-pie").arg("-o").arg(&path).arg(&obj));
    built.push(Built {
        name: "c-textrel".into(),
        path,
    });
}

fn build_go(dir: &Path, built: &mut Vec<Built>) {
    let cache = std::env::temp_dir().join("berth-go-cache");
    fs::write(dir.join("main.go"), GO_PROGRAM).unwrap();
    let cgo_dir = dir.join("cgo");
    fs::create_dir_all(&cgo_dir).unwrap();
    fs::write(cgo_dir.join("main.go"), CGO_PROGRAM).unwrap();
    let variants: &[(&str, &str, &[&str], &Path)] = &[
        ("go-static", "0", &[], dir),
        ("go-pie", "1", &["-buildmode=pie"], dir),
        ("go-external", "1", &["-ldflags=-linkmode=external"], dir),
        (
            "go-cgo-pie",
            "1",
            &["-buildmode=pie", "-ldflags=-linkmode=external"],
            &cgo_dir,
        ),
    ];
    for (name, cgo, flags, src) in variants {
        let path = dir.join(name);
        common::run_ok(
            Command::new("go")
                .arg("build")
                .args(*flags)
                .arg("-o")
                .arg(&path)
                .arg("main.go")
                .current_dir(src)
                .env("GOARCH", "arm")
                .env("GOARM", "7")
                .env("GOOS", "linux")
                .env("CGO_ENABLED", cgo)
                .env("CC", "arm-linux-gnueabihf-gcc")
                .env("GOCACHE", cache.join("build"))
                .env("GOPATH", cache.join("path"))
                .env("GOFLAGS", "-mod=mod")
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off"),
        );
        built.push(Built {
            name: name.to_string(),
            path,
        });
    }
}

fn checksec(path: &Path) -> Value {
    let out = common::run_ok(
        Command::new("checksec")
            .arg(format!("--file={}", path.display()))
            .arg("--output=json"),
    );
    let json: Value =
        serde_json::from_slice(&out.stdout).expect("checksec --output=json printed no JSON");
    json.as_object().unwrap().values().next().unwrap().clone()
}

/// Our properties in checksec's words, for the five properties both tools measure.
fn as_checksec(ours: &Value) -> [(&'static str, String); 6] {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    // checksec, like glibc, sees no search path in an empty DT_RUNPATH string.
    let nonempty = |v: &Value| {
        yes(v
            .as_array()
            .unwrap()
            .iter()
            .any(|e| !e.as_str().unwrap().is_empty()))
    };
    [
        ("relro", ours["relro"].as_str().unwrap().to_string()),
        ("nx", yes(ours["nx"].as_bool().unwrap())),
        ("pie", ours["pie"].as_str().unwrap().to_string()),
        // Pure Go has no canary: not applicable here, "no" to checksec.
        ("canary", yes(ours["canary"] == "yes")),
        ("rpath", nonempty(&ours["rpath"])),
        ("runpath", nonempty(&ours["runpath"])),
    ]
}

#[test]
fn elf_audit_agrees_with_checksec_and_flags_text_relocations() {
    let test = "elf_audit_agrees_with_checksec_and_flags_text_relocations";
    if !can_make_images(test)
        || !common::have_tool(test, "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
        || !common::have_tool(test, "checksec", "checksec")
        || !common::have_tool(test, "patchelf", "patchelf")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut built = Vec::new();
    build_c(tmp.path(), &mut built);
    if common::have_tool(test, "go", "golang-go") {
        build_go(tmp.path(), &mut built);
    }
    let binaries: Vec<(String, PathBuf)> = built
        .iter()
        .map(|b| (b.name.clone(), b.path.clone()))
        .collect();
    let output = fake_output(tmp.path(), &binaries, |target| {
        // A world-writable /tmp as on the board, with the folder c-runpath-tmp names.
        fs::create_dir_all(target.join("tmp/x")).unwrap();
        fs::set_permissions(target.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir_all(target.join("usr/lib/systemd")).unwrap();
    });
    let out = audit(&output);
    let report = audit_json(&out);
    let failed = |name: &str| failed_required(&report, &format!("/usr/bin/{name}"));
    assert_eq!(failed("c-hardened"), Vec::<String>::new());
    // A correct -fstack-protector-strong build without a canary symbol is no failure.
    assert_eq!(failed("c-ssp-no-arrays"), Vec::<String>::new());
    assert_eq!(failed("c-runpath-systemd"), Vec::<String>::new());
    for name in [
        "c-runpath",
        "c-runpath-origin-up",
        "c-runpath-tmp",
        "c-runpath-emptied",
    ] {
        assert!(
            failed(name)
                .iter()
                .any(|r| r.starts_with("DT_RUNPATH only to")),
            "{name}: {:?}",
            failed(name)
        );
    }
    assert!(failed("c-rpath")
        .iter()
        .any(|r| r.starts_with("DT_RPATH only to")));
    assert!(failed("c-static").iter().any(|r| r.starts_with("PIE")));
    assert!(failed("c-partial-relro").iter().any(|r| r == "full RELRO"));
    assert!(failed("c-plain")
        .iter()
        .any(|r| r == "non-executable stack"));
    assert!(failed("c-textrel")
        .iter()
        .any(|r| r == "no text relocations"));
    assert_eq!(failed("libinterp.so"), Vec::<String>::new());
    if binaries.iter().any(|(n, _)| n == "c-static-pie") {
        assert_eq!(failed("c-static-pie"), Vec::<String>::new());
    }
    // c-plain and c-textrel lack required hardening: the audit must fail and say which.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/usr/bin/c-plain") && stderr.contains("/usr/bin/c-textrel"),
        "{stderr}"
    );
    assert!(!stderr.contains("/usr/bin/c-hardened"), "{stderr}");

    let files = report["elf"]["files"].as_array().unwrap();
    let ours = |name: &str| {
        files
            .iter()
            .find(|f| f["path"] == format!("/usr/bin/{name}"))
            .unwrap_or_else(|| panic!("{name} missing from the audit"))
            .clone()
    };
    let mut table = String::from(
        "\n| binary | checksec relro/nx/pie/canary/rpath/runpath | berth audit, same order | berth textrel |\n|---|---|---|---|\n",
    );
    for b in &built {
        let theirs = checksec(&b.path);
        let mine = ours(&b.name);
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for (property, value) in as_checksec(&mine) {
            let expected = theirs[property].as_str().unwrap().to_string();
            assert_eq!(
                value, expected,
                "{}: {property} differs from checksec",
                b.name
            );
            left.push(expected);
            right.push(value);
        }
        let textrel = if mine["textrel"] == true {
            "**FLAGGED**"
        } else {
            "no"
        };
        table.push_str(&format!(
            "| {} | {} | {} | {textrel} |\n",
            b.name,
            left.join("/"),
            right.join("/")
        ));
    }
    // Shown with --nocapture, and kept for the notes: both tools side by side.
    println!("{table}");

    let hardened = ours("c-hardened");
    assert_eq!(
        (hardened["pie"].as_str(), hardened["relro"].as_str()),
        (Some("yes"), Some("full"))
    );
    assert_eq!(
        (hardened["canary"].as_str(), hardened["fortify"].as_str()),
        (Some("yes"), Some("yes"))
    );
    assert_eq!(hardened["textrel"], false);
    let plain = ours("c-plain");
    assert_eq!(
        (
            plain["pie"].as_str(),
            plain["relro"].as_str(),
            plain["nx"].as_bool()
        ),
        (Some("no"), Some("no"), Some(false))
    );
    assert_eq!(plain["fortify"], "no");
    // checksec calls this PIE; it writes to its code pages at load time.
    let textrel = ours("c-textrel");
    assert_eq!(checksec(&tmp.path().join("c-textrel"))["pie"], "yes");
    assert_eq!(textrel["textrel"], true);
    assert_eq!(ours("libc-shared.so")["kind"], "shared-library");
    // Like libc.so.6: PT_INTERP, yet a library (checksec: dso).
    let with_interp = ours("libinterp.so");
    assert_eq!(
        (with_interp["kind"].as_str(), with_interp["pie"].as_str()),
        (Some("shared-library"), Some("dso"))
    );
    assert!(with_interp["interpreter"].is_string());
    assert_eq!(ours("c-ssp-no-arrays")["canary"], "no");
    assert_eq!(
        ours("c-runpath-emptied")["runpath"],
        serde_json::json!([""])
    );
    let static_exe = ours("c-static");
    assert_eq!(
        (static_exe["kind"].as_str(), static_exe["pie"].as_str()),
        (Some("executable"), Some("no"))
    );

    if built.iter().any(|b| b.name.starts_with("go-")) {
        let go_static = ours("go-static");
        assert_eq!(
            (go_static["go"].as_bool(), go_static["cgo"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(go_static["canary"], "not-applicable");
        assert_eq!(go_static["pie"], "no");
        assert_eq!(ours("go-pie")["pie"], "yes");
        assert_eq!(ours("go-external")["cgo"], true);
        let cgo = ours("go-cgo-pie");
        assert_eq!(
            (
                cgo["go"].as_bool(),
                cgo["cgo"].as_bool(),
                cgo["pie"].as_str()
            ),
            (Some(true), Some(true), Some("yes"))
        );
        // Debian's cross gcc does not add a canary by default: the C part of cgo lacks it.
        assert_eq!(cgo["canary"], "no");
        for f in files {
            assert_eq!(
                f["go"].as_bool().unwrap(),
                f["path"].as_str().unwrap().contains("/go-"),
                "{f}"
            );
        }
    }
}

/// The required ELF rules `subject` fails, by the rule's short name (up to its first colon).
fn failed_required(report: &Value, subject: &str) -> Vec<String> {
    elf_findings(report, subject)
        .into_iter()
        .filter(|f| f["verdict"] == "fail" && f["severity"] == "required")
        .map(|f| short_rule(f).to_string())
        .collect()
}

fn elf_findings<'a>(report: &'a Value, subject: &str) -> Vec<&'a Value> {
    report["elf"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject"] == subject)
        .collect()
}

fn short_rule(finding: &Value) -> &str {
    finding["rule"].as_str().unwrap().split(':').next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Prebuilt toolchain libraries, judged by their owning package

/// What Buildroot copies from a glibc toolchain's sysroot (`TOOLCHAIN_EXTERNAL_LIBS` in
/// pkg-toolchain-external.mk, with C++ and OpenMP on), by pattern: whatever the sysroot has.
const TOOLCHAIN_EXTERNAL_LIBS: &[&str] = &[
    "ld*.so.*",
    "libgcc_s.so.*",
    "libatomic.so.*",
    "libc.so.*",
    "libdl.so.*",
    "libm.so.*",
    "libnsl.so.*",
    "libresolv.so.*",
    "librt.so.*",
    "libutil.so.*",
    "libpthread.so.*",
    "libnss_files.so.*",
    "libnss_dns.so.*",
    "libmvec.so.*",
    "libanl.so.*",
    "libstdc++.so.*",
    "libgomp.so.*",
];
/// Debian's armhf cross glibc 2.36 (libc6-armhf-cross) and gcc 12 runtime libraries.
const DEBIAN_ARMHF_SYSROOT: &str = "/usr/arm-linux-gnueabihf/lib";
const TOOLCHAIN_PACKAGE: &str = "toolchain-external-custom";

/// `*` in `pattern` stands for any run of characters, as in the shell.
fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (head.len()..=name.len()).any(|at| glob_matches(rest, &name[at..]))
        }
    }
}

/// Copies the toolchain libraries of `sysroot` into `dest` as Buildroot's
/// copy_toolchain_lib_root does (links as links) and returns the names copied.
fn copy_toolchain_libs(sysroot: &Path, dest: &Path) -> Vec<String> {
    fs::create_dir_all(dest).unwrap();
    let mut names = Vec::new();
    for entry in fs::read_dir(sysroot).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !TOOLCHAIN_EXTERNAL_LIBS
            .iter()
            .any(|p| glob_matches(p, &name))
        {
            continue;
        }
        if entry.file_type().unwrap().is_symlink() {
            let link = fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(link, dest.join(&name)).unwrap();
        } else {
            fs::copy(entry.path(), dest.join(&name)).unwrap();
        }
        names.push(name);
    }
    names.sort();
    names
}

/// A stand-in output folder with the toolchain libraries of `sysroot` in target/ (under
/// /usr/lib behind a /lib link when `merged_usr`, as with systemd; else /lib), `extra` files
/// (owner, path in the image, file) and build/packages-file-list.txt naming every one's owner as
/// Buildroot writes it.
fn toolchain_output(
    dir: &Path,
    sysroot: &Path,
    merged_usr: bool,
    extra: &[(&str, &str, &Path)],
) -> PathBuf {
    let lib = if merged_usr { "usr/lib" } else { "lib" };
    let copied = std::cell::RefCell::new(Vec::new());
    let output = fake_output(dir, &[], |target| {
        *copied.borrow_mut() = copy_toolchain_libs(sysroot, &target.join(lib));
        if merged_usr {
            std::os::unix::fs::symlink("usr/lib", target.join("lib")).unwrap();
        }
        for (_, path, file) in extra {
            let dest = target.join(path.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(file, dest).unwrap();
        }
    });
    let mut list: String = copied
        .borrow()
        .iter()
        .map(|name| format!("{TOOLCHAIN_PACKAGE},./{lib}/{name}\n"))
        .collect();
    for (owner, path, _) in extra {
        list.push_str(&format!("{owner},.{path}\n"));
    }
    common::write_file(&output.join("build/packages-file-list.txt"), list, 0o644);
    output
}

fn can_use_debian_sysroot(test: &str) -> bool {
    let found = Path::new(DEBIAN_ARMHF_SYSROOT).join("libc.so.6").is_file();
    if !found {
        common::skip(
            test,
            &format!("{DEBIAN_ARMHF_SYSROOT} has no libc.so.6 (apt-get install libc6-armhf-cross)"),
        );
    }
    found
        && can_make_images(test)
        && common::have_tool(test, "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
}

fn arm_gcc(dir: &Path, name: &str, flags: &[&str], source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    fs::write(&src, source).unwrap();
    let path = dir.join(name);
    common::run_ok(
        Command::new("arm-linux-gnueabihf-gcc")
            .args(flags)
            .arg("-o")
            .arg(&path)
            .arg(&src),
    );
    path
}

#[test]
fn toolchain_libraries_pass_by_their_owner_on_two_sysroots_and_project_files_do_not() {
    let test = "toolchain_libraries_pass_by_their_owner_on_two_sysroots_and_project_files_do_not";
    if !can_use_debian_sysroot(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A program the project builds, linked without BIND_NOW: no policy may waive it.
    let partial = arm_gcc(
        tmp.path(),
        "partial-relro",
        &[
            "-O2",
            "-fstack-protector-strong",
            "-D_FORTIFY_SOURCE=2",
            "-fPIE",
            "-pie",
            "-Wl,-z,relro,-z,lazy",
        ],
        C_PROGRAM,
    );
    // A glibc 2.39-era toolchain: neither libnsl.so.1 nor (here) libgomp.so.1.
    let trimmed = tmp.path().join("sysroot-trimmed/lib");
    for name in copy_toolchain_libs(Path::new(DEBIAN_ARMHF_SYSROOT), &trimmed) {
        if name.starts_with("libnsl.") || name.starts_with("libgomp.") {
            fs::remove_file(trimmed.join(name)).unwrap();
        }
    }
    let project_file = [(
        "berth-test-app",
        "/usr/bin/partial-relro",
        partial.as_path(),
    )];
    for (name, sysroot, merged_usr) in [
        ("debian", Path::new(DEBIAN_ARMHF_SYSROOT), false),
        ("trimmed", trimmed.as_path(), true),
    ] {
        let output = toolchain_output(&tmp.path().join(name), sysroot, merged_usr, &project_file);
        let out = audit(&output);
        let report = audit_json(&out);
        let lib = if merged_usr { "/usr/lib" } else { "/lib" };
        let audited: Vec<&str> = report["elf"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .filter(|p| p.starts_with(&format!("{lib}/")))
            .collect();
        assert!(
            audited.contains(&format!("{lib}/libc.so.6").as_str()),
            "{name}: {audited:?}"
        );
        assert_eq!(
            audited.iter().any(|p| p.contains("/libnsl.so")),
            name == "debian",
            "{name}: {audited:?}"
        );
        // Every required failure is the project's program; each library is judged, and its
        // vendor's RELRO waived by the policy with the owning package named.
        for path in &audited {
            assert_eq!(
                failed_required(&report, path),
                Vec::<String>::new(),
                "{name}: {path}"
            );
        }
        let libc_relro = *elf_findings(&report, &format!("{lib}/libc.so.6"))
            .iter()
            .find(|f| short_rule(f) == "full RELRO")
            .unwrap();
        assert_eq!(libc_relro["verdict"], "exception", "{name}: {libc_relro}");
        assert!(libc_relro["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("prebuilt by {TOOLCHAIN_PACKAGE}: ")));
        assert_eq!(
            failed_required(&report, "/usr/bin/partial-relro"),
            ["full RELRO"],
            "{name}"
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ELF files missing required hardening: /usr/bin/partial-relro")
                && !stderr.contains("libc.so"),
            "{name}: {stderr}"
        );
    }

    // Without build/ (an EROFS audited alone) nothing is known as prebuilt: every file is the
    // project's, so the vendor's partial RELRO fails, and the audit says why.
    let output = tmp.path().join("debian/output");
    fs::remove_file(output.join("build/packages-file-list.txt")).unwrap();
    let out = audit(&output);
    let report = audit_json(&out);
    assert_eq!(failed_required(&report, "/lib/libc.so.6"), ["full RELRO"]);
    let note = elf_findings(&report, "prebuilt files")[0];
    assert!(
        note["detail"]
            .as_str()
            .unwrap()
            .contains("packages-file-list.txt is missing"),
        "{note}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/lib/libc.so.6") && stderr.contains("judged as built by the project"),
        "{stderr}"
    );
}

#[test]
fn a_toolchain_file_with_text_relocations_or_an_executable_stack_still_fails() {
    let test = "a_toolchain_file_with_text_relocations_or_an_executable_stack_still_fails";
    if !can_use_debian_sysroot(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let full_relro = ["-O2", "-shared", "-Wl,-z,relro,-z,now"];
    // Non-PIC code (absolute words in .text) in a shared library: DT_TEXTREL.
    let textrel = arm_gcc(
        tmp.path(),
        "libtextrel.so.1",
        &[&full_relro[..], &["-fno-PIC", "-mword-relocations"]].concat(),
        C_PROGRAM,
    );
    let execstack = arm_gcc(
        tmp.path(),
        "libexecstack.so.1",
        &[&full_relro[..], &["-fPIC", "-Wl,-z,execstack"]].concat(),
        C_PROGRAM,
    );
    let output = toolchain_output(
        tmp.path(),
        Path::new(DEBIAN_ARMHF_SYSROOT),
        false,
        &[
            (TOOLCHAIN_PACKAGE, "/lib/libtextrel.so.1", textrel.as_path()),
            (
                TOOLCHAIN_PACKAGE,
                "/lib/libexecstack.so.1",
                execstack.as_path(),
            ),
        ],
    );
    let out = audit(&output);
    let report = audit_json(&out);
    assert_eq!(
        failed_required(&report, "/lib/libtextrel.so.1"),
        ["no text relocations"]
    );
    assert_eq!(
        failed_required(&report, "/lib/libexecstack.so.1"),
        ["non-executable stack"]
    );
    assert!(!out.status.success());
}

/// The read-only root settings of berth_odroid_xu4_defconfig as Buildroot resolves them, and the
/// fstab line package/skeleton-init-systemd writes for them.
const READ_ONLY_ROOT_CONFIG: &str = "# BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is not set\nBR2_TARGET_ROOTFS_EROFS=y\nBR2_INIT_SYSTEMD_VAR_FACTORY=y\n";
const READ_ONLY_FSTAB: &str = "/dev/root / auto ro 0 1\n";

/// A fake output of the board's overlay on a read-only root; `adjust` edits target/.
fn read_only_output(dir: &Path, adjust: impl Fn(&Path)) -> PathBuf {
    let output = fake_output(dir, &[], |target| {
        common::write_file(&target.join("etc/fstab"), READ_ONLY_FSTAB, 0o644);
        adjust(target);
    });
    let config = output.join(".config");
    let text = fs::read_to_string(&config).unwrap() + READ_ONLY_ROOT_CONFIG;
    fs::write(&config, text).unwrap();
    output
}

fn audit_root(output: &Path) -> Output {
    common::xtask()
        .args(["audit", "root", "--json"])
        .arg(output)
        .output()
        .unwrap()
}

#[test]
fn the_board_overlay_on_a_read_only_root_passes_and_a_writable_root_fails_naming_why() {
    let test = "the_board_overlay_on_a_read_only_root_passes_and_a_writable_root_fails_naming_why";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = read_only_output(tmp.path(), |_| {});
    let out = audit_root(&output);
    let report = audit_json(&out);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The overlay's own mounts are judged: the data volume and each declared bind.
    for subject in [
        "data.mount",
        "var-lib-docker.mount",
        "etc-machine-id.mount",
        "/var/lib/docker",
    ] {
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["subject"] == subject && f["verdict"] == "pass"),
            "{subject}: {report:#}"
        );
    }

    // Buildroot's defaults: remounted read-write, ext4, /var on the root.
    fs::write(
        output.join(".config"),
        "BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW=y\nBR2_TARGET_ROOTFS_EXT2=y\n",
    )
    .unwrap();
    fs::write(output.join("target/etc/fstab"), "/dev/root / auto rw 0 1\n").unwrap();
    let out = audit_root(&output);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for why in [
        "BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is y: the root would be remounted read-write",
        "BR2_TARGET_ROOTFS_EROFS is not set",
        "/etc/fstab mounts / with 'rw'",
    ] {
        assert!(stderr.contains(why), "does not say '{why}': {stderr}");
    }
}

#[test]
fn a_unit_writing_outside_the_declared_state_fails_the_audit() {
    let test = "a_unit_writing_outside_the_declared_state_fails_the_audit";
    if !can_make_images(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = read_only_output(tmp.path(), |target| {
        common::write_file(
            &target.join("usr/lib/systemd/system/stray.service"),
            "[Service]\nExecStart=/usr/bin/stray\nReadWritePaths=/opt/stray\n",
            0o644,
        );
        common::write_file(
            &target.join("etc/systemd/system/srv.mount"),
            "[Mount]\nWhat=/dev/sda1\nWhere=/srv\nType=ext4\n",
            0o644,
        );
    });
    let out = audit_root(&output);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stray.service is set to write /opt/stray")
            && stderr
                .contains("srv.mount mounts /dev/sda1 writable at /srv, which is not declared"),
        "{stderr}"
    );
}

#[test]
fn full_audit_runs_the_image_part_even_when_the_kernel_part_cannot() {
    let test = "full_audit_runs_the_image_part_even_when_the_kernel_part_cannot";
    // mkfs.erofs copies the owner of each file: only root can make root-owned files.
    if !can_make_images(test) || !common::is_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A fake output's kernel config holds only what the image audit reads, so the kernel part
    // fails; the image part still runs and passes.
    let output = fake_output(tmp.path(), &[], |_| {});
    let out = common::xtask()
        .args(["audit", "--json", "--output"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report = audit_json(&out);
    assert_eq!(report["image"]["passed"], true, "{report}");
    // The fake output's .config says nothing of the root, so the read-only root part fails.
    assert_eq!(report["root"]["passed"], false, "{report}");
    assert!(
        report["kernel"]["error"].is_string() || report["kernel"]["passed"] == false,
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("kernel"));
}
