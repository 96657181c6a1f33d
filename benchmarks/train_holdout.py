"""A short CPU training run and what it shows on held-out faces (DESIGN.md, "What training takes").

Usage: .venv/bin/python benchmarks/train_holdout.py [--iterations 500] [--faceset-a A --faceset-b B] [--model DIR]
Without facesets it extracts liveportrait_d18 (A) and liveportrait_d19 (B) first. The last 20 %
of each faceset's frames are held out. Prints the loss curve, the held-out rebuild SSIM (inside
the face hull) of an untrained model (same seed) against the trained one, and the preview path.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "faces" / "video"

from core.events import Events  # noqa: E402
from core.model import build_model, load_model  # noqa: E402
from core.losses import rebuild_ssim
from core.train import TrainSettings, train  # noqa: E402
from core.train_data import load_identity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--faceset-a", type=Path)
    parser.add_argument("--faceset-b", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bd-train-"))
    facesets = []
    for given, clip in ((args.faceset_a, "liveportrait_d18.mp4"), (args.faceset_b, "liveportrait_d19.mp4")):
        if given is None:
            given = work / clip.split(".")[0]
            subprocess.run([sys.executable, "-m", "core", "extract", str(VIDEO / clip), "--out", str(given),
                            "--aligner", "dlib"], cwd=ROOT, check=True, capture_output=True)
        facesets.append(given)
    model_dir = args.model or work / "model"
    t0 = time.monotonic()
    summary = train(TrainSettings(facesets_a=[facesets[0]], facesets_b=[facesets[1]], model_dir=model_dir,
                                  iterations=args.iterations, batch_size=args.batch_size, device="cpu",
                                  seed=args.seed, holdout=0.2, save_every=250, preview_every=args.iterations),
                    Events(jsonl=False))
    minutes = (time.monotonic() - t0) / 60
    losses = json.loads((model_dir / "state.json").read_text())["losses"]
    print(f"\ntrained {summary['iteration']} iterations, batch {args.batch_size}+{args.batch_size}, "
          f"{minutes:.1f} min, {summary['samples_per_s']} samples/s")
    for it, la, lb in losses[:: max(1, len(losses) // 10)] + [losses[-1]]:
        print(f"  iteration {it:6d}  loss A {la:.4f}  loss B {lb:.4f}")
    import torch

    trained, config, _, _ = load_model(model_dir)
    torch.manual_seed(args.seed)
    untrained = build_model(config)
    for folder, identity in ((facesets[0], "a"), (facesets[1], "b")):
        _, held = load_identity([folder], config.resolution, 0.2)
        print(f"held-out {identity.upper()} ({len(held)} faces): rebuild SSIM untrained "
              f"{rebuild_ssim(untrained, held, identity):.3f} -> trained {rebuild_ssim(trained, held, identity):.3f}")
    print(f"preview: {model_dir / 'preview.png'}")


if __name__ == "__main__":
    main()
