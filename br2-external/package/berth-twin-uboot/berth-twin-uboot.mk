################################################################################
#
# berth-twin-uboot
#
################################################################################

# The board's U-Boot source, downloaded once and checked against boot/uboot's hash file, which
# carries 2026.01's hash (patches/buildroot/0008).
BERTH_TWIN_UBOOT_VERSION = $(UBOOT_VERSION)
BERTH_TWIN_UBOOT_SOURCE = $(UBOOT_SOURCE)
BERTH_TWIN_UBOOT_SITE = $(UBOOT_SITE)
BERTH_TWIN_UBOOT_DL_SUBDIR = uboot
BERTH_TWIN_UBOOT_LICENSE = $(UBOOT_LICENSE)
BERTH_TWIN_UBOOT_LICENSE_FILES = $(UBOOT_LICENSE_FILES)
BERTH_TWIN_UBOOT_CPE_ID_VENDOR = denx
BERTH_TWIN_UBOOT_CPE_ID_PRODUCT = u-boot
BERTH_TWIN_UBOOT_INSTALL_TARGET = NO
BERTH_TWIN_UBOOT_INSTALL_IMAGES = YES
BERTH_TWIN_UBOOT_DEPENDENCIES = $(UBOOT_DEPENDENCIES)

BERTH_TWIN_UBOOT_KCONFIG_DEFCONFIG = qemu_arm_defconfig
# The board's fragments by their absolute names: kconfig-package makes each fragment a make
# target, and the same name in two packages would override uboot's recipe with this one's.
BERTH_TWIN_UBOOT_KCONFIG_FRAGMENT_FILES = \
	$(abspath $(call qstrip,$(BR2_TARGET_UBOOT_CONFIG_FRAGMENT_FILES))) \
	$(BR2_EXTERNAL_BERTH_PATH)/../board/qemu-twin/uboot.fragment
BERTH_TWIN_UBOOT_KCONFIG_OPTS = $(UBOOT_KCONFIG_OPTS)
BERTH_TWIN_UBOOT_KCONFIG_DEPENDENCIES = $(UBOOT_KCONFIG_DEPENDENCIES)

define BERTH_TWIN_UBOOT_BUILD_CMDS
	$(TARGET_CONFIGURE_OPTS) \
		PKG_CONFIG="$(PKG_CONFIG_HOST_BINARY)" \
		PKG_CONFIG_SYSROOT_DIR="/" \
		PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 \
		PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 \
		PKG_CONFIG_LIBDIR="$(HOST_DIR)/lib/pkgconfig:$(HOST_DIR)/share/pkgconfig" \
		$(UBOOT_MAKE) -C $(@D) $(UBOOT_MAKE_OPTS) u-boot.bin
endef

# The name is release.rs's TWIN_UBOOT, which `cargo xtask qemu` looks for.
define BERTH_TWIN_UBOOT_INSTALL_IMAGES_CMDS
	$(INSTALL) -D -m 0644 $(@D)/u-boot.bin $(BINARIES_DIR)/u-boot-qemu-twin.bin
endef

$(eval $(kconfig-package))

# After the eval, which set this package's own (absent) hash file.
BERTH_TWIN_UBOOT_HASH_FILES = $(UBOOT_HASH_FILES)
