#!/usr/bin/env bash
# Sets up everything on a fresh Debian/Ubuntu machine with Python 3.11: the system libraries bpy
# needs, a .venv with torch (CPU build, installed first) and the pinned rest, and the project
# itself in editable mode. Idempotent: a second run checks a stamp and returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
APT_PACKAGES=(libx11-6 libxext6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libxt6 libgl1
              libxxf86vm1 libgomp1)
TORCH_PIN="torch==2.13.0"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system libraries: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=.venv/.setup-stamp
want=$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date" >&2
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_PIN"
# The constraint keeps the resolver from swapping torch for a CUDA build behind our back.
.venv/bin/python -m pip install -q -r requirements.txt "$TORCH_PIN"
.venv/bin/python -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
echo "setup: done" >&2
