#!/bin/bash
# Find or fetch Ceph's S3 gateway (radosgw) for the S3 backend's tests; print the path of the binary on the last
# line (exit 0), or a message why not (exit 1). Debian's `apt-get install radosgw` can abort on a dpkg
# statoverride for a missing user, so when radosgw is not installed the package is unpacked into a folder
# instead (RGW_DIR, default /var/tmp/lifeboat-radosgw); run it with LD_LIBRARY_PATH=RGW_DIR/usr/lib/x86_64-linux-gnu
# (its libradosgw.so.2 comes with it; librgw2 and librados2 are Ceph's own packages).
set -u
if command -v radosgw >/dev/null 2>&1; then command -v radosgw; exit 0; fi
D=${RGW_DIR:-/var/tmp/lifeboat-radosgw}
if [ -x "$D/usr/bin/radosgw" ]; then echo "$D/usr/bin/radosgw"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "install-radosgw: no radosgw and no apt-get"; exit 1; }
mkdir -p "$D/deb" || exit 1
( cd "$D/deb" && apt-get download -q radosgw >/dev/null 2>&1 ) || { echo "install-radosgw: apt-get download radosgw failed"; exit 1; }
dpkg-deb -x "$D"/deb/radosgw_*.deb "$D" || { echo "install-radosgw: dpkg-deb -x failed"; exit 1; }
[ -x "$D/usr/bin/radosgw" ] || { echo "install-radosgw: no radosgw in the package"; exit 1; }
echo "$D/usr/bin/radosgw"
