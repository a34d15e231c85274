################################################################################
#
# berth-data-crypt
#
################################################################################

# Lives in this BR2_EXTERNAL tree: nothing to download, so no .hash file.
BERTH_DATA_CRYPT_LICENSE = MIT or Apache-2.0

ifeq ($(BR2_PACKAGE_BERTH_DATA_CRYPT_KEY_FILE),y)
BERTH_DATA_CRYPT_KEY_POLICY = keyfile
else ifeq ($(BR2_PACKAGE_BERTH_DATA_CRYPT_PASSPHRASE),y)
BERTH_DATA_CRYPT_KEY_POLICY = passphrase
else
BERTH_DATA_CRYPT_KEY_POLICY = board-id
endif

# The declared persistent state: berth-state lays it out on /data from this table at boot.
BERTH_DATA_CRYPT_STATE_TABLE = $(BR2_EXTERNAL_BERTH_PATH)/../configs/hardening/persistent-state.toml

define BERTH_DATA_CRYPT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(BERTH_DATA_CRYPT_PKGDIR)/berth-data-crypt \
		$(TARGET_DIR)/usr/libexec/berth-data-crypt
	$(INSTALL) -D -m 0755 $(BERTH_DATA_CRYPT_PKGDIR)/berth-state \
		$(TARGET_DIR)/usr/libexec/berth-state
	$(INSTALL) -D -m 0644 $(BERTH_DATA_CRYPT_STATE_TABLE) \
		$(TARGET_DIR)/usr/share/berth/persistent-state.toml
	mkdir -p $(TARGET_DIR)/etc/berth $(TARGET_DIR)/data $(TARGET_DIR)/var/lib/docker
	{ \
		echo 'DATA_DEVICE=$(call qstrip,$(BR2_PACKAGE_BERTH_DATA_CRYPT_DEVICE))'; \
		echo 'KEY_POLICY=$(BERTH_DATA_CRYPT_KEY_POLICY)'; \
		echo 'KEY_DEVICE=$(call qstrip,$(BR2_PACKAGE_BERTH_DATA_CRYPT_KEY_DEVICE))'; \
		echo 'KEY_FILE_NAME=$(call qstrip,$(BR2_PACKAGE_BERTH_DATA_CRYPT_KEY_FILE_NAME))'; \
		echo 'BOARD_ID_FILE=$(call qstrip,$(BR2_PACKAGE_BERTH_DATA_CRYPT_BOARD_ID_FILE))'; \
	} > $(TARGET_DIR)/etc/berth/data-crypt.conf
endef

define BERTH_DATA_CRYPT_PERMISSIONS
	/usr/libexec/berth-data-crypt f 0755 0 0 - - - - -
	/usr/libexec/berth-state f 0755 0 0 - - - - -
	/usr/share/berth/persistent-state.toml f 0644 0 0 - - - - -
	/data d 0755 0 0 - - - - -
	/etc/berth d 0755 0 0 - - - - -
	/etc/berth/data-crypt.conf f 0644 0 0 - - - - -
	/var/lib/docker d 0710 0 0 - - - - -
endef

# The userns-remap user of daemon.json (its ranges are in /etc/subuid and /etc/subgid): it owns
# what containers write to /var/lib/docker, and dockerd cannot create it on a Buildroot target.
define BERTH_DATA_CRYPT_USERS
	dockremap -1 dockremap -1 * - /bin/false - Docker user namespace remapping
endef

$(eval $(generic-package))
