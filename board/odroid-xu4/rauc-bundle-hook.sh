#!/bin/sh
# RAUC slot hook shipped in every bundle (cargo xtask image; docs/updates.md). RAUC marks the
# target slot bad, runs slot-pre-install, writes system.img, runs slot-post-install, and only
# when all of that succeeded puts the slot first in BOOT_ORDER. So the slot is activated only
# after this hook has read the written slot back through dm-verity's check against the bundle's
# system.env, and has moved that file into place as the slot's boot environment.
set -eu

# The boot partition (boot-firmware.automount); tests point it at a folder of their own.
boot="${BERTH_BOOT_FIRMWARE:-/boot/firmware}"

fail() {
	echo "berth bundle hook: $*" >&2
	exit 1
}

case "${RAUC_SLOT_BOOTNAME:-}" in
A | B) ;;
*) fail "RAUC_SLOT_BOOTNAME is '${RAUC_SLOT_BOOTNAME:-}', not A or B" ;;
esac
slot_env="${boot}/slot-${RAUC_SLOT_BOOTNAME}.env"

# The value of name $1 in the system.env $2: it must be there once and match the pattern $3.
value() {
	[ "$(grep -c "^$1=" "$2")" -eq 1 ] || fail "$2 must set $1 exactly once"
	found="$(sed -n "s/^$1=//p" "$2")"
	printf '%s\n' "${found}" | grep -Eqx "$3" || fail "$2 gives $1 as '${found}', not a value matching $3"
	printf '%s\n' "${found}"
}

case "${1:-}" in
slot-pre-install)
	# The slot is about to be overwritten: its old boot environment must not outlive it.
	rm -f "${slot_env}"
	sync
	;;
slot-post-install)
	env_file="${RAUC_BUNDLE_MOUNT_POINT:?}/system.env"
	[ -f "${env_file}" ] || fail "the bundle has no system.env"
	blocks="$(value berth_verity_data_blocks "${env_file}" '[1-9][0-9]*')"
	sectors="$(value berth_verity_sectors "${env_file}" '[1-9][0-9]*')"
	hash_start="$(value berth_verity_hash_start "${env_file}" '[1-9][0-9]*')"
	root_hash="$(value berth_verity_root_hash "${env_file}" '[0-9a-f]{64}')"
	salt="$(value berth_verity_salt "${env_file}" '[0-9a-f]{64}')"
	[ "${sectors}" -eq $((blocks * 8)) ] ||
		fail "berth_verity_sectors ${sectors} is not 8 x berth_verity_data_blocks ${blocks}"
	device="${RAUC_SLOT_DEVICE:?}"
	# Read what reached the card, not what the page cache still holds from the write.
	sync
	if [ -b "${device}" ]; then
		echo 1 >/proc/sys/vm/drop_caches
	fi
	veritysetup verify "${device}" "${device}" "${root_hash}" --no-superblock \
		--hash=sha256 --data-block-size=4096 --hash-block-size=4096 \
		--data-blocks="${blocks}" --hash-offset=$((hash_start * 4096)) --salt="${salt}" ||
		fail "slot ${RAUC_SLOT_BOOTNAME} (${device}) does not match the root hash in the bundle's system.env; it stays inactive"
	cp "${env_file}" "${slot_env}.partial"
	sync
	mv "${slot_env}.partial" "${slot_env}"
	sync
	;;
*)
	fail "called for '${1:-}'; the bundle's manifest names only slot-pre-install and slot-post-install"
	;;
esac
