#!/bin/sh
# Buildroot post-build script: remove the DT_RUNPATH/DT_RPATH entries that
# Buildroot's fix-rpath leaves empty. fix-rpath drops build-tree and standard
# folders from a libtool RUNPATH but keeps the tag, with an empty string
# (util-linux, libseccomp, iptables). glibc ignores it, yet it is noise that
# hides a real search path; `cargo xtask audit` fails any that is left.
set -eu

target_dir="$1"
patchelf="${HOST_DIR:?run by Buildroot, which sets HOST_DIR}/bin/patchelf"

find "${target_dir}" -type f -print | while IFS= read -r file; do
	[ "$(head -c 4 "${file}")" = "$(printf '\177ELF')" ] || continue
	# --print-rpath fails on files without a dynamic section (static, objects).
	rpath="$("${patchelf}" --print-rpath "${file}" 2>/dev/null)" || continue
	[ -z "${rpath}" ] || continue
	# Empty output also means "no search path at all": only rewrite files with the tag.
	"${patchelf}" --remove-rpath "${file}"
done
