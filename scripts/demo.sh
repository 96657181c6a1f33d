#!/usr/bin/env bash
# Sets everything up (idempotent), then runs the whole job on two clips: extract both into
# facesets, train a small model briefly on the CPU, swap the first clip's face, write the result
# as an .mp4 and a .blend with the source and the swap stacked in the Video Sequence Editor.
# Usage: scripts/demo.sh [CLIP_A CLIP_B]   (default: the two sample clips of ../shared/faces/video)
# DEMO_ITERATIONS (default 300, about 5 minutes on 2 CPU cores) sets the training length: a
# short CPU run gives a blurred face that already carries B's colouring; sharp swaps take GPU hours.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

FACES=${FACES:-../shared/faces}
ITERATIONS=${DEMO_ITERATIONS:-300}
if [ $# -eq 0 ]; then
  set -- "$FACES/video/liveportrait_d18.mp4" "$FACES/video/liveportrait_d19.mp4"
fi
[ $# -eq 2 ] || { echo "usage: scripts/demo.sh [CLIP_A CLIP_B]" >&2; exit 2; }
a="demo_out/$(basename "${1%.*}")"; b="demo_out/$(basename "${2%.*}")"
mkdir -p demo_out
echo "== extract $1 -> $a" >&2
.venv/bin/deepfake extract "$1" --out "$a"
echo "== extract $2 -> $b" >&2
.venv/bin/deepfake extract "$2" --out "$b"
echo "== train demo_out/model ($ITERATIONS iterations, preset small)" >&2
.venv/bin/deepfake train --faceset-a "$a" --faceset-b "$b" --model demo_out/model --iterations "$ITERATIONS" \
  --preview-every 100
echo "== swap $1 -> demo_out/swapped.mp4" >&2
.venv/bin/deepfake swap "$1" --model demo_out/model --out demo_out/swapped.mp4 --format mp4 \
  --alignments "$a/alignments.json" --force
echo "== demo_out/demo.blend" >&2
.venv/bin/python scripts/make_demo_blend.py "$1" demo_out/swapped.mp4 demo_out/demo.blend
echo "== summary" >&2
.venv/bin/deepfake info "$a"
.venv/bin/deepfake info "$b"
echo "model: demo_out/model (preview: demo_out/model/preview.png); swap: demo_out/swapped.mp4; flags: demo_out/swapped.flags.json; editor: demo_out/demo.blend"
