#!/usr/bin/env bash
# Install everything edgeport needs into .venv (and, as root, the Debian toolchains).
# Safe to run again: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES="gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm chromium chromium-driver"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in $DEBIAN_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    # Toolchains serve the browser and Cortex-M targets; without them those targets are listed
    # as unavailable by 'edgeport targets', so a failed apt run is reported, not fatal.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
      echo "setup: warning: apt-get could not install:$missing" >&2
    fi
  fi
else
  echo "setup: not root; skipping Debian packages ($DEBIAN_PACKAGES)"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# pip on some machines warns about configured package folders that do not exist; drop that noise
# (pipefail keeps pip's own exit status).
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
# torch first and pinned: 2.13.0 is a CPU build; an unpinned torch can pull a multi-GB CUDA build.
pip_install torch==2.13.0
# one resolve for all extras: litert-torch and coremltools need compatible typing-extensions / cattrs
pip_install -e '.[torch,ios,android,browser,mcu,samples,sweep,zoo,test]'

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
echo "setup: done ($(.venv/bin/edgeport --version))"
