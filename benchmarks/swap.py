"""Swap throughput and peak memory: frames/s for whole-frame PNG output on real clips.

Usage: .venv/bin/python benchmarks/swap.py [--model DIR] [--device cpu|cuda] [CLIP ...]
Without --model it extracts d18 / d19 (first 64 frames each) and trains a small model for 20
iterations: throughput does not depend on how well the model is trained. Each clip runs in a
child process so its peak RSS is its own. Includes decoding, detection (dlib), identity checks,
smoothing, inference, colour transfer, compositing and PNG writing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "faces" / "video"
CLIPS = ["liveportrait_d18.mp4:0:216", "liveportrait_s18.mp4:0:120", "facenet_pytorch_video.mp4:0:60"]


def run_one(clip: str, model: str, device: str) -> dict:
    from core.events import Events
    from core.swap import SwapSettings, swap

    path, start, count = clip.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = swap(path, model, Path(tmp) / "out", SwapSettings(start=int(start), count=int(count), aligner="dlib",
                                                                    device=device), Events(jsonl=True, out=open(os.devnull, "w")))
        seconds = time.perf_counter() - t0
    return {"clip": Path(path).name, "frames": summary["frames_written"], "fps": summary["frames_written"] / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "flags": summary["flags"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clips", nargs="*", default=[f"{VIDEO / c.split(':')[0]}:{':'.join(c.split(':')[1:])}" for c in CLIPS])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.clips[0], args.model, args.device)))
        return
    model = args.model
    if model is None:
        work = Path(tempfile.mkdtemp(prefix="bd-swapbench-"))
        for name in ("liveportrait_d18", "liveportrait_d19"):
            subprocess.run([sys.executable, "-m", "core", "extract", str(VIDEO / f"{name}.mp4"), "--out", str(work / name),
                            "--count", "64", "--aligner", "dlib"], cwd=ROOT, check=True, capture_output=True)
        model = str(work / "model")
        subprocess.run([sys.executable, "-m", "core", "train", "--faceset-a", str(work / "liveportrait_d18"), "--faceset-b",
                        str(work / "liveportrait_d19"), "--model", model, "--iterations", "20", "--batch-size", "4",
                        "--device", "cpu"], cwd=ROOT, check=True, capture_output=True)
    print(f"swap benchmark: model {model}, device {args.device}, PNG composite output")
    for clip in args.clips:
        out = subprocess.run([sys.executable, __file__, "--one", "--model", model, "--device", args.device, clip],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{clip}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['clip']:34} {r['frames']:4d} frames {r['fps']:6.1f} frames/s  peak RSS {r['peak_rss_mb']:.0f} MB  flags {r['flags']}",
              flush=True)


if __name__ == "__main__":
    main()
