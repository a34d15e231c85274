# Berth's A/B boot script, compiled to boot.scr (mkimage -T script) on the
# vfat p1. U-Boot's distro boot (and bootstd's script bootmeth alike) runs it
# with devtype and devnum naming the device it came from; p1, p2 (slot A)
# and p3 (slot B) are read from that same device. docs/hardware.md tells the
# whole flow and how U-Boot's sandbox proves it (xtask/tests/uboot_sandbox.rs).
#
# Boot state: RAUC's U-Boot bootchooser variables, in two copies on p1,
# uboot.env and uboot-redund.env (/etc/fw_env.config names both). Each is
# 0x4000 bytes of CRC, a flag byte and data: U-Boot's redundant layout
# (CONFIG_ENV_REDUNDANT, configs/uboot.fragment), the one fw_setenv writes.
# Both files come with the card, so every write, here or by fw_setenv,
# overwrites the older copy in place with the flag one higher and never
# changes the FAT: a power cut during a write leaves the other copy whole.
# Of the copies whose CRC holds the newer is read, as fw_env decides (the
# first wins a tie, 0 is newer than ff), and only these three names are
# imported, so a copy carrying bootcmd or bootargs changes nothing. No valid
# copy, or a bad value, gives the defaults.
setexpr berth_flag_addr ${ramdisk_addr_r} + 4
setenv berth_state_from
setenv berth_state_flag
for berth_f in uboot.env uboot-redund.env; do
	setenv BOOT_ORDER
	setenv BOOT_A_LEFT
	setenv BOOT_B_LEFT
	if load ${devtype} ${devnum}:1 ${ramdisk_addr_r} ${berth_f} 0x4000 && env import -c ${ramdisk_addr_r} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
		setexpr.b berth_f_flag *${berth_flag_addr}
		setenv berth_newer
		if test -z "${berth_state_from}"; then
			setenv berth_newer 1
		elif test ${berth_state_flag} = ff && test ${berth_f_flag} = 0; then
			setenv berth_newer 1
		elif test ${berth_state_flag} != 0 || test ${berth_f_flag} != ff; then
			if test 0x${berth_f_flag} -gt 0x${berth_state_flag}; then
				setenv berth_newer 1
			fi
		fi
		if test -n "${berth_newer}"; then
			setenv berth_state_from ${berth_f}
			setenv berth_state_flag ${berth_f_flag}
			setenv berth_state_order "${BOOT_ORDER}"
			setenv berth_state_a_left "${BOOT_A_LEFT}"
			setenv berth_state_b_left "${BOOT_B_LEFT}"
		fi
	else
		echo "berth: ${berth_f} is unreadable or corrupt"
	fi
done
if test -n "${berth_state_from}"; then
	echo "berth: boot state read from ${berth_state_from}"
	setenv BOOT_ORDER "${berth_state_order}"
	setenv BOOT_A_LEFT "${berth_state_a_left}"
	setenv BOOT_B_LEFT "${berth_state_b_left}"
else
	echo "berth: no copy of the boot state is valid, using the defaults"
	setenv BOOT_ORDER
	setenv BOOT_A_LEFT
	setenv BOOT_B_LEFT
	setenv berth_state_from uboot-redund.env
	setenv berth_state_flag 0
fi
# The next write goes to the other copy, one flag higher.
if test ${berth_state_from} = uboot.env; then
	setenv berth_state_to uboot-redund.env
else
	setenv berth_state_to uboot.env
fi
setexpr berth_state_flag ${berth_state_flag} + 1
setexpr berth_state_flag ${berth_state_flag} % 100
setenv berth_save_state 'env export -c -s 0x4000 ${ramdisk_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT && mw.b ${berth_flag_addr} ${berth_state_flag} && save ${devtype} ${devnum}:1 ${ramdisk_addr_r} ${berth_state_to} 0x4000'

# BOOT_ORDER keeps only A and B, each once; nothing left means "A B".
setenv berth_order
setenv berth_seen_A
setenv berth_seen_B
for berth_s in ${BOOT_ORDER}; do
	setenv berth_new
	if test "${berth_s}" = A && test -z "${berth_seen_A}"; then
		setenv berth_new 1
	fi
	if test "${berth_s}" = B && test -z "${berth_seen_B}"; then
		setenv berth_new 1
	fi
	if test -n "${berth_new}"; then
		setenv berth_seen_${berth_s} 1
		if test -z "${berth_order}"; then
			setenv berth_order ${berth_s}
		else
			setenv berth_order "${berth_order} ${berth_s}"
		fi
	fi
done
if test -z "${berth_order}"; then
	setenv BOOT_ORDER "A B"
else
	setenv BOOT_ORDER "${berth_order}"
fi
# Tries left are 0 to 3 (RAUC resets them to 3 on mark-good); anything else
# is treated as missing.
if test "${BOOT_A_LEFT}" != 0 && test "${BOOT_A_LEFT}" != 1 && test "${BOOT_A_LEFT}" != 2 && test "${BOOT_A_LEFT}" != 3; then
	setenv BOOT_A_LEFT 3
fi
if test "${BOOT_B_LEFT}" != 0 && test "${BOOT_B_LEFT}" != 1 && test "${BOOT_B_LEFT}" != 2 && test "${BOOT_B_LEFT}" != 3; then
	setenv BOOT_B_LEFT 3
fi

# The first slot in BOOT_ORDER with tries left and a slot-<X>.env (written by
# the factory image for A, by an update for B) boots.
setenv berth_slot
setenv berth_any_env
for berth_s in ${BOOT_ORDER}; do
	if test -e ${devtype} ${devnum}:1 slot-${berth_s}.env; then
		setenv berth_any_env 1
		setenv berth_left 0
		if test "${berth_s}" = A; then
			setenv berth_left ${BOOT_A_LEFT}
		fi
		if test "${berth_s}" = B; then
			setenv berth_left ${BOOT_B_LEFT}
		fi
		if test -z "${berth_slot}" && test ${berth_left} -gt 0; then
			setenv berth_slot ${berth_s}
		fi
	else
		echo "berth: slot ${berth_s} has no slot-${berth_s}.env, skipped"
	fi
done

# No slot-<X>.env at all: nothing here can boot, so distro boot goes on to
# the next device. Every slot out of tries: both failed three times, maybe
# for a passing reason (power, a network mark-good waits for); a halted board
# needs someone at its serial console, so the counters go back to 3 and the
# board resets, and the counting starts over.
if test -z "${berth_any_env}"; then
	echo "berth: no slot-A.env or slot-B.env on ${devtype} ${devnum}:1, nothing to boot here"
elif test -z "${berth_slot}"; then
	echo "berth: no slot has tries left; every counter goes back to 3 and the board resets"
	setenv BOOT_A_LEFT 3
	setenv BOOT_B_LEFT 3
	run berth_save_state
	reset
else
	# The try is counted, and saved, before the kernel is even loaded: a
	# slot that cannot be read, or whose root does not mount (panic=10),
	# has spent it.
	if test ${berth_slot} = A; then
		setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
		setenv berth_part 2
	else
		setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
		setenv berth_part 3
	fi
	echo "berth: booting slot ${berth_slot} (BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT})"
	run berth_save_state || echo "berth: could not write ${berth_state_to}; this try is not counted"

	# The board's U-Boot names its device tree in fdtfile, read from the slot. QEMU's `virt`
	# (the twin, docs/testing.md) builds its own and hands it over at fdt_addr; there the console
	# is the PL011, added after the command line's, so that the last console= names it.
	setenv berth_console
	if test -n "${fdtfile}"; then
		setenv berth_fdt ${fdt_addr_r}
		setenv berth_load_fdt 'load ${devtype} ${devnum}:${berth_part} ${fdt_addr_r} /boot/${fdtfile}'
	else
		setenv berth_fdt ${fdt_addr}
		setenv berth_load_fdt 'test -n "${fdt_addr}" && fdt addr ${fdt_addr}'
		setenv berth_console " console=ttyAMA0,115200"
	fi

	# The slot's verity parameters: only the six berth_* names are taken.
	setenv berth_cmdline
	setenv berth_verity_sectors
	setenv berth_verity_data_blocks
	setenv berth_verity_hash_start
	setenv berth_verity_root_hash
	setenv berth_verity_salt
	load ${devtype} ${devnum}:1 ${ramdisk_addr_r} slot-${berth_slot}.env 0x4000
	env import -t ${ramdisk_addr_r} ${filesize} berth_cmdline berth_verity_sectors berth_verity_data_blocks berth_verity_hash_start berth_verity_root_hash berth_verity_salt
	part uuid ${devtype} ${devnum}:${berth_part} berth_uuid
	if test -z "${berth_cmdline}" || test -z "${berth_verity_sectors}" || test -z "${berth_verity_data_blocks}" || test -z "${berth_verity_hash_start}" || test -z "${berth_verity_root_hash}" || test -z "${berth_verity_salt}" || test -z "${berth_uuid}"; then
		echo "berth: slot-${berth_slot}.env lacks a berth_* value, or p${berth_part} has no PARTUUID"
	elif load ${devtype} ${devnum}:${berth_part} ${kernel_addr_r} /boot/zImage && run berth_load_fdt; then
		setenv bootargs "${berth_cmdline}${berth_console} root=/dev/dm-0 rootfstype=erofs rauc.slot=${berth_slot} dm-mod.waitfor=PARTUUID=${berth_uuid} dm-mod.create=\"berth-root,,,ro,0 ${berth_verity_sectors} verity 1 PARTUUID=${berth_uuid} PARTUUID=${berth_uuid} 4096 4096 ${berth_verity_data_blocks} ${berth_verity_hash_start} sha256 ${berth_verity_root_hash} ${berth_verity_salt} 1 restart_on_corruption\""
		bootz ${kernel_addr_r} - ${berth_fdt}
	fi
	# Only a slot that could not be started gets here; its try is spent.
	echo "berth: slot ${berth_slot} did not start; resetting"
	reset
fi
