"""Evaluate a short CPU model's swaps on held-out frames, beside the controls (DESIGN.md,
"Metrics need controls").

Usage: .venv/bin/python benchmarks/evaluate.py [--iterations 600] [--model DIR] [--faceset-a A --faceset-b B]
                                               [--work DIR]
Without facesets it extracts liveportrait_d18 (A) and liveportrait_d19 (B); without --model it
trains a small model on them with --holdout 0.2 (about 15-25 minutes on 2 CPU cores for 600
iterations). Then it swaps the held-out frames of each clip (the last 20 % of its faceset's
frames): d18 a2b (A's footage, B painted) and d19 b2a, evaluates both with `deepfake evaluate`
(JSON, plots and HTML in the work folder), evaluates the model's held-out rebuild quality, and
prints every command it ran and the summary tables: swap vs mean-face control vs source.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "faces" / "video"

from core.faceset import Faceset
from core.report import format_table

CORE = [sys.executable, "-m", "core"]


def run(*args: object) -> float:
    """Run one `deepfake` command, printing it; returns its seconds."""
    command = [*CORE, *map(str, args)]
    print("$ deepfake " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    t0 = time.monotonic()
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return time.monotonic() - t0


def held_out_frames(folder: Path, holdout: float) -> tuple[int, int]:
    """(first frame, count) of the faces `train --holdout` kept out (the last share of faces)."""
    faces = Faceset.load(folder, check_crops=False).faces()
    cut = len(faces) - round(len(faces) * holdout)
    first, last = faces[cut][0], faces[-1][0]
    return first, last - first + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--faceset-a", type=Path)
    parser.add_argument("--faceset-b", type=Path)
    parser.add_argument("--model", type=Path, help="a model trained with --holdout on the two facesets")
    parser.add_argument("--work", type=Path, help="where facesets, swaps and reports go (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bd-evaluate-"))
    work.mkdir(parents=True, exist_ok=True)
    clips = {"a": VIDEO / "liveportrait_d18.mp4", "b": VIDEO / "liveportrait_d19.mp4"}
    facesets = {"a": args.faceset_a, "b": args.faceset_b}
    for key, clip in clips.items():
        if facesets[key] is None:
            facesets[key] = work / f"faceset_{clip.stem}"
            run("extract", clip, "--out", facesets[key], "--aligner", "dlib")
    model = args.model
    if model is None:
        model = work / "model"
        seconds = run("train", "--faceset-a", facesets["a"], "--faceset-b", facesets["b"], "--model", model,
                      "--iterations", args.iterations, "--batch-size", args.batch_size, "--device", "cpu",
                      "--seed", 0, "--holdout", 0.2, "--preview-every", args.iterations)
        print(f"  trained {args.iterations} iterations in {seconds / 60:.1f} min", flush=True)
    state = json.loads((model / "state.json").read_text())
    holdout = float(state.get("holdout", 0))
    if holdout <= 0:
        sys.exit(f"{model} was trained without --holdout")
    tables = []
    for key, direction in (("a", "a2b"), ("b", "b2a")):
        clip = clips[key]
        start, count = held_out_frames(facesets[key], holdout)
        out = work / f"{clip.stem}_{direction}"
        seconds = run("swap", clip, "--model", model, "--out", out, "--start", start, "--count", count,
                      "--direction", direction, "--aligner", "dlib", "--device", "cpu")
        print(f"  swapped {count} frames in {seconds:.0f} s", flush=True)
        report = work / f"{clip.stem}_{direction}.json"
        seconds = run("evaluate", "--source", clip, "--swapped", out, "--faceset-a", facesets["a"],
                      "--faceset-b", facesets["b"], "--json", report, "--html", report.with_suffix(".html"))
        print(f"  evaluated in {seconds:.0f} s: {report.with_suffix('.html')}", flush=True)
        tables.append(format_table(json.loads(report.read_text())))
    model_report = work / "model.json"
    run("evaluate", "--model", model, "--faceset-a", facesets["a"], "--faceset-b", facesets["b"],
        "--json", model_report, "--html", model_report.with_suffix(".html"))
    tables.append(format_table(json.loads(model_report.read_text())))
    print(f"\nmodel {model}: iteration {state.get('iteration')}, seed {state.get('seed')}, holdout {holdout}\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
