"""Chunked swaps against a whole one: how far a chunk's frames are from the whole shot's, and what
the pre-roll costs.

    .venv/bin/python benchmarks/chunks.py --out runs/chunks
    .venv/bin/python benchmarks/chunks.py --out runs/chunks --prerolls 0,15,30,default --chunk 50

Swaps liveportrait_d18 frames 0..215 whole (PNG), then in chunks of `--chunk` frames (0-49,
50-99, ...) into one folder, once per pre-roll length, and prints per run: frames/s (frames
written / wall seconds), the frames read for the pre-roll, and the largest difference of any
channel of any frame from the whole run's (levels of 255), with how many frames differ at all.
Then a swap killed with SIGKILL half way and rerun, compared the same way. The model is a small
one trained briefly on d18 / d19 (or --model): the mechanics, not the look, are measured.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from convergence import VIDEO, faceset, quiet  # noqa: E402

D18 = VIDEO / "liveportrait_d18.mp4"
FRAMES = 216


def small_model(out: Path) -> Path:
    from core.train import TrainSettings, train

    model = out / "model"
    if not (model / "model.safetensors").is_file():
        a = faceset(D18, ROOT / "runs" / "facesets" / "liveportrait_d18")
        b = faceset(VIDEO / "liveportrait_d19.mp4", ROOT / "runs" / "facesets" / "liveportrait_d19")
        train(TrainSettings(facesets_a=[a], facesets_b=[b], model_dir=model, iterations=60, batch_size=8,
                            device="cpu", seed=3, save_every=10**6, preview_every=10**6), quiet())
    return model


def swap_range(model: Path, out: Path, start: int, count: int, preroll: int | None) -> dict:
    from core.swap import SwapSettings, swap

    return swap(D18, model, out, SwapSettings(start=start, count=count, aligner="dlib", device="cpu",
                                              preroll=preroll), quiet())


def compare(a: Path, b: Path) -> tuple[int, int]:
    """(largest channel difference over all frames, frames that differ at all)."""
    worst, differ = 0, 0
    for i in range(FRAMES):
        x = cv2.imread(str(a / f"frame_{i:06d}.png")).astype(int)
        y = cv2.imread(str(b / f"frame_{i:06d}.png")).astype(int)
        d = int(np.abs(x - y).max())
        worst, differ = max(worst, d), differ + (d > 0)
    return worst, differ


def killed_and_rerun(model: Path, out: Path) -> float:
    """A CLI swap of the whole shot killed with SIGKILL once half its frames are on disk, then
    rerun to the end; returns the rerun's wall seconds."""
    cmd = [sys.executable, "-m", "core", "swap", str(D18), "--model", str(model), "--out", str(out),
           "--aligner", "dlib", "--device", "cpu"]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while job.poll() is None and len(list(out.glob("frame_*.png"))) < FRAMES // 2:
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    print(f"killed at {len(list(out.glob('frame_*.png')))} frames on disk", flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--prerolls", default="0,default", help="comma-separated frame counts; 'default' = the swap's own")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or small_model(args.out)
    for old in [args.out / "whole", args.out / "killed", *args.out.glob("chunks_*")]:
        shutil.rmtree(old, ignore_errors=True)  # this script's own outputs: every run measures afresh
    whole = args.out / "whole"
    t0 = time.monotonic()
    summary = swap_range(model, whole, 0, FRAMES, None)
    whole_s = time.monotonic() - t0
    print(f"whole: {summary['frames_written']} frames in {whole_s:.1f} s = {summary['frames_written'] / whole_s:.2f} frames/s "
          f"(pre-roll setting {summary['preroll']})", flush=True)
    print("| pre-roll | frames read, not written | wall s | frames/s | vs whole | largest difference | frames differing |")
    print("|---|---|---|---|---|---|---|")
    for text in args.prerolls.split(","):
        preroll = None if text == "default" else int(text)
        folder = args.out / f"chunks_{text}"
        t0, read, used = time.monotonic(), 0, None
        for start in range(0, FRAMES, args.chunk):
            result = swap_range(model, folder, start, min(args.chunk, FRAMES - start), preroll)
            read, used = read + result["frames_read_not_written"], result["preroll"]
        seconds = time.monotonic() - t0
        worst, differ = compare(whole, folder)
        print(f"| {used} | {read} | {seconds:.1f} | {FRAMES / seconds:.2f} | {whole_s / seconds:.2f}x | {worst} | {differ} |",
              flush=True)
    killed = args.out / "killed"
    seconds = killed_and_rerun(model, killed)
    worst, differ = compare(whole, killed)
    print(f"killed with SIGKILL half way and rerun: rerun {seconds:.1f} s, largest difference {worst}, "
          f"{differ} frames differing", flush=True)


if __name__ == "__main__":
    main()
