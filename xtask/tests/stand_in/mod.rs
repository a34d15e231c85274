//! The stand-in Buildroot the image tests build with, and what it needs: a Makefile with just the
//! targets the xtask runs (defconfig, show-info, the build, legal-info, print-version for
//! generate-cyclonedx), printing Buildroot's `>>>` step lines and laying out `O=` as Buildroot
//! does, with Buildroot's own scripts for the images and the size statistics; a copy of this
//! repository's parts the xtask reads; a download cache holding every source.

pub mod build;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The stand-in's packages: name, version, license, download site.
pub const PACKAGES: &[(&str, &str, &str, &str)] = &[
    (
        "toolchain-external-bootlin",
        "2025.08-1",
        "unknown",
        "https://toolchains.bootlin.com/downloads/releases/toolchains/armv7-eabihf/tarballs",
    ),
    ("skeleton-init-systemd", "", "unknown", ""),
    (
        "linux",
        "6.12.91",
        "GPL-2.0 WITH Linux-syscall-note",
        "https://cdn.kernel.org/pub/linux/kernel/v6.x",
    ),
    (
        "audit",
        "4.0.5",
        "GPL-2.0+ (programs), LGPL-2.1+ (libraries)",
        "https://github.com/linux-audit/audit-userspace/archive/v4.0.5",
    ),
    ("berth-data-crypt", "1.0", "MIT", ""),
    (
        "apparmor",
        "3.1.7",
        "GPL-2.0",
        "https://gitlab.com/apparmor/apparmor/-/archive/v3.1.7",
    ),
    (
        "runc",
        "1.3.5",
        "Apache-2.0, LGPL-2.1 (libseccomp)",
        "https://github.com/opencontainers/runc/archive/v1.3.5",
    ),
    (
        "containerd",
        "2.0.7",
        "Apache-2.0",
        "https://github.com/containerd/containerd/archive/v2.0.7",
    ),
    (
        "tini",
        "0.19.0",
        "MIT",
        "https://github.com/krallin/tini/archive/v0.19.0",
    ),
    (
        "docker-engine",
        "28.3.3",
        "Apache-2.0",
        "https://github.com/moby/moby/archive/v28.3.3",
    ),
    (
        "uboot",
        "2026.01",
        "GPL-2.0+",
        "https://ftp.denx.de/pub/u-boot",
    ),
    // The twin's U-Boot: the same source as uboot, which downloads it.
    ("berth-twin-uboot", "2026.01", "GPL-2.0+", ""),
    (
        "hardkernel-xu4-blobs",
        "88af53fbcef8386cb4d5f04c19f4b2bcb69e90ca",
        "PROPRIETARY",
        "https://github.com/hardkernel/u-boot/archive/88af53fbcef8386cb4d5f04c19f4b2bcb69e90ca",
    ),
];
/// Packages whose sources legal-info leaves out (`<PKG>_REDISTRIBUTE = NO`).
pub const NOT_REDISTRIBUTED: &[&str] = &["hardkernel-xu4-blobs"];

/// Stand-ins (never the real blobs or builds) for what packages install into images/, with
/// their sizes: what post-image.sh and genimage.cfg read. The kernel's files also go into the
/// root's /boot (BR2_LINUX_KERNEL_INSTALL_TARGET), where U-Boot loads them from.
pub const IMAGE_FILES: &[(&str, &str, usize)] = &[
    ("hardkernel-xu4-blobs", "bl1.bin.hardkernel", 15360),
    (
        "hardkernel-xu4-blobs",
        "bl2.bin.hardkernel.720k_uboot",
        14336,
    ),
    ("hardkernel-xu4-blobs", "tzsw.bin.hardkernel", 262_144),
    ("uboot", "u-boot-dtb.bin", 577_000),
    // Made by host-uboot-tools from board/odroid-xu4/boot.cmd (BR2_PACKAGE_HOST_UBOOT_TOOLS_BOOT_SCRIPT).
    ("uboot", "boot.scr", 2048),
    ("berth-twin-uboot", "u-boot-qemu-twin.bin", 600_000),
    ("linux", "zImage", 1 << 20),
    ("linux", "exynos5422-odroidxu3-lite.dtb", 4096),
    ("linux", "exynos5422-odroidxu4.dtb", 4096),
    ("linux", "exynos5422-odroidxu3.dtb", 4096),
    ("linux", "exynos5422-odroidhc1.dtb", 4096),
];

/// ARMv7 programs each package installs, built with Buildroot's hardening flags
/// (BR2_SSP_STRONG, BR2_FORTIFY_SOURCE_3, BR2_PIC_PIE, BR2_RELRO_FULL).
pub const PROGRAMS: &[(&str, &str)] = &[
    ("audit", "usr/sbin/auditd"),
    // Reached as /sbin/apparmor_parser, where dockerd looks for it (merged /usr).
    ("apparmor", "usr/sbin/apparmor_parser"),
    ("runc", "usr/bin/runc"),
    ("containerd", "usr/bin/containerd"),
    ("tini", "usr/bin/docker-init"),
    ("docker-engine", "usr/bin/dockerd"),
];
pub const HARDENING_FLAGS: &[&str] = &[
    "-O2",
    "-fstack-protector-strong",
    "-D_FORTIFY_SOURCE=3",
    "-fPIE",
    "-pie",
    "-Wl,-z,relro,-z,now",
];
pub const C_PROGRAM: &str = "#include <stdio.h>\n#include <string.h>\n\
    int main(int argc, char **argv) { char buf[64]; strcpy(buf, argv[0]); printf(\"%s %d\\n\", buf, argc); return 0; }\n";

// Moby's contrib/init/systemd units, which docker-engine installs (not in this repository).
pub const DOCKER_SERVICE: &str = "[Unit]\nDescription=Docker Application Container Engine\nAfter=network-online.target docker.socket containerd.service\nRequires=docker.socket\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n\n[Install]\nWantedBy=multi-user.target\n";
pub const DOCKER_SOCKET: &str = "[Unit]\nDescription=Docker Socket for the API\n\n[Socket]\nListenStream=/run/docker.sock\nSocketMode=0660\nSocketUser=root\nSocketGroup=docker\n\n[Install]\nWantedBy=sockets.target\n";

pub const MAKEFILE_RULES: &str = r#"
# As in Buildroot: without O= on the command line the output is output/ in the tree, and every
# run of make creates it.
ifneq ("$(origin O)", "command line")
O := $(CURDIR)/output
endif
$(shell mkdir -p $(O))
BOARD := $(BR2_EXTERNAL)/../board/odroid-xu4
# As in Buildroot, BR2_DL_DIR from the environment wins over the one in .config.
DL_DIR := $(BR2_DL_DIR)
-include $(O)/.config
# As in Buildroot, packages are built once (their stamps stay) and the root filesystem and
# images are made again on every run.
.PHONY: all defconfig show-info print-version legal-info $(O)/images/rootfs.erofs $(O)/images/sdcard.img
all: $(O)/images/sdcard.img $(O)/host/bin/rauc

# BR2_PACKAGE_HOST_RAUC: the host's own rauc (Debian's) stands in for the one Buildroot builds.
$(O)/host/bin/rauc:
	@mkdir -p $(@D) && ln -sf "$$(command -v rauc)" $@

# Kconfig is the real Buildroot's, so .config is our defconfig as Buildroot resolves it.
defconfig:
	@$(MAKE) --no-print-directory -C $(REAL_BUILDROOT) O=$(O) BR2_EXTERNAL=$(BR2_EXTERNAL) BR2_DEFCONFIG=$(BR2_DEFCONFIG) defconfig

show-info:
	@cat show-info.json

print-version:
	@echo $(BR2_VERSION)

# One package: its steps, stamps in build/<name>-<version>/ as Buildroot keeps them. A file
# payload/<name>/FAILS makes its build fail, printing that file.
define package
$(O)/$($(1)_DIR)/.stamp_built: | $(O)/.config
	@echo '>>> $(1) $($(1)_VERSION) Extracting'
	@$(if $(filter $(1),$(DOWNLOADED)),test -f $(DL_DIR)/$(1)/$(1)-$($(1)_VERSION).tar.gz || \
		{ echo "$(1): no $(1)-$($(1)_VERSION).tar.gz in BR2_DL_DIR=$(DL_DIR)" >&2; exit 1; })
	@mkdir -p $$(@D)
	@echo '>>> $(1) $($(1)_VERSION) Building'
	@if [ -f payload/$(1)/FAILS ]; then cat payload/$(1)/FAILS >&2; exit 1; fi
	@if [ -d payload/$(1)/build ]; then cp -a payload/$(1)/build/. $$(@D)/; fi
	@touch $$@
$(O)/$($(1)_DIR)/.stamp_installed: $(O)/$($(1)_DIR)/.stamp_built
	@echo '>>> $(1) $($(1)_VERSION) Installing to target'
	@mkdir -p $(O)/target
	@if [ -d payload/$(1)/target ]; then cp -a payload/$(1)/target/. $(O)/target/ && \
		(cd payload/$(1)/target && find . \( -type f -o -type l \) -printf '$(1),%p\n') >> $(O)/build/packages-file-list.txt; fi
	@if [ -d payload/$(1)/images ]; then echo '>>> $(1) $($(1)_VERSION) Installing to images directory'; \
		mkdir -p $(O)/images && cp -a payload/$(1)/images/. $(O)/images/; fi
	@touch $$@
STAMPS += $(O)/$($(1)_DIR)/.stamp_installed
endef
$(foreach p,$(PACKAGES),$(eval $(call package,$(p))))

# BR2_ROOTFS_OVERLAY, BR2_ROOTFS_POST_BUILD_SCRIPT, BR2_ROOTFS_DEVICE_TABLE (modes and owners;
# makedevs in real Buildroot), then BR2_TARGET_ROOTFS_EROFS with the configured compression
# (fs/erofs/erofs.mk), reproducible as BR2_REPRODUCIBLE makes it.
comma := ,
EROFS_COMPRESSION := $(if $(BR2_TARGET_ROOTFS_EROFS_LZ4HC),-zlz4hc$(comma)$(BR2_TARGET_ROOTFS_EROFS_LZ4HC_LEVEL)) \
	$(if $(filter-out 0,$(BR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE)),-C$(BR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE))
$(O)/images/rootfs.erofs: $(STAMPS)
	@echo '>>>   Finalizing target directory'
	@cp -a $(BOARD)/rootfs-overlay/. $(O)/target/
	@mkdir -p $(O)/images
	@echo '>>>   Executing post-build script $(BOARD)/post-build.sh'
	@BINARIES_DIR=$(O)/images $(BOARD)/post-build.sh $(O)/target
	@grep -v '^#' $(BOARD)/permissions.txt | while read -r name type mode uid gid rest; do \
		chmod $$mode $(O)/target$$name && chown $$uid:$$gid $(O)/target$$name || exit 1; done
	@echo '>>>   Generating filesystem image rootfs.erofs'
	@rm -f $@ && mkfs.erofs --quiet $(EROFS_COMPRESSION) -T $(SOURCE_DATE_EPOCH) -U 00000000-0000-0000-0000-000000000000 $@ $(O)/target

# The board's post-image script, run as Buildroot runs it: from the top of the tree (it calls
# support/scripts/genimage.sh, Buildroot's, copied here) with Buildroot's variables set. The
# host's veritysetup and mkenvimage stand in for host-cryptsetup's and host-uboot-tools'.
$(O)/images/sdcard.img: $(O)/images/rootfs.erofs
	@mkdir -p $(O)/host/sbin $(O)/host/bin && ln -sf $$(command -v veritysetup) $(O)/host/sbin/veritysetup
	@ln -sf $$(command -v mkenvimage) $(O)/host/bin/mkenvimage
	@echo '>>>   Executing post-image script $(BOARD)/post-image.sh'
	@BR2_CONFIG=$(O)/.config BUILD_DIR=$(O)/build BINARIES_DIR=$(O)/images TARGET_DIR=$(O)/target \
		HOST_DIR=$(O)/host $(BOARD)/post-image.sh $(O)/images

# Buildroot's legal-info copies every package's source archive from the download folder.
legal-info: $(O)/.config
	@rm -rf $(O)/legal-info && mkdir -p $(O)/legal-info/sources
	@echo 'PACKAGE,VERSION,LICENSE,SOURCE ARCHIVE' > $(O)/legal-info/manifest.csv
	@$(foreach p,$(REDISTRIBUTED),mkdir -p $(O)/legal-info/sources/$(p)-$($(p)_VERSION) && \
		cp $(DL_DIR)/$(p)/$(p)-$($(p)_VERSION).tar.gz $(O)/legal-info/sources/$(p)-$($(p)_VERSION)/ && \
		echo '"$(p)","$($(p)_VERSION)","$($(p)_LICENSE)","$(p)-$($(p)_VERSION).tar.gz"' >> $(O)/legal-info/manifest.csv && ) true
"#;

/// Everything the test needs from the host and the environment, or None after a printed skip.
pub struct Inputs {
    buildroot: PathBuf,
    linux: PathBuf,
    spdx_schema: PathBuf,
}

pub fn inputs(test: &str) -> Option<Inputs> {
    let buildroot = crate::common::buildroot_tree(test)?;
    let linux = crate::common::linux_tree(test)?;
    // mkfs.erofs copies owners: only root makes the root-owned image the CIS audit expects.
    if !crate::common::is_root(test) {
        return None;
    }
    for (tool, package) in [
        ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
        ("mkfs.erofs", "erofs-utils"),
        ("veritysetup", "cryptsetup-bin"),
        ("mkenvimage", "u-boot-tools"),
        ("genimage", "genimage"),
        ("mkdosfs", "dosfstools"),
        ("mcopy", "mtools"),
        ("fsck.erofs", "erofs-utils"),
        ("make", "make"),
        ("git", "git"),
        ("python3", "python3"),
        ("sha256sum", "coreutils"),
        ("rauc", "rauc"),
        ("mksquashfs", "squashfs-tools"),
        ("openssl", "openssl"),
    ] {
        if !crate::common::have_tool(test, tool, package) {
            return None;
        }
    }
    // The size statistics need matplotlib, which Debian's python3 imports once it is installed.
    let sh = xshell::Shell::new().unwrap();
    if xtask::image::sizes::python(&sh).is_err() {
        let (module, package) = xtask::image::sizes::MODULE;
        crate::common::skip(
            test,
            &format!("no python3 here imports {module} (apt-get install {package})"),
        );
        return None;
    }
    // generate-cyclonedx needs CycloneDX's SPDX list; offline it must already be in the
    // download cache (.ci/run puts it there).
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let spdx_schema = cache.join("berth/dl/cyclonedx/spdx-1.6.schema.json");
    if !spdx_schema.is_file() {
        crate::common::skip(
            test,
            &format!("{} is missing (.ci/run installs it)", spdx_schema.display()),
        );
        return None;
    }
    Some(Inputs {
        buildroot,
        linux,
        spdx_schema,
    })
}

/// The parts of this repository the xtask reads, committed to a fresh git repository, so a
/// variant can change a shipped file without touching the checkout.
pub fn repo_copy(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let root = crate::common::repo_root();
    crate::common::run_ok(
        Command::new("cp")
            .arg("-a")
            .args(["configs", "board", "br2-external"].map(|d| root.join(d)))
            .arg(&repo),
    );
    crate::common::commit_all(&repo, "stand-in checkout");
    repo
}

/// The kernel .config our fragments resolve to in the real tree (`cargo xtask audit kernel --linux`).
pub fn resolved_kernel_config(linux: &Path, dir: &Path) -> PathBuf {
    let cache = dir.join("kernel-cache");
    crate::common::run_ok(
        crate::common::xtask()
            .args(["audit", "kernel", "--linux"])
            .arg(linux)
            .env("XDG_CACHE_HOME", &cache),
    );
    cache.join("berth/kernel-check/resolved.config")
}

/// Buildroot's `build/<name>-<version>`, `build/<name>` for a package without a version.
pub fn package_dir(name: &str, version: &str) -> String {
    if version.is_empty() {
        format!("build/{name}")
    } else {
        format!("build/{name}-{version}")
    }
}

pub fn show_info() -> serde_json::Value {
    let mut info = serde_json::Map::new();
    for (name, version, license, site) in PACKAGES {
        let downloads = if site.is_empty() {
            serde_json::json!([])
        } else {
            serde_json::json!([{ "source": format!("{name}-{version}.tar.gz"), "uris": [format!("https+{site}")] }])
        };
        let dir = package_dir(name, version);
        info.insert(
            name.to_string(),
            serde_json::json!({
                "type": "target", "name": name, "virtual": false, "version": version,
                "licenses": license, "license_files": [], "redistributable": !NOT_REDISTRIBUTED.contains(name),
                "dl_dir": name, "downloads": downloads,
                "package_dir": format!("package/{name}"), "stamp_dir": dir, "source_dir": dir, "build_dir": dir,
                "install_target": true, "install_staging": false, "install_images": false,
                "dependencies": [], "reverse_dependencies": []
            }),
        );
    }
    info.insert(
        "rootfs-erofs".into(),
        serde_json::json!({"type": "rootfs", "name": "rootfs-erofs", "image_name": "rootfs.erofs"}),
    );
    serde_json::Value::Object(info)
}

/// The stand-in Buildroot tree: Makefile, show-info, generate-cyclonedx, and payload/<package>/
/// with what each package's build and installation put in place.
/// Make the stand-in pass as a clean checkout of the pinned commit: its own commit stands in for
/// the pinned one through a git replace ref, and HEAD names the pinned id. The xtask's check of
/// the tree is not what these tests are about (tests/buildroot_tree.rs is).
pub fn claim_the_pinned_commit(tree: &Path) {
    crate::common::commit_all(tree, "stand-in");
    let git = |args: &[&str]| crate::common::git(tree, args);
    let own = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let pinned = xtask::project::BUILDROOT_COMMIT.to_string();
    git(&["update-ref", &format!("refs/replace/{pinned}"), own.trim()]);
    git(&["update-ref", "--no-deref", "HEAD", &pinned]);
}

pub fn stand_in_buildroot(inputs: &Inputs, dir: &Path) {
    let tree = dir.join("buildroot");
    let payload = tree.join("payload");
    let mut makefile = format!(
        "# Stand-in for Buildroot, written by xtask/tests/image_success.rs.\nexport BR2_VERSION := {}\n",
        xtask::project::BUILDROOT_VERSION
    );
    let names: Vec<&str> = PACKAGES.iter().map(|p| p.0).collect();
    let downloaded: Vec<&str> = PACKAGES
        .iter()
        .filter(|p| !p.3.is_empty())
        .map(|p| p.0)
        .collect();
    let redistributed: Vec<&str> = downloaded
        .iter()
        .copied()
        .filter(|name| !NOT_REDISTRIBUTED.contains(name))
        .collect();
    makefile.push_str(&format!(
        "REAL_BUILDROOT := {}\nPACKAGES := {}\nDOWNLOADED := {}\nREDISTRIBUTED := {}\n",
        inputs.buildroot.display(),
        names.join(" "),
        downloaded.join(" "),
        redistributed.join(" ")
    ));
    for (name, version, license, _) in PACKAGES {
        let dir = package_dir(name, version);
        makefile.push_str(&format!(
            "{name}_VERSION := {version}\n{name}_LICENSE := {license}\n{name}_DIR := {dir}\n"
        ));
    }
    makefile.push_str(MAKEFILE_RULES);
    crate::common::write_file(&tree.join("Makefile"), makefile.as_bytes(), 0o644);
    crate::common::write_file(
        &tree.join("show-info.json"),
        serde_json::to_string_pretty(&show_info())
            .unwrap()
            .as_bytes(),
        0o644,
    );
    for script in [
        "utils/generate-cyclonedx",
        "support/scripts/genimage.sh",
        "support/scripts/size-stats",
    ] {
        crate::common::write_file(
            &tree.join(script),
            fs::read(inputs.buildroot.join(script)).unwrap(),
            0o755,
        );
    }
    for (package, name, len) in IMAGE_FILES {
        let bytes: Vec<u8> = (0..*len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ name.len() as u8)
            .collect();
        crate::common::write_file(
            &payload.join(package).join("images").join(name),
            &bytes,
            0o644,
        );
        if *package == "linux" {
            let boot = payload.join("linux/target/boot").join(name);
            crate::common::write_file(&boot, &bytes, 0o644);
        }
    }

    let kernel_config = fs::read(resolved_kernel_config(&inputs.linux, dir)).unwrap();
    crate::common::write_file(&payload.join("linux/build/.config"), &kernel_config, 0o644);
    let source = dir.join("prog.c");
    fs::write(&source, C_PROGRAM).unwrap();
    for (package, path) in PROGRAMS {
        let binary = payload.join(package).join("target").join(path);
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        crate::common::run_ok(
            Command::new("arm-linux-gnueabihf-gcc")
                .args(HARDENING_FLAGS)
                .arg(&source)
                .arg("-o")
                .arg(&binary),
        );
    }
    shipped_elf_exception_files(&payload, &source, dir);
    let skeleton = payload.join("skeleton-init-systemd/target/etc");
    crate::common::write_file(
        &skeleton.join("group"),
        b"root:x:0:\ndocker:x:101:\ndockremap:x:1000:\n",
        0o644,
    );
    crate::common::write_file(
        &skeleton.join("passwd"),
        b"root:x:0:0:root:/root:/bin/sh\ndockremap:x:1000:1000::/:/bin/false\n",
        0o644,
    );
    // What package/skeleton-init-systemd writes when the root is not remounted read-write.
    crate::common::write_file(&skeleton.join("fstab"), b"/dev/root / auto ro 0 1\n", 0o644);
    // The merged /usr of a systemd skeleton (system/skeleton): /sbin/apparmor_parser is found
    // through /sbin -> usr/sbin.
    std::os::unix::fs::symlink("usr/sbin", skeleton.parent().unwrap().join("sbin")).unwrap();
    let units = payload.join("docker-engine/target/usr/lib/systemd/system");
    crate::common::write_file(
        &units.join("docker.service"),
        DOCKER_SERVICE.as_bytes(),
        0o644,
    );
    crate::common::write_file(
        &units.join("docker.socket"),
        DOCKER_SOCKET.as_bytes(),
        0o644,
    );
    let crypt = fs::read(
        crate::common::repo_root().join("br2-external/package/berth-data-crypt/berth-data-crypt"),
    )
    .unwrap();
    crate::common::write_file(
        &payload.join("berth-data-crypt/target/usr/libexec/berth-data-crypt"),
        &crypt,
        0o755,
    );
    claim_the_pinned_commit(&tree);
}

/// What a real build holds at each path an `[[elf]]` exception names (the audit refuses an
/// exception that matches no file): tini builds /usr/bin/tini. Hardened ARM stand-ins go there,
/// a program with tini, a library with the one stand-in package that installs libraries. (The
/// toolchain's own libraries need none: `[[elf_prebuilt]]` judges them by owning package.)
pub fn shipped_elf_exception_files(payload: &Path, source: &Path, dir: &Path) {
    let library = dir.join("libstand-in.so");
    crate::common::run_ok(
        Command::new("arm-linux-gnueabihf-gcc")
            .args(["-O2", "-shared", "-fPIC", "-Wl,-z,relro,-z,now"])
            .arg(source)
            .arg("-o")
            .arg(&library),
    );
    let program = payload.join("tini/target/usr/bin/docker-init");
    let exceptions = xtask::audit::exceptions::Exceptions::load(
        &crate::common::repo_root().join(xtask::audit::EXCEPTIONS),
    )
    .unwrap();
    for e in &exceptions.elf {
        let (package, stand_in) = if e.path.contains("/bin/") {
            ("tini", &program)
        } else {
            ("toolchain-external-bootlin", &library)
        };
        let dest = payload
            .join(package)
            .join("target")
            .join(e.path.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(stand_in, dest).unwrap();
    }
}

/// The download cache of a machine that fetched every source before: nothing left to download.
pub fn filled_cache(inputs: &Inputs, dir: &Path) {
    let cache = dir.join("cache");
    let dl = cache.join("berth/dl");
    for (name, version, _, site) in PACKAGES.iter().filter(|p| !p.3.is_empty()) {
        crate::common::write_file(
            &dl.join(name).join(format!("{name}-{version}.tar.gz")),
            format!("{name} {version} from {site}\n").as_bytes(),
            0o644,
        );
    }
    crate::common::write_file(
        &dl.join("cyclonedx/spdx-1.6.schema.json"),
        fs::read(&inputs.spdx_schema).unwrap(),
        0o644,
    );
}
