#!/usr/bin/env bash
# Sets up a fresh Debian machine for the project: Debian packages, the virtual environment (.venv) with the
# pip packages, and the browser assets from npm. Safe to run again: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus: for promtool, which checks docs/monitoring/alerts.yml (its daemon is not started)
# redis-server: the backplane of rooms across processes (scripts/redis.sh starts it; its service is not)
APT_PACKAGES=(ffmpeg espeak-ng libespeak-ng1 chromium chromium-driver zip nftables iproute2 prometheus redis-server)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # Install services' packages without starting their daemons (policy-rc.d 101: "not now").
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap '$SUDO rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$policy" ] || $SUDO rm -f "$policy"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt requirements-nodeps.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing pip packages into .venv"
  find_links=()
  [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)   # the local CPU build of torch
  # llama-cpp-python builds from source once (pip keeps the wheel): use every core, skip its tools.
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF}"
  .venv/bin/pip install -q "${find_links[@]}" -r requirements.txt
  .venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
  touch "$stamp"
fi

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.setup-lock; then
  echo "setup: installing browser packages from npm"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.setup-lock
fi
.venv/bin/python scripts/build_assets.py
