#!/usr/bin/env bash
# Buildroot post-image script: the system slot image and its verity
# parameters, then sdcard.img and emmc-boot0.img with genimage
# (board/odroid-xu4/genimage.cfg). genimage refuses a bootloader bigger than
# its slot and pads sdcard.img to its full size (fill = true).
#
# system.img is rootfs.erofs followed by its dm-verity hash tree (the hash
# tree starts at block data_blocks). system.env carries what the boot script
# hands the kernel for it, one name=value a line for U-Boot's `env import -t`.
set -euo pipefail

board_dir="$(dirname "$0")"
erofs="${BINARIES_DIR}/rootfs.erofs"
system="${BINARIES_DIR}/system.img"
env_file="${BINARIES_DIR}/system.env"
cmdline_file="${board_dir}/cmdline.txt"
block=4096

fail() {
	echo "post-image.sh: $*" >&2
	exit 1
}

[ -f "${erofs}" ] || fail "${erofs} is missing (BR2_TARGET_ROOTFS_EROFS)"
erofs_bytes=$(stat -c %s "${erofs}")
((erofs_bytes % block == 0)) ||
	fail "${erofs} is ${erofs_bytes} bytes, not a whole number of ${block}-byte verity blocks"
data_blocks=$((erofs_bytes / block))
[ "$(grep -c '' "${cmdline_file}")" -eq 1 ] ||
	fail "${cmdline_file} must hold exactly one line"

# The salt is derived from the root, so the same root gives the same image.
salt=$(sha256sum "${erofs}" | cut -d ' ' -f 1)
cp "${erofs}" "${system}.partial"
"${HOST_DIR}/sbin/veritysetup" format --no-superblock \
	--data-block-size="${block}" --hash-block-size="${block}" --hash=sha256 \
	--salt="${salt}" --data-blocks="${data_blocks}" --hash-offset="${erofs_bytes}" \
	--root-hash-file="${system}.root-hash" \
	"${system}.partial" "${system}.partial" >/dev/null
mv "${system}.partial" "${system}"

cat >"${env_file}" <<ENV
berth_cmdline=$(cat "${cmdline_file}")
berth_verity_sectors=$((data_blocks * block / 512))
berth_verity_data_blocks=${data_blocks}
berth_verity_hash_start=${data_blocks}
berth_verity_root_hash=$(cat "${system}.root-hash")
berth_verity_salt=${salt}
ENV
rm -f "${system}.root-hash"
# The factory card boots slot A; an update writes slot-B.env beside it.
cp "${env_file}" "${BINARIES_DIR}/slot-A.env"

# The two copies of the boot state that fw_env.config names, made valid and empty (the boot
# script's defaults apply), so that the card carries both files and no write ever allocates.
while read -r path offset size; do
	[ "${offset}" = 0x0 ] || fail "fw_env.config gives ${path} the offset ${offset}, not 0x0"
	"${HOST_DIR}/bin/mkenvimage" -r -p 0 -s "${size}" -o "${BINARIES_DIR}/$(basename "${path}")" /dev/null
done < <(grep -Ev '^(#|$)' "${TARGET_DIR}/etc/fw_env.config")

# Must match MARKER in br2-external/package/berth-data-crypt/berth-data-crypt.
printf 'BERTH_DATA_BLANK' >"${BINARIES_DIR}/data-blank.img"

support/scripts/genimage.sh -c "${board_dir}/genimage.cfg"
