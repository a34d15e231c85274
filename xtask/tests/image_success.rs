//! `cargo xtask image` end to end, offline, on a stand-in Buildroot made here (`stand_in/`): a
//! Makefile with just the targets the xtask runs (defconfig, show-info, the build, legal-info,
//! print-version for generate-cyclonedx), printing Buildroot's `>>>` step lines and laying out
//! `O=` as Buildroot does. What it uses is real wherever it can be: Kconfig (the real tree's, so
//! `.config` is our defconfig resolved), ARMv7 binaries built with the toolchain's hardening
//! flags, the board's rootfs overlay, post-build script, permission table and post-image script
//! with genimage.cfg (from a copy of this repository), the kernel .config resolved from a real 6.12
//! tree with our fragments, Buildroot's own generate-cyclonedx and genimage.sh. Bootloader blobs,
//! U-Boot and the kernel image are patterned stand-ins of their real sizes.

mod common;
mod stand_in;

use std::fs;
use std::process::Command;

use stand_in::build::Build;
use stand_in::{inputs, PACKAGES};
use xtask::project::SYSTEM_IMAGE_BUDGET_BYTES;

fn assert_nothing_looks_finished(build: &Build) {
    for name in ["SHA256SUMS", "manifest.toml"] {
        assert!(
            !build.output.join("images").join(name).exists(),
            "{name} left after a failure"
        );
    }
}

#[test]
fn a_stand_in_build_ends_in_verified_artifacts() {
    let test = "a_stand_in_build_ends_in_verified_artifacts";
    let Some(inputs) = inputs(test) else { return };
    let Some(build) = Build::prepare(&inputs).succeed(test) else {
        return;
    };
    let log = build.log();
    let images = build.output.join("images");
    for name in [
        "sdcard.img",
        "emmc-boot0.img",
        "sdcard.img.bmap",
        "emmc-boot0.img.bmap",
        "sbom.cdx.json",
        "legal-info.tar.gz",
        "file-size-stats.csv",
        "package-size-stats.csv",
        "manifest.toml",
        "SHA256SUMS",
    ] {
        assert!(
            images.join(name).is_file(),
            "no {name} in {}: {log}",
            images.display()
        );
    }
    common::run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&images),
    );
    let tree_output = build.dir.path().join("buildroot/output");
    assert!(
        !tree_output.exists(),
        "something ran make in the Buildroot tree without O="
    );
    xtask::verify::verify_folder(&images, None).unwrap();
    // The block maps work with the standard flashing tool: bmaptool writes the same bytes.
    if common::have_tool(test, "bmaptool", "bmap-tools") {
        for image in ["sdcard.img", "emmc-boot0.img"] {
            let copy = build.dir.path().join(format!("flashed-{image}"));
            let bmap = images.join(format!("{image}.bmap"));
            common::run_ok(
                Command::new("bmaptool")
                    .arg("copy")
                    .arg("--bmap")
                    .arg(&bmap)
                    .arg(images.join(image))
                    .arg(&copy),
            );
            assert!(
                fs::read(&copy).unwrap() == fs::read(images.join(image)).unwrap(),
                "bmaptool wrote another {image}"
            );
        }
    }

    // The post-build script put the key in, read from the file the xtask named.
    let keys = fs::read_to_string(build.output.join("target/root/.ssh/authorized_keys")).unwrap();
    assert!(keys.starts_with("ssh-ed25519 "), "{keys}");

    let manifest: toml::Value =
        toml::from_str(&fs::read_to_string(images.join("manifest.toml")).unwrap()).unwrap();
    let packages = manifest["package"].as_array().unwrap();
    assert_eq!(packages.len(), PACKAGES.len(), "{packages:?}");
    for (name, version, license, _) in PACKAGES {
        assert!(
            packages.iter().any(|p| p["name"].as_str() == Some(name)
                && p["version"].as_str() == Some(version)
                && p["licenses"].as_str() == Some(license)),
            "{name} {version} is not in the manifest: {packages:?}"
        );
    }
    assert_eq!(
        manifest["buildroot"]["version"].as_str(),
        Some(xtask::project::BUILDROOT_RELEASE.to_string().as_str())
    );
    // Every repository folder the build reads is recorded by digest, with the host tools.
    for folder in ["board", "br2-external", "configs"] {
        let digest = manifest["inputs"][folder].as_str().unwrap_or_default();
        assert_eq!(digest.len(), 64, "inputs.{folder} in {manifest:?}");
    }
    assert!(
        manifest["host"]["make"]
            .as_str()
            .is_some_and(|v| v.contains("Make")),
        "{manifest:?}"
    );
    let toolchain = &manifest["toolchain"];
    assert_eq!(
        toolchain["package"].as_str(),
        Some("toolchain-external-bootlin")
    );
    assert_eq!(toolchain["libc"].as_str(), Some("glibc"));
    let hardening: Vec<&str> = toolchain["hardening"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for symbol in [
        "BR2_SSP_STRONG",
        "BR2_RELRO_FULL",
        "BR2_FORTIFY_SOURCE_3",
        "BR2_PIC_PIE",
    ] {
        assert!(
            hardening.contains(&symbol),
            "{symbol} missing from the manifest: {hardening:?}"
        );
    }
    // Buildroot's size statistics name what each package put into the root, by file.
    let by_package = fs::read_to_string(images.join("package-size-stats.csv")).unwrap();
    assert!(
        by_package
            .lines()
            .any(|row| row.starts_with("docker-engine,")),
        "{by_package}"
    );
    let by_file = fs::read_to_string(images.join("file-size-stats.csv")).unwrap();
    assert!(
        by_file
            .lines()
            .any(|row| row.starts_with("usr/bin/dockerd,docker-engine,")),
        "{by_file}"
    );
    let artifacts = manifest["artifact"].as_array().unwrap();
    for name in [
        "sdcard.img",
        "emmc-boot0.img",
        "sdcard.img.bmap",
        "emmc-boot0.img.bmap",
        "sbom.cdx.json",
        "legal-info.tar.gz",
        "file-size-stats.csv",
        "package-size-stats.csv",
    ] {
        let artifact = artifacts
            .iter()
            .find(|a| a["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in the manifest"));
        let bytes = fs::read(images.join(name)).unwrap();
        assert_eq!(
            artifact["size"].as_integer(),
            Some(bytes.len() as i64),
            "{name}"
        );
        let digest = common::run_ok(Command::new("sha256sum").arg(images.join(name)));
        let digest = String::from_utf8_lossy(&digest.stdout);
        assert_eq!(
            artifact["sha256"].as_str(),
            digest.split_whitespace().next(),
            "{name}"
        );
    }

    // The SBOM is generate-cyclonedx's, over the same packages.
    let sbom: serde_json::Value =
        serde_json::from_slice(&fs::read(images.join("sbom.cdx.json")).unwrap()).unwrap();
    let components = sbom["components"].as_array().unwrap();
    assert!(
        components
            .iter()
            .any(|c| c["name"] == "runc" && c["version"] == "1.3.5"),
        "{sbom}"
    );
    // The whole build ran, every package to the end.
    assert!(
        log.contains(">>> runc 1.3.5 Building")
            && log.contains(">>>   Finalizing target directory"),
        "{log}"
    );

    // Run again with every package built: the images are made again and sealed again, with the
    // same SBOM and license bundle.
    let sums = fs::read_to_string(images.join("SHA256SUMS")).unwrap();
    build.run().unwrap();
    let log = build.log();
    assert!(
        !log.contains(">>> runc 1.3.5 Building"),
        "nothing is built twice: {log}"
    );
    assert!(log.contains(">>>   Generating filesystem image"), "{log}");
    common::run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&images),
    );
    let resealed = fs::read_to_string(images.join("SHA256SUMS")).unwrap();
    for name in ["sbom.cdx.json", "legal-info.tar.gz"] {
        let line = |sums: &str| {
            sums.lines()
                .find(|l| l.ends_with(&format!("  {name}")))
                .map(str::to_owned)
        };
        assert_eq!(line(&resealed), line(&sums), "{name}");
    }
}

#[test]
fn a_failing_package_is_named_and_nothing_looks_finished() {
    let test = "a_failing_package_is_named_and_nothing_looks_finished";
    let Some(inputs) = inputs(test) else { return };
    let Some(build) = Build::prepare(&inputs).succeed(test) else {
        return;
    };
    // runc is rebuilt (as after `make runc-dirclean`) and now fails: the finished image of the
    // first run must not keep looking finished.
    fs::remove_dir_all(build.output.join("build/runc-1.3.5")).unwrap();
    fs::write(
        build.dir.path().join("buildroot/payload/runc/FAILS"),
        "# github.com/opencontainers/runc/libcontainer/seccomp\n\
         libcontainer/seccomp/seccomp_linux.go:42:9: undefined: libseccomp.ActKillProcess\n",
    )
    .unwrap();
    let log = build.run().expect_err("the build must fail");
    assert!(log.contains("in package runc, step \"Building\""), "{log}");
    assert!(
        log.contains("  libcontainer/seccomp/seccomp_linux.go:42:9: undefined"),
        "its output's tail: {log}"
    );
    assert!(
        log.contains(&format!(
            "Full log: {}",
            build.output.join("build.log").display()
        )),
        "{log}"
    );
    assert_nothing_looks_finished(&build);
}

#[test]
fn an_image_failing_its_audit_is_not_sealed() {
    let test = "an_image_failing_its_audit_is_not_sealed";
    let Some(inputs) = inputs(test) else { return };
    let Some(build) = Build::prepare(&inputs).succeed(test) else {
        return;
    };
    // The overlay now lets containers talk to each other (CIS 2.2); the next build takes it in.
    let path = build
        .repo
        .join("board/odroid-xu4/rootfs-overlay/etc/docker/daemon.json");
    let daemon = fs::read_to_string(&path)
        .unwrap()
        .replace("\"icc\": false", "\"icc\": true");
    assert!(daemon.contains("\"icc\": true"));
    fs::write(path, daemon).unwrap();
    let log = build.run().expect_err("the audit must fail");
    let report = fs::read_to_string(build.output.join("audit.txt")).unwrap();
    assert!(log.contains("failed its hardening audit"), "{log}");
    assert!(report.contains("CIS 2.2"), "{report}");
    let images = build.output.join("images");
    assert!(
        images.join("sdcard.img").is_file(),
        "the build itself finished: {log}"
    );
    assert_nothing_looks_finished(&build);
    for derived in [
        "sdcard.img.bmap",
        "emmc-boot0.img.bmap",
        "sbom.cdx.json",
        "legal-info.tar.gz",
    ] {
        assert!(
            !images.join(derived).exists(),
            "the first build's {derived} lies beside the new image"
        );
    }
}

#[test]
fn a_missing_sbom_schema_stops_the_build_before_it_starts() {
    let test = "a_missing_sbom_schema_stops_the_build_before_it_starts";
    let Some(inputs) = inputs(test) else { return };
    let schema = "cache/berth/dl/cyclonedx/spdx-1.6.schema.json";
    let Some(build) = Build::prepare(&inputs).succeed(test) else {
        return;
    };
    fs::remove_file(build.dir.path().join(schema)).unwrap();
    fs::remove_file(build.output.join("build.log")).unwrap();
    // The build's host is offline even on a networked machine: the fetch fails.
    let log = build
        .run()
        .expect_err("the build must stop without the schema");
    assert!(
        log.contains("SPDX license list")
            && log.contains(&build.dir.path().join(schema).display().to_string()),
        "{log}"
    );
    assert!(
        !build.output.join("build.log").exists(),
        "the build started: {log}"
    );
    assert_nothing_looks_finished(&build);
}

#[test]
fn a_system_image_over_its_budget_is_refused_and_not_sealed() {
    let test = "a_system_image_over_its_budget_is_refused_and_not_sealed";
    let Some(inputs) = inputs(test) else { return };
    let build = Build::prepare(&inputs);
    // An uncompressed root holding a file as big as the whole budget: the root alone fills it,
    // and its hash tree goes over.
    let defconfig = build.repo.join("configs/berth_odroid_xu4_defconfig");
    let mut text = fs::read_to_string(&defconfig).unwrap();
    text.push_str("BR2_TARGET_ROOTFS_EROFS_NONE=y\n");
    fs::write(&defconfig, text).unwrap();
    let big = build
        .dir
        .path()
        .join("buildroot/payload/docker-engine/target/usr/share/berth-ballast");
    {
        use std::io::Write;
        fs::create_dir_all(big.parent().unwrap()).unwrap();
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| ((i * 31) >> 3) as u8 | 1)
            .collect();
        let mut file = std::io::BufWriter::new(fs::File::create(&big).unwrap());
        for _ in 0..SYSTEM_IMAGE_BUDGET_BYTES >> 20 {
            file.write_all(&chunk).unwrap();
        }
    }
    let log = build.run().expect_err("the budget must be enforced");
    assert!(
        log.contains("system.img is ")
            && log.contains(&format!(
                "over its budget of {SYSTEM_IMAGE_BUDGET_BYTES} bytes"
            )),
        "{log}"
    );
    let images = build.output.join("images");
    let size = fs::metadata(images.join("system.img")).unwrap().len();
    assert!(size > SYSTEM_IMAGE_BUDGET_BYTES, "{size}");
    assert_nothing_looks_finished(&build);
}
