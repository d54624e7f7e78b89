#!/usr/bin/env bash
# Installs the browser that tests/browser drives: Debian's chromium package (Playwright, from the
# `test` extra, only drives it; nothing downloads a browser build). Idempotent: does nothing when
# /usr/bin/chromium is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# One `apt-get update`, skipped when the package lists are fresh.
if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -30 2>/dev/null | grep -q .; then
  "${sudo[@]}" apt-get update -qq
fi
"${sudo[@]}" apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version 2>/dev/null || true
