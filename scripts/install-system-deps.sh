#!/usr/bin/env bash
# Install the Debian tools the tests and demo use to build real disk images (sfdisk, mkfs.*).
# Idempotent and quiet when everything is there; needs root (or passwordless apt) only when not.
set -euo pipefail

missing=()
command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || missing+=(fdisk)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
# Other filesystems for file-level access tests (tests skip without them).
command -v mkfs.vfat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.vfat ] || missing+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || missing+=(mtools)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || missing+=(xfsprogs)
command -v mkfs.btrfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.btrfs ] || missing+=(btrfs-progs)
command -v mkfs.ntfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ntfs ] || missing+=(ntfs-3g)
# Serving a backup point as a disk: qemu-img/qemu-io (with the curl driver) as clients, nbdkit for NBD.
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
compgen -G "/usr/lib/*/qemu/block-curl.so" >/dev/null || missing+=(qemu-block-extra)
command -v nbdkit >/dev/null 2>&1 || missing+=(nbdkit)
compgen -G "/usr/lib/*/nbdkit/plugins/nbdkit-python-plugin.so" >/dev/null || missing+=(nbdkit-plugin-python)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: please install ${missing[*]} (Debian package names); tests that need them skip" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
