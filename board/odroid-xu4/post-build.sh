#!/bin/sh
# Buildroot post-build script: the mount points the read-only root needs, and
# root's SSH keys from the file named by BERTH_SSH_AUTHORIZED_KEYS.
set -eu

target_dir="$1"

fail() {
	echo "post-build.sh: $*" >&2
	exit 1
}

# The root is a read-only EROFS, so every mount point must be in the image:
# the boot partition (boot script, slot parameters, boot counters) and the
# data volume, the one home of persistent state.
install -d -m 0755 "${target_dir}/boot/firmware" "${target_dir}/data"

keys="${BERTH_SSH_AUTHORIZED_KEYS:-}"
[ -n "${keys}" ] ||
	fail "BERTH_SSH_AUTHORIZED_KEYS is not set: name a file of SSH public" \
		"keys for root (cargo xtask image passes it); the image has no password login"
[ -s "${keys}" ] || fail "BERTH_SSH_AUTHORIZED_KEYS names ${keys}, which is missing or empty"
if grep -q "PRIVATE KEY" "${keys}"; then
	fail "${keys} holds a private key; give the public keys (*.pub) instead"
fi
install -d -m 0700 "${target_dir}/root/.ssh"
install -m 0600 "${keys}" "${target_dir}/root/.ssh/authorized_keys"

# Declared apps (cargo xtask image --apps): image archives, their list, units and AppArmor
# profiles, staged by the xtask in BERTH_APPS_ROOTFS. Those of an earlier build go first, so none
# outlives apps.toml.
rm -rf "${target_dir}/usr/share/berth/apps"
rm -f "${target_dir}"/etc/systemd/system/berth-app-*.service \
	"${target_dir}"/etc/systemd/system/multi-user.target.wants/berth-app-*.service \
	"${target_dir}"/etc/apparmor.d/berth-app-*
if [ -n "${BERTH_APPS_ROOTFS:-}" ]; then
	cp -R -P "${BERTH_APPS_ROOTFS}/." "${target_dir}/"
fi
# apparmor.service (apparmor.systemd) fails on an empty /etc/apparmor.d ("No profiles found") and
# loads nothing, successfully, without one: an earlier build's apps must not leave it empty.
rmdir "${target_dir}/etc/apparmor.d" 2>/dev/null || true

# RAUC accepts only bundles signed by the certificate cargo xtask image names in
# BERTH_RAUC_KEYRING (its development certificate, or --signing-cert).
keyring="${BERTH_RAUC_KEYRING:-}"
[ -n "${keyring}" ] ||
	fail "BERTH_RAUC_KEYRING is not set: name the certificate update bundles are signed with" \
		"(cargo xtask image passes it)"
grep -q "BEGIN CERTIFICATE" "${keyring}" 2>/dev/null ||
	fail "BERTH_RAUC_KEYRING names ${keyring}, which is not a PEM certificate"
if grep -q "PRIVATE KEY" "${keyring}"; then
	fail "${keyring} holds a private key; only the certificate goes into the image"
fi
install -D -m 0644 "${keyring}" "${target_dir}/etc/rauc/keyring.pem"

# The hawkBit client's settings and the preset that enables it, staged by the xtask in
# BERTH_HAWKBIT_ROOTFS only when berth.toml has a [hawkbit] table; an earlier build's go first.
rm -rf "${target_dir}/etc/rauc-hawkbit-updater" \
	"${target_dir}/etc/systemd/system/rauc-hawkbit-updater.service.d" \
	"${target_dir}/usr/lib/systemd/system-preset/20-berth-hawkbit.preset"
if [ -n "${BERTH_HAWKBIT_ROOTFS:-}" ]; then
	cp -R -P --preserve=mode "${BERTH_HAWKBIT_ROOTFS}/." "${target_dir}/"
fi
