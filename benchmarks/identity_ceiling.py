"""How close to a person can a face of a given resolution come, by the descriptor the convergence
benchmark reads? The ceiling that the identity bar of issue 10 is read against.

    .venv/bin/python benchmarks/identity_ceiling.py --pair d18 --pair hdtf

On B's own held-out frames (the last 20 % of B's clip, as benchmarks/convergence.py holds out A's),
each face is re-detected and described, as `deepfake evaluate` does, in four views: the frame as it
is; B's own face resampled through 64 and 128 px and pasted back by the swap's paste (what a
perfect model of B of that size would paint); and B's mean face pasted the same way (the mean-face
control, here in B's own frames). It prints each view's mean descriptor distance to B and the
share of frames nearer B than A. This is a proxy: a swap paints B into A's frames, inside A's face
outline, and a perfect B there may sit further from B than B's own frames do.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESOLUTIONS = (64, 128)


def ceiling(pair: str, cache: Path) -> dict[str, tuple[float, float, int]]:
    from concurrent.futures import ThreadPoolExecutor

    from convergence import PAIRS, VIDEO, faceset, held_out_range
    from core.evaluate.controls import identity_of, mean_face, paste_face, resampled_face
    from core.faces.align import CROP
    from core.faces.dlib_backend import DlibAligner
    from core.faces.identity import FaceDescriber
    from core.media import open_source

    clip_a, clip_b = (VIDEO / name for name in PAIRS[pair])
    fs_a, fs_b = (faceset(c, cache / c.stem) for c in (clip_a, clip_b))
    with ThreadPoolExecutor(2) as pool:
        ident_a, ident_b = pool.map(identity_of, (fs_a, fs_b))
    mean_b = mean_face(fs_b)
    aligner, describer = DlibAligner(threads=2), FaceDescriber()
    views = ["frame", *(f"{r} px" for r in RESOLUTIONS), "mean face"]
    dist: dict[str, list[float]] = {v: [] for v in views}
    nearer: dict[str, list[bool]] = {v: [] for v in views}
    start, count = held_out_range(clip_b)
    with open_source(clip_b, start, count) as source:
        for _, frame in source:
            faces = aligner.detect([frame])[0]
            if not faces:
                continue
            lm = np.asarray(faces[0].landmarks, dtype=np.float64)
            images = {"frame": frame, "mean face": paste_face(frame, lm, mean_b)}
            for r in RESOLUTIONS:
                crop = resampled_face(frame, lm, r, CROP)
                images[f"{r} px"] = frame.copy() if crop is None else paste_face(frame, lm, crop, "none")
            for view, image in images.items():
                found = aligner.detect([image])[0]
                if not found:
                    continue
                d = describer.describe(image, found[0].landmarks)
                dist[view].append(float(np.linalg.norm(d - ident_b)))
                nearer[view].append(float(np.linalg.norm(d - ident_b)) < float(np.linalg.norm(d - ident_a)))
    return {v: (float(np.mean(dist[v])), float(np.mean(nearer[v])), len(dist[v])) for v in views}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", action="append", choices=("d18", "hdtf"), required=True)
    p.add_argument("--facesets", type=Path, default=ROOT / "runs" / "facesets",
                   help="where the pair clips' facesets are cached (the convergence benchmark's)")
    args = p.parse_args()
    print("| pair (B's held-out frames) | view | distance to B | nearer B than A | frames |")
    print("|---|---|---|---|---|")
    for pair in args.pair:
        for view, (d, share, n) in ceiling(pair, args.facesets).items():
            print(f"| {pair} | {view} | {d:.3f} | {share:.2f} | {n} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
