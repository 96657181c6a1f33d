"""Pretrain a generic model on the 19 pretrain clips (../shared/faces/video/pretrain), for pairs to
start from with `train --init` (issue 10 item 4; judged with benchmarks/convergence.py --init).

    .venv/bin/python benchmarks/pretrain.py --iterations 6000 --out runs/pretrain
    .venv/bin/python benchmarks/convergence.py --pair d18 --init runs/pretrain/model --iterations 1000 --out runs/d18_init

Extracts each clip once (dlib, cached under OUT/../facesets/pretrain), then runs `deepfake pretrain`'s
code; resumable. Prints faces per person, samples/s and peak memory.
"""
from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
CLIPS = ROOT.parent / "shared" / "faces" / "video" / "pretrain"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--preset", default="small")
    p.add_argument("--layout", default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from convergence import faceset, quiet
    from core.faceset import Faceset
    from core.train import TrainSettings, pretrain

    out = args.out.absolute()
    cache = out.parent / "facesets" / "pretrain"
    facesets = []
    for clip in sorted(CLIPS.glob("*.mp4")):
        fs = faceset(clip, cache / clip.stem)
        print(f"{clip.name}: {len(Faceset.load(fs).faces())} faces", flush=True)
        facesets.append(fs)
    summary = pretrain(facesets, TrainSettings(facesets_a=[], facesets_b=[], model_dir=out / "model",
                                               preset=args.preset, iterations=args.iterations,
                                               batch_size=args.batch_size, device="cpu", layout=args.layout,
                                               save_every=500, preview_every=500), quiet())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pretrained {len(facesets)} people to iteration {summary['iteration']}: "
          f"{summary['samples_per_s']} samples/s, peak RSS {peak_mb:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
