#!/usr/bin/env bash
# Install the Debian tools the tests and demo use to build real disk images (sfdisk, mkfs.ext4).
# Idempotent and quiet when everything is there; needs root (or passwordless apt) only when not.
set -euo pipefail

missing=()
command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || missing+=(fdisk)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: please install ${missing[*]} (Debian package names); tests that need them skip" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
