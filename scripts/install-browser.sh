#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/browser), which Playwright for Python drives through
# executable_path=/usr/bin/chromium: no browser download from Playwright's CDN, and security updates come with apt.
# Idempotent and quiet when Chromium is there. Without root (or apt-get) it says what to install and exits 0:
# the browser tests then skip with that reason instead of failing the suite.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: $CHROMIUM is missing; install the Debian package 'chromium' (needs root)." \
       "Browser tests skip without it." >&2
  exit 0
fi
echo "install-browser: installing chromium with apt-get (about 20 s)" >&2
export DEBIAN_FRONTEND=noninteractive
# A first failure is usually stale or empty package lists: update once and retry.
apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
if [ ! -x "$CHROMIUM" ]; then
  echo "install-browser: apt-get finished but $CHROMIUM is still missing" >&2
  exit 0
fi
echo "install-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium installed)" >&2
