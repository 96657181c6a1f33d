#!/usr/bin/env bash
# The GPU check, run once per session on a lent device machine (see ../.library/device). That
# machine has torch, OpenCV and safetensors but no PyAV or dlib and no network, so the facesets are
# extracted here first and carried:
#   .venv/bin/deepfake extract ../shared/faces/video/liveportrait_d18.mp4 --out gpu_facesets/d18 --count 64
#   .venv/bin/deepfake extract ../shared/faces/video/liveportrait_d19.mp4 --out gpu_facesets/d19 --count 64
#   device run: command "bash benchmarks/gpu_check.sh", carry ["gpu_facesets"], timeout_s 540
# It prints training samples/s, peak GPU memory and the share of the card's bf16 peak per preset,
# and runs a short CUDA training run with resume, into $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/train.py --device cuda --facesets gpu_facesets/d18,gpu_facesets/d19 --iterations 30 2>&1 | tee "$OUT/train_bench.txt"
python3 -m core train --faceset-a gpu_facesets/d18 --faceset-b gpu_facesets/d19 --model "$OUT/model" --preset standard \
  --iterations 200 --device cuda --preview-every 100 2>&1 | tr '\r' '\n' | tail -5 | tee "$OUT/train_run.txt"
python3 -m core train --faceset-a gpu_facesets/d18 --faceset-b gpu_facesets/d19 --model "$OUT/model" --preset standard \
  --iterations 250 --device cuda 2>&1 | tr '\r' '\n' | tail -3 | tee -a "$OUT/train_run.txt"
