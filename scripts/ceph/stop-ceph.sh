#!/bin/bash
# Stop the daemons that start-ceph.sh started in DIR, by their pid files only (never by name, so other
# clusters and other users' daemons are left alone). OSDs and the manager go first, all at once (an OSD
# tells the monitor it is going down, which is quick while the monitor still runs), then the monitor.
# Each daemon gets up to 10 s after SIGTERM before SIGKILL.
# Usage: stop-ceph.sh DIR [--purge]   (--purge also removes DIR)
set -u
D=${1:?usage: stop-ceph.sh DIR [--purge]}

stop() {  # stop the daemons whose pid files are given, in parallel
  local f p pids=()
  for f in "$@"; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    rm -f "$f"
    # Only signal a pid that is still a Ceph daemon (a stale pid file may name a reused pid).
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in ceph-*) ;; *) continue;; esac
    kill "$p" 2>/dev/null && echo "stopping $(basename "$f" .pid) pid $p" && pids+=("$p")
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -9 "$p"; echo "killed -9 $p"; fi
  done
}

stop "$D"/run/osd.*.pid "$D"/run/mgr.*.pid
stop "$D"/run/mon.*.pid
if [ "${2:-}" = "--purge" ]; then
  rm -rf -- "$D"
fi
exit 0
