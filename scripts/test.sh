#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the test suite. Extra arguments go to the main pytest
# run. Then the add-on tests run again under Blender 4.2 LTS: .venv-bpy42 holds only bpy 4.2 and
# pytest, and the core runs through the main environment's interpreter, as a real Blender would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_bpy42.sh
.venv/bin/python -m pytest -q "$@"
echo "test: the add-on under Blender 4.2 LTS (.venv-bpy42)" >&2
DEEPFAKE_CORE_PYTHON="$PWD/.venv/bin/python" .venv-bpy42/bin/python -m pytest -q tests/test_addon*.py
