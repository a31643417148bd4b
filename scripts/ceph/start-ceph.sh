#!/bin/bash
# Start a throw-away single-node Ceph cluster (Pacific 16.2) on loopback: no disks, no systemd, no root needed
# beyond the installed packages. For tests and demos only: one monitor, optionally a manager, NOSD OSDs, and an
# initialised pool "rbd". Nothing is written outside DIR. Stop it with stop-ceph.sh DIR.
#
# Usage: start-ceph.sh DIR [memstore|bluestore]
#   memstore   keeps the OSD's data in RAM (fastest; default)   bluestore   sparse files under DIR
# Environment:
#   NOSD=N            number of OSDs (default 1)
#   NO_MGR=1          skip the manager (saves ~300 MB; plain RBD I/O does not need it)
#   MON_PORT=P        msgr2 port of the monitor (default 3300)   MON_V1_PORT=P  legacy port (default 6789)
#                     Pick free ports to run several clusters (test sessions) side by side.
#   PAXOS_PROPOSE_INTERVAL=S   how long the monitor batches map changes (default 0.05 s here; Ceph's own
#                     default, what production clusters run, is 1 s: benchmarks/rbd.py measures with both)
# Afterwards: export CEPH_CONF=DIR/ceph.conf; rbd ls rbd
set -euo pipefail
D=${1:?usage: start-ceph.sh DIR [memstore|bluestore]}
STORE=${2:-memstore}
NOSD=${NOSD:-1}
MON_PORT=${MON_PORT:-3300}
MON_V1_PORT=${MON_V1_PORT:-6789}
PAXOS_PROPOSE_INTERVAL=${PAXOS_PROPOSE_INTERVAL:-0.05}
case "$STORE" in memstore|bluestore) ;; *) echo "start-ceph: unknown object store $STORE" >&2; exit 2;; esac
for tool in ceph-mon ceph-osd ceph-authtool monmaptool ceph rbd uuidgen; do
  command -v "$tool" >/dev/null || { echo "start-ceph: $tool not found (run scripts/install-ceph.sh)" >&2; exit 2; }
done
mkdir -p "$D"
D=$(cd "$D" && pwd)
[ -e "$D/ceph.conf" ] && { echo "start-ceph: $D already holds a cluster; use a new directory" >&2; exit 2; }
mkdir -p "$D"/{run,log}
FSID=$(uuidgen)
MON_ADDR="[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]"
export CEPH_CONF=$D/ceph.conf

# If anything below fails, stop what was started so no daemon outlives a failed start.
trap 'echo "start-ceph: failed; logs in $D/log" >&2; bash "$(dirname "$0")/stop-ceph.sh" "$D" >/dev/null 2>&1 || true' ERR

cat > "$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon host = $MON_ADDR
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
crash dir = $D/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
auth allow insecure global id reclaim = false
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mgr initial modules =
[mon]
mon data = $D/\$name
# Snapshot ids come from the monitor, which batches map changes once a second by default: every snapshot
# create/remove would take ~1 s. A single-monitor test cluster can propose at once (0.1 s per snapshot).
paxos propose interval = $PAXOS_PROPOSE_INTERVAL
paxos min wait = 0.01
[mgr]
mgr data = $D/\$name
[osd]
osd data = $D/\$name
osd objectstore = $STORE
memstore device bytes = 3221225472
bluestore block path = $D/\$name/block.file
bluestore block create = true
bluestore block size = 4294967296
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 134217728
CONF

# Keys: mon., client.admin, mgr.x and osd.N, all in one keyring (a test cluster has one trust domain).
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n mgr.x \
  --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
for i in $(seq 0 $((NOSD-1))); do
  ceph-authtool "$D/keyring" --gen-key -n "osd.$i" \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
done

# Monitor.
monmaptool --create --fsid "$FSID" --addv a "$MON_ADDR" "$D/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon -i a
# Manager (optional for plain RBD I/O).
mkdir -p "$D/mgr.x"
[ -n "${NO_MGR:-}" ] || ceph-mgr -i x
# OSDs: "ceph osd new" registers id i; its key is already in the keyring the monitor was created with.
for i in $(seq 0 $((NOSD-1))); do
  U=$(uuidgen)
  mkdir -p "$D/osd.$i"
  ceph --connect-timeout 30 osd new "$U" "$i" >/dev/null
  ceph-osd -i "$i" --mkfs --osd-uuid "$U" 2>>"$D/log/mkfs.log"
  ceph-osd -i "$i"
done
# Wait (up to 60 s) for every OSD to be up; a cluster without OSDs would make every client hang.
up=0
for _ in $(seq 1 120); do
  up=$(ceph osd stat -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])')
  [ "$up" = "$NOSD" ] && break
  sleep 0.5
done
if [ "$up" != "$NOSD" ]; then
  echo "start-ceph: only $up of $NOSD OSDs came up" >&2
  false
fi
ceph osd pool create rbd 8 8 >/dev/null
rbd pool init rbd
trap - ERR
echo "ceph up: CEPH_CONF=$CEPH_CONF"
