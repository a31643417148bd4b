#!/bin/bash
# Install the Ceph packages the RBD tests need (Debian/Ubuntu, run as root): a monitor, an OSD, a manager,
# the rbd/ceph CLIs and the python3-rbd/rados bindings. Exits 0 with a message when apt cannot install them
# (no root, no apt, no network), so callers decide to skip instead of failing. Waits up to 5 min for the
# dpkg lock when another apt-get runs.
set -u
PKGS="ceph-mon ceph-osd ceph-mgr ceph-common python3-rbd python3-rados"

have_bindings() { compgen -G "/usr/lib/python3/dist-packages/rbd.cpython-*.so" >/dev/null; }
if command -v ceph-mon >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 \
    && command -v rbd >/dev/null 2>&1 && have_bindings; then
  echo "install-ceph: Ceph is already installed ($(ceph --version 2>/dev/null | cut -d' ' -f1-3))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-ceph: apt-get not found; install $PKGS yourself to run the Ceph tests"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-ceph: not root and no passwordless sudo; install $PKGS yourself to run the Ceph tests"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# Try without a refresh first (fast when the lists are current), then refresh the lists and retry.
# shellcheck disable=SC2086
if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $PKGS >/tmp/install-ceph.log 2>&1; then
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >>/tmp/install-ceph.log 2>&1
  # shellcheck disable=SC2086
  if ! $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $PKGS >>/tmp/install-ceph.log 2>&1; then
    echo "install-ceph: apt-get could not install $PKGS (see /tmp/install-ceph.log); Ceph tests will skip"
    exit 0
  fi
fi
echo "install-ceph: installed $(ceph --version 2>/dev/null | cut -d' ' -f1-3)"
