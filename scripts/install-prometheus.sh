#!/usr/bin/env bash
# Debian's Prometheus (prometheus + promtool) and redis_exporter, for the observability tests
# (tests/e2e/test_observability.py): promtool validates observability/prometheus/prometheus.yml,
# and the real prometheus binary scrapes a local stack to prove every dashboard query has data.
# Idempotent: installs nothing when the binaries are already on PATH. Needs root (CI is root).
# Installing does not start a daemon where invoke-rc.d is denied (containers); the tests start
# their own Prometheus on a free loopback port and stop it.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
if ((${#missing[@]} == 0)); then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# One `apt-get update`, skipped when the package lists are fresh.
if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -30 2>/dev/null | grep -q .; then
  apt-get update -qq
fi
# No recommends: prometheus recommends prometheus-node-exporter, which the tests do not use.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
promtool --version 2>&1 | head -1
