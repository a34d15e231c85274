#!/usr/bin/env bash
# Buildroot post-image script: lay out sdcard.img and emmc-boot0.img with
# genimage (board/odroid-xu4/genimage.cfg). genimage refuses a bootloader
# bigger than its slot and pads sdcard.img to its full size (fill = true).
set -euo pipefail

board_dir="$(dirname "$0")"

# Must match MARKER in br2-external/package/berth-data-crypt/berth-data-crypt.
printf 'BERTH_DATA_BLANK' > "${BINARIES_DIR}/data-blank.img"

support/scripts/genimage.sh -c "${board_dir}/genimage.cfg"
