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
