#!/usr/bin/env bash
# Sets everything up (idempotent), then runs the whole workflow through the Blender add-on, as an
# editor would click it: a new .blend with clip A (the footage) and clip B (the new face), Extract
# both, Train a small model briefly on the CPU, Swap A's face, save out/demo.blend with the source
# and the swap stacked in the Video Sequence Editor, and render the sequencer to out/demo.mp4
# (labelled as AI-modified: Content Credentials and plain metadata, checked at the end).
# Usage: scripts/demo.sh [CLIP_A CLIP_B]   (default: the two sample clips of ../shared/faces/video)
# DEMO_ITERATIONS (default 300, about 5 minutes on 2 CPU cores) sets the training length: a
# short CPU run gives a blurred face that already carries B's colouring; sharp swaps take GPU hours.
# DEMO_OUT (default out) is the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

FACES=${FACES:-../shared/faces}
ITERATIONS=${DEMO_ITERATIONS:-300}
OUT=${DEMO_OUT:-out}
if [ $# -eq 0 ]; then
  set -- "$FACES/video/liveportrait_d18.mp4" "$FACES/video/liveportrait_d19.mp4"
fi
[ $# -eq 2 ] || { echo "usage: scripts/demo.sh [CLIP_A CLIP_B]" >&2; exit 2; }
# Prints the step headings and the results (Blender's line per rendered frame goes to a log).
.venv/bin/python scripts/deepfake_batch.py demo "$1" "$2" --out "$OUT" --iterations "$ITERATIONS"
echo "== summary" >&2
.venv/bin/deepfake inspect "$OUT/deepfake/facesets/A_footage"
.venv/bin/deepfake inspect "$OUT/deepfake/facesets/B_new_face"
.venv/bin/deepfake verify "$OUT/demo.mp4"   # the render says a face in it was replaced (docs/PROVENANCE.md)
echo "editor: $OUT/demo.blend (A on channel 1, the swap on channel 2, B muted on channel 4);" \
     "render: $OUT/demo.mp4; model: $OUT/deepfake/models/model (preview.png); frames: $OUT/deepfake/swaps/"
