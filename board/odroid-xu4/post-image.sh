#!/usr/bin/env bash
# Buildroot post-image script: check the bootloader fits its slot, then lay
# out sdcard.img and emmc-boot0.img with genimage (board/odroid-xu4/genimage.cfg).
set -euo pipefail

board_dir="$(dirname "$0")"
genimage_cfg="${board_dir}/genimage.cfg"

# The 720k BL2 loads at most 720 KiB of U-Boot from sector 63, and TZSW
# follows at sector 1503: a bigger U-Boot would be cut short at boot.
uboot="${BINARIES_DIR}/u-boot-dtb.bin"
uboot_slot=$(( (1503 - 63) * 512 ))
uboot_size="$(stat -c %s "${uboot}")"
if [ "${uboot_size}" -gt "${uboot_slot}" ]; then
	echo "post-image.sh: ${uboot} is ${uboot_size} bytes, more than the" \
		"${uboot_slot}-byte slot the 720k BL2 loads before TZSW" >&2
	exit 1
fi

support/scripts/genimage.sh -c "${genimage_cfg}"

# genimage stops the file at the last byte it wrote; the data partition is
# a hole at the end, so give the file the full size its partition table has.
image_size="$(awk '/^image sdcard.img/ { found = 1 }
	found && $1 == "size" { print $3; exit }' "${genimage_cfg}")"
truncate -s "${image_size}" "${BINARIES_DIR}/sdcard.img"
