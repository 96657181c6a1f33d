#!/usr/bin/env bash
# Sets everything up (idempotent), then extracts the faces of two clips into facesets under
# demo_out/ and prints a summary. Usage: scripts/demo.sh [CLIP ...]
# (default: the two sample clips of ../shared/faces/video).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

FACES=${FACES:-../shared/faces}
if [ $# -eq 0 ]; then
  set -- "$FACES/video/liveportrait_d18.mp4" "$FACES/video/liveportrait_d19.mp4"
fi
mkdir -p demo_out
for clip in "$@"; do
  name=$(basename "${clip%.*}")
  echo "== extract $clip -> demo_out/$name" >&2
  .venv/bin/deepfake extract "$clip" --out "demo_out/$name"
done
echo "== facesets" >&2
for clip in "$@"; do
  .venv/bin/deepfake info "demo_out/$(basename "${clip%.*}")"
done
