#!/usr/bin/env bash
# Sets up the second test environment, .venv-bpy42: Python 3.11 with bpy 4.2.0 (Blender 4.2 LTS)
# and pytest from requirements-bpy42.txt, nothing else (no torch, no core). The add-on tests run
# there and start the core through the main .venv's interpreter, as a real Blender 4.2 would.
# bpy needs the same system libraries as the main environment (scripts/setup.sh installs them).
# Idempotent: a second run checks a stamp and returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv-bpy42

stamp=$VENV/.setup-stamp
want=$(cat requirements-bpy42.txt scripts/setup_bpy42.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup_bpy42: $VENV is up to date" >&2
  exit 0
fi

[ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
$VENV/bin/python -m pip install -q --upgrade pip
$VENV/bin/python -m pip install -q -r requirements-bpy42.txt
echo "$want" > "$stamp"
echo "setup_bpy42: done" >&2
