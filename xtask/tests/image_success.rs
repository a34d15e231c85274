//! `cargo xtask image` end to end, offline, on a stand-in Buildroot made here: a
//! Makefile with just the targets the xtask runs (defconfig, show-info, the build, legal-info,
//! print-version for generate-cyclonedx), printing Buildroot's `>>>` step lines and laying out
//! `O=` as Buildroot does. What it uses is real wherever it can be: Kconfig (the real tree's, so
//! `.config` is our defconfig resolved), ARMv7 binaries built with the toolchain's hardening
//! flags, the board's rootfs overlay, post-build script, permission table and post-image script
//! with genimage.cfg (from a copy of this repository), the kernel .config resolved from a real 6.12
//! tree with our fragments, Buildroot's own generate-cyclonedx and genimage.sh. Bootloader blobs,
//! U-Boot and the kernel image are patterned stand-ins of their real sizes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::host::Host;
use xtask::image::{self, ImageArgs};
use xtask::project::Repo;

/// The stand-in's packages: name, version, license, download site.
const PACKAGES: &[(&str, &str, &str, &str)] = &[
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
    (
        "hardkernel-xu4-blobs",
        "88af53fbcef8386cb4d5f04c19f4b2bcb69e90ca",
        "PROPRIETARY",
        "https://github.com/hardkernel/u-boot/archive/88af53fbcef8386cb4d5f04c19f4b2bcb69e90ca",
    ),
];
/// Packages whose sources legal-info leaves out (`<PKG>_REDISTRIBUTE = NO`).
const NOT_REDISTRIBUTED: &[&str] = &["hardkernel-xu4-blobs"];

/// Stand-ins (never the real blobs or builds) for what packages install into images/, with
/// their sizes: what post-image.sh and genimage.cfg read.
const IMAGE_FILES: &[(&str, &str, usize)] = &[
    ("hardkernel-xu4-blobs", "bl1.bin.hardkernel", 15360),
    (
        "hardkernel-xu4-blobs",
        "bl2.bin.hardkernel.720k_uboot",
        14336,
    ),
    ("hardkernel-xu4-blobs", "tzsw.bin.hardkernel", 262_144),
    ("uboot", "u-boot-dtb.bin", 577_000),
    ("linux", "zImage", 1 << 20),
    ("linux", "exynos5422-odroidxu3-lite.dtb", 4096),
    ("linux", "exynos5422-odroidxu4.dtb", 4096),
    ("linux", "exynos5422-odroidxu3.dtb", 4096),
    ("linux", "exynos5422-odroidhc1.dtb", 4096),
];

/// ARMv7 programs each package installs, built with Buildroot's hardening flags
/// (BR2_SSP_STRONG, BR2_FORTIFY_SOURCE_3, BR2_PIC_PIE, BR2_RELRO_FULL).
const PROGRAMS: &[(&str, &str)] = &[
    ("audit", "usr/sbin/auditd"),
    ("runc", "usr/bin/runc"),
    ("containerd", "usr/bin/containerd"),
    ("tini", "usr/bin/docker-init"),
    ("docker-engine", "usr/bin/dockerd"),
];
const HARDENING_FLAGS: &[&str] = &[
    "-O2",
    "-fstack-protector-strong",
    "-D_FORTIFY_SOURCE=3",
    "-fPIE",
    "-pie",
    "-Wl,-z,relro,-z,now",
];
const C_PROGRAM: &str = "#include <stdio.h>\n#include <string.h>\n\
    int main(int argc, char **argv) { char buf[64]; strcpy(buf, argv[0]); printf(\"%s %d\\n\", buf, argc); return 0; }\n";

// Moby's contrib/init/systemd units, which docker-engine installs (not in this repository).
const DOCKER_SERVICE: &str = "[Unit]\nDescription=Docker Application Container Engine\nAfter=network-online.target docker.socket containerd.service\nRequires=docker.socket\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n\n[Install]\nWantedBy=multi-user.target\n";
const DOCKER_SOCKET: &str = "[Unit]\nDescription=Docker Socket for the API\n\n[Socket]\nListenStream=/run/docker.sock\nSocketMode=0660\nSocketUser=root\nSocketGroup=docker\n\n[Install]\nWantedBy=sockets.target\n";

const MAKEFILE_RULES: &str = r#"
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
.PHONY: all defconfig show-info print-version legal-info $(O)/images/rootfs.ext4 $(O)/images/sdcard.img
all: $(O)/images/sdcard.img

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
	@if [ -d payload/$(1)/target ]; then cp -a payload/$(1)/target/. $(O)/target/; fi
	@if [ -d payload/$(1)/images ]; then echo '>>> $(1) $($(1)_VERSION) Installing to images directory'; \
		mkdir -p $(O)/images && cp -a payload/$(1)/images/. $(O)/images/; fi
	@touch $$@
STAMPS += $(O)/$($(1)_DIR)/.stamp_installed
endef
$(foreach p,$(PACKAGES),$(eval $(call package,$(p))))

# BR2_ROOTFS_OVERLAY, BR2_ROOTFS_POST_BUILD_SCRIPT, BR2_ROOTFS_DEVICE_TABLE (modes and owners;
# makedevs in real Buildroot), then BR2_TARGET_ROOTFS_EXT2_4.
$(O)/images/rootfs.ext4: $(STAMPS)
	@echo '>>>   Finalizing target directory'
	@cp -a $(BOARD)/rootfs-overlay/. $(O)/target/
	@mkdir -p $(O)/images
	@echo '>>>   Executing post-build script $(BOARD)/post-build.sh'
	@BINARIES_DIR=$(O)/images $(BOARD)/post-build.sh $(O)/target
	@grep -v '^#' $(BOARD)/permissions.txt | while read -r name type mode uid gid rest; do \
		chmod $$mode $(O)/target$$name && chown $$uid:$$gid $(O)/target$$name || exit 1; done
	@echo '>>>   Generating filesystem image rootfs.ext4'
	@mkfs.ext4 -q -F $(subst ",,$(BR2_TARGET_ROOTFS_EXT2_MKFS_OPTIONS)) -d $(O)/target $@ 48M

# The board's post-image script, run as Buildroot runs it: from the top of the tree (it calls
# support/scripts/genimage.sh, Buildroot's, copied here) with Buildroot's variables set.
$(O)/images/sdcard.img: $(O)/images/rootfs.ext4
	@echo '>>>   Executing post-image script $(BOARD)/post-image.sh'
	@BR2_CONFIG=$(O)/.config BUILD_DIR=$(O)/build BINARIES_DIR=$(O)/images TARGET_DIR=$(O)/target \
		$(BOARD)/post-image.sh $(O)/images

# Buildroot's legal-info copies every package's source archive from the download folder.
legal-info: $(O)/.config
	@rm -rf $(O)/legal-info && mkdir -p $(O)/legal-info/sources
	@echo 'PACKAGE,VERSION,LICENSE,SOURCE ARCHIVE' > $(O)/legal-info/manifest.csv
	@$(foreach p,$(REDISTRIBUTED),mkdir -p $(O)/legal-info/sources/$(p)-$($(p)_VERSION) && \
		cp $(DL_DIR)/$(p)/$(p)-$($(p)_VERSION).tar.gz $(O)/legal-info/sources/$(p)-$($(p)_VERSION)/ && \
		echo '"$(p)","$($(p)_VERSION)","$($(p)_LICENSE)","$(p)-$($(p)_VERSION).tar.gz"' >> $(O)/legal-info/manifest.csv && ) true
"#;

/// Everything the test needs from the host and the environment, or None after a printed skip.
struct Inputs {
    buildroot: PathBuf,
    linux: PathBuf,
    spdx_schema: PathBuf,
}

fn inputs(test: &str) -> Option<Inputs> {
    let buildroot = common::buildroot_tree(test)?;
    let linux = common::linux_tree(test)?;
    // mkfs.ext4 -d copies owners: only root makes the root-owned image the CIS audit expects.
    if !common::is_root(test) {
        return None;
    }
    for (tool, package) in [
        ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
        ("mkfs.ext4", "e2fsprogs"),
        ("genimage", "genimage"),
        ("mkdosfs", "dosfstools"),
        ("mcopy", "mtools"),
        ("debugfs", "e2fsprogs"),
        ("make", "make"),
        ("git", "git"),
        ("python3", "python3"),
        ("sha256sum", "coreutils"),
    ] {
        if !common::have_tool(test, tool, package) {
            return None;
        }
    }
    // generate-cyclonedx needs CycloneDX's SPDX list; offline it must already be in the
    // download cache (.ci/run puts it there).
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let spdx_schema = cache.join("berth/dl/cyclonedx/spdx-1.6.schema.json");
    if !spdx_schema.is_file() {
        common::skip(
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
fn repo_copy(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let root = common::checkout_root();
    common::run_ok(
        Command::new("cp")
            .arg("-a")
            .args(["configs", "board", "br2-external"].map(|d| root.join(d)))
            .arg(&repo),
    );
    common::commit_all(&repo, "stand-in checkout");
    repo
}

/// The kernel .config our fragments resolve to in the real tree (`cargo xtask audit kernel --linux`).
fn resolved_kernel_config(linux: &Path, dir: &Path) -> PathBuf {
    let cache = dir.join("kernel-cache");
    common::run_ok(
        common::xtask()
            .args(["audit", "kernel", "--linux"])
            .arg(linux)
            .env("XDG_CACHE_HOME", &cache),
    );
    cache.join("berth/kernel-check/resolved.config")
}

/// Buildroot's `build/<name>-<version>`, `build/<name>` for a package without a version.
fn package_dir(name: &str, version: &str) -> String {
    if version.is_empty() {
        format!("build/{name}")
    } else {
        format!("build/{name}-{version}")
    }
}

fn show_info() -> serde_json::Value {
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
        "rootfs-ext2".into(),
        serde_json::json!({"type": "rootfs", "name": "rootfs-ext2", "image_name": "rootfs.ext4"}),
    );
    serde_json::Value::Object(info)
}

/// The stand-in Buildroot tree: Makefile, show-info, generate-cyclonedx, and payload/<package>/
/// with what each package's build and installation put in place.
/// Make the stand-in pass as a clean checkout of the pinned commit: its own commit stands in for
/// the pinned one through a git replace ref, and HEAD names the pinned id. The xtask's check of
/// the tree is not what these tests are about (tests/buildroot_tree.rs is).
fn claim_the_pinned_commit(tree: &Path) {
    common::commit_all(tree, "stand-in");
    let git = |args: &[&str]| common::git(tree, args);
    let own = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let pinned = xtask::project::BUILDROOT_COMMIT.to_string();
    git(&["update-ref", &format!("refs/replace/{pinned}"), own.trim()]);
    git(&["update-ref", "--no-deref", "HEAD", &pinned]);
}

fn stand_in_buildroot(inputs: &Inputs, dir: &Path) {
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
    common::write_file(&tree.join("Makefile"), makefile.as_bytes(), 0o644);
    common::write_file(
        &tree.join("show-info.json"),
        serde_json::to_string_pretty(&show_info())
            .unwrap()
            .as_bytes(),
        0o644,
    );
    for script in ["utils/generate-cyclonedx", "support/scripts/genimage.sh"] {
        common::write_file(
            &tree.join(script),
            fs::read(inputs.buildroot.join(script)).unwrap(),
            0o755,
        );
    }
    for (package, name, len) in IMAGE_FILES {
        let bytes: Vec<u8> = (0..*len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ name.len() as u8)
            .collect();
        common::write_file(
            &payload.join(package).join("images").join(name),
            &bytes,
            0o644,
        );
    }

    let kernel_config = fs::read(resolved_kernel_config(&inputs.linux, dir)).unwrap();
    common::write_file(&payload.join("linux/build/.config"), &kernel_config, 0o644);
    let source = dir.join("prog.c");
    fs::write(&source, C_PROGRAM).unwrap();
    for (package, path) in PROGRAMS {
        let binary = payload.join(package).join("target").join(path);
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        common::run_ok(
            Command::new("arm-linux-gnueabihf-gcc")
                .args(HARDENING_FLAGS)
                .arg(&source)
                .arg("-o")
                .arg(&binary),
        );
    }
    shipped_elf_exception_files(&payload, &source, dir);
    let skeleton = payload.join("skeleton-init-systemd/target/etc");
    common::write_file(
        &skeleton.join("group"),
        b"root:x:0:\ndocker:x:101:\ndockremap:x:1000:\n",
        0o644,
    );
    common::write_file(
        &skeleton.join("passwd"),
        b"root:x:0:0:root:/root:/bin/sh\ndockremap:x:1000:1000::/:/bin/false\n",
        0o644,
    );
    let units = payload.join("docker-engine/target/usr/lib/systemd/system");
    common::write_file(
        &units.join("docker.service"),
        DOCKER_SERVICE.as_bytes(),
        0o644,
    );
    common::write_file(
        &units.join("docker.socket"),
        DOCKER_SOCKET.as_bytes(),
        0o644,
    );
    let crypt = fs::read(
        common::checkout_root().join("br2-external/package/berth-data-crypt/berth-data-crypt"),
    )
    .unwrap();
    common::write_file(
        &payload.join("berth-data-crypt/target/usr/libexec/berth-data-crypt"),
        &crypt,
        0o755,
    );
    claim_the_pinned_commit(&tree);
}

/// What a real build holds at each path an `[[elf]]` exception names (the audit refuses an
/// exception that matches no file): tini builds /usr/bin/tini, and Buildroot copies the
/// toolchain's libraries into every target. Hardened ARM stand-ins go there.
fn shipped_elf_exception_files(payload: &Path, source: &Path, dir: &Path) {
    let library = dir.join("libstand-in.so");
    common::run_ok(
        Command::new("arm-linux-gnueabihf-gcc")
            .args(["-O2", "-shared", "-fPIC", "-Wl,-z,relro,-z,now"])
            .arg(source)
            .arg("-o")
            .arg(&library),
    );
    let program = payload.join("tini/target/usr/bin/docker-init");
    let exceptions = xtask::audit::exceptions::Exceptions::load(
        &common::checkout_root().join(xtask::audit::EXCEPTIONS),
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
fn filled_cache(inputs: &Inputs, dir: &Path) {
    let cache = dir.join("cache");
    let dl = cache.join("berth/dl");
    for (name, version, _, site) in PACKAGES.iter().filter(|p| !p.3.is_empty()) {
        common::write_file(
            &dl.join(name).join(format!("{name}-{version}.tar.gz")),
            format!("{name} {version} from {site}\n").as_bytes(),
            0o644,
        );
    }
    common::write_file(
        &dl.join("cyclonedx/spdx-1.6.schema.json"),
        fs::read(&inputs.spdx_schema).unwrap(),
        0o644,
    );
}

struct Build {
    dir: tempfile::TempDir,
    repo: PathBuf,
    output: PathBuf,
}

impl Build {
    /// `cargo xtask image` with the stand-in, the filled download cache and a public key, through
    /// the library: the error, as the command line would print it, when it fails.
    fn run(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let args = ImageArgs {
            buildroot: Some(dir.join("buildroot")),
            output: Some(self.output.clone()),
            ssh_authorized_keys: Some(dir.join("id_ed25519.pub")),
            ..ImageArgs::default()
        };
        image::run(&Repo::at(&self.repo), args, &self.host()).map_err(|err| format!("{err:#}"))
    }

    /// The host the build runs on: its cache in the test's folder, and offline even on a
    /// networked machine (every download goes to a closed local port), so a build that passes
    /// took every source from the filled cache.
    fn host(&self) -> Host {
        let dir = self.dir.path();
        let closed = "http://127.0.0.1:9".to_string();
        let mut vars: BTreeMap<String, String> = ["http_proxy", "https_proxy", "ftp_proxy"]
            .map(|var| (var.to_string(), closed.clone()))
            .into();
        // A developer's own download folder: the build, legal-info and the SBOM must all use the
        // xtask's, which the network preflight checked.
        vars.insert(
            "BR2_DL_DIR".into(),
            dir.join("elsewhere/dl").display().to_string(),
        );
        Host {
            home: None,
            cache: Some(dir.join("cache/berth")),
            buildroot: None,
            vars,
        }
    }

    /// The whole output of the last build's `make`.
    fn log(&self) -> String {
        fs::read_to_string(self.output.join("build.log")).unwrap_or_default()
    }
}

/// A successful `cargo xtask image` on a fresh stand-in. None, after a printed skip, when the
/// xtask finds this host lacks what Buildroot needs.
fn image(test: &str, inputs: &Inputs) -> Option<Build> {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_copy(dir.path());
    stand_in_buildroot(inputs, dir.path());
    filled_cache(inputs, dir.path());
    fs::write(
        dir.path().join("id_ed25519.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0b3hYbEtWc3Jtc0N6b2ZxVnVGbUJ6a0hUa1ZvRHVx test@berth\n",
    )
    .unwrap();
    let output = dir.path().join("output");
    let build = Build { dir, repo, output };
    if let Err(err) = build.run() {
        if let Some(at) = err.find("this machine lacks what Buildroot needs") {
            common::skip(test, &err[at..].replace('\n', " "));
            return None;
        }
        panic!("{err}\n{}", build.log());
    }
    Some(build)
}

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
    let Some(build) = image(test, &inputs) else {
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
    let artifacts = manifest["artifact"].as_array().unwrap();
    for name in [
        "sdcard.img",
        "emmc-boot0.img",
        "sdcard.img.bmap",
        "emmc-boot0.img.bmap",
        "sbom.cdx.json",
        "legal-info.tar.gz",
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
    let Some(build) = image(test, &inputs) else {
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
    let Some(build) = image(test, &inputs) else {
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
    let Some(build) = image(test, &inputs) else {
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
