#!/usr/bin/env bash
# `make run`: instance config, database, demo data, embedded Redis, two workers, the scheduler and the web app;
# Ctrl-C stops them all. LIFEBOAT_VAR (default ./var) is where everything lives; PORT the web app's port.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-5000}
VAR=$(realpath -m "${LIFEBOAT_VAR:-var}")
export LIFEBOAT_VAR=$VAR
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

"$BIN/lifeboat" demo init  # the settings every `lifeboat` command beside this one reads (written once)
"$BIN/lifeboat" db upgrade
"$BIN/lifeboat" demo seed
rm -f "$VAR/redis.url"
"$BIN/lifeboat" redis & pids+=($!)
for _ in $(seq 100); do [ -s "$VAR/redis.url" ] && break; sleep 0.1; done
"$BIN/lifeboat" worker -n 2 & pids+=($!)
"$BIN/lifeboat" scheduler & pids+=($!)
echo
echo "Lifeboat demo on http://127.0.0.1:$PORT  (logins above, password: demo; Ctrl-C stops everything)"
"$BIN/flask" --app wsgi run --host 127.0.0.1 --port "$PORT" & pids+=($!)
wait "${pids[-1]}"
