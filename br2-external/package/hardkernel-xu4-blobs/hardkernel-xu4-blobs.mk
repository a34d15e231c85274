################################################################################
#
# hardkernel-xu4-blobs
#
################################################################################

HARDKERNEL_XU4_BLOBS_VERSION = 88af53fbcef8386cb4d5f04c19f4b2bcb69e90ca
# Fetched with git, not as a GitHub-generated tarball: Buildroot makes the
# archive itself, reproducibly, so the hash below holds for every download.
HARDKERNEL_XU4_BLOBS_SITE = https://github.com/hardkernel/u-boot.git
HARDKERNEL_XU4_BLOBS_SITE_METHOD = git
HARDKERNEL_XU4_BLOBS_LICENSE = PROPRIETARY
HARDKERNEL_XU4_BLOBS_REDISTRIBUTE = NO
HARDKERNEL_XU4_BLOBS_INSTALL_TARGET = NO
HARDKERNEL_XU4_BLOBS_INSTALL_IMAGES = YES

HARDKERNEL_XU4_BLOBS_FILES = \
	bl1.bin.hardkernel \
	bl2.bin.hardkernel.720k_uboot \
	tzsw.bin.hardkernel

define HARDKERNEL_XU4_BLOBS_VERIFY
	$(foreach f,$(HARDKERNEL_XU4_BLOBS_FILES),
		support/download/check-hash $(@D)/sd_fuse/$(f) $(f) \
			$(HARDKERNEL_XU4_BLOBS_PKGDIR)/hardkernel-xu4-blobs.hash
	)
endef
HARDKERNEL_XU4_BLOBS_POST_EXTRACT_HOOKS += HARDKERNEL_XU4_BLOBS_VERIFY

# BL2 is written 256 bytes before the end of the 15,616-byte BL1 (Hardkernel's
# sd_fusing.sh overwrites them too): keep BL1 to its 15,360-byte slot.
define HARDKERNEL_XU4_BLOBS_INSTALL_IMAGES_CMDS
	$(foreach f,$(HARDKERNEL_XU4_BLOBS_FILES),
		$(INSTALL) -D -m 0644 $(@D)/sd_fuse/$(f) $(BINARIES_DIR)/$(f)
	)
	truncate -s 15360 $(BINARIES_DIR)/bl1.bin.hardkernel
endef

$(eval $(generic-package))
