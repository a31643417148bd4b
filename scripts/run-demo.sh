#!/usr/bin/env bash
# `make run`: `lifeboat demo run` sets up (instance config, database, demo data) and runs the embedded Redis,
# two workers, the scheduler and the web app until Ctrl-C or SIGTERM, which stop them all. It replaces this
# shell (exec), so a signal to make, or to this script, reaches it directly.
# LIFEBOAT_VAR (default ./var) is where everything lives; PORT the web app's port.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-5000}
LIFEBOAT_VAR=$(realpath -m "${LIFEBOAT_VAR:-var}")
export LIFEBOAT_VAR
exec "$BIN/lifeboat" demo run --port "$PORT"
