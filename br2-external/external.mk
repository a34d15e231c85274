include $(sort $(wildcard $(BR2_EXTERNAL_BERTH_PATH)/package/*/*.mk))

# Buildroot's golang infrastructure links Go programs with -no-pie, and the
# ones linked by Go's internal linker (docker, docker-proxy, containerd and
# its shim, ctr) get no RELRO at all. -buildmode=pie makes Go emit PIC code
# and, on linux/arm, link externally through the toolchain wrapper, which
# adds full RELRO and no text relocations.
#
# This must be <PKG>_BUILD_OPTS: <PKG>_EXTLDFLAGS is read by pkg-golang.mk
# before this file is included, so setting it here is silently ignored; and
# '-pie' in the external linker flags alone links non-PIC Go code into a
# binary carrying DT_TEXTREL.
ifeq ($(BR2_PIC_PIE),y)
RUNC_BUILD_OPTS += -buildmode=pie
CONTAINERD_BUILD_OPTS += -buildmode=pie
DOCKER_ENGINE_BUILD_OPTS += -buildmode=pie
DOCKER_CLI_BUILD_OPTS += -buildmode=pie
endif

# tini is docker-init, which Docker bind-mounts into containers that may have
# no libc, so package/tini/tini.mk links it -static; the toolchain wrapper then
# adds neither -fPIE nor -pie, and tini is the image's one non-PIE program with
# partial RELRO. -static-pie keeps it self-contained and makes it PIE with full
# RELRO (the wrapper's -fPIE, -pie and -z now apply; the -static-pie after them
# wins). It needs glibc's rcrt1.o, which only a glibc built with static-pie
# support ships: without it tini stays -static and the audit reports it (see
# docs/security.md). Decided when tini is built, once the sysroot is in staging.
ifeq ($(BR2_PIC_PIE)$(BR2_PACKAGE_TINI),yy)
TINI_CFLAGS := $(filter-out -static,$(TINI_CFLAGS)) \
	$$(if [ -e $(STAGING_DIR)/usr/lib/rcrt1.o ]; then echo -static-pie; else echo -static; fi)
endif

# Programs of the Docker stack that nothing on the board runs are not built
# (docs/rootfs.md, "What the slot leaves out"): ctr is containerd's debug
# client (docker talks to containerd over its socket), and docker-proxy is only
# started by a daemon with the userland proxy on, which daemon.json turns off
# and CIS Docker 2.16 in configs/hardening/cis-docker.toml requires off.
# The recipes and install lists read these names when they run, after this file.
CONTAINERD_BUILD_TARGETS := $(filter-out cmd/ctr,$(CONTAINERD_BUILD_TARGETS))
DOCKER_ENGINE_BUILD_TARGETS := $(filter-out cmd/docker-proxy,$(DOCKER_ENGINE_BUILD_TARGETS))
