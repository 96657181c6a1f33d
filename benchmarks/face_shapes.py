"""How different are A's and B's face shapes and head turns, in the aligned crop the model paints?
The control that the landmark bar of issue 10 is read against.

    .venv/bin/python benchmarks/face_shapes.py --pair d18 --pair hdtf

A swap paints B's face in A's frames, so some landmarks are meant to move: B's nose and jaw are not
A's. `deepfake evaluate` splits a swap's landmark error against the source into the part that is
the same on every frame and the part that varies; this prints what the constant part would be if
the swap painted B's average face shape, and where each person's head is turned, from the
facesets' landmarks alone (no model):
- shape gap: the mean over the 68 points of the distance between A's held-out mean shape and B's
  mean shape, both in the aligned crop, over the mean inter-ocular distance there;
- head turn (core.head_turn, which `deepfake train` warns with): the nose tip's offset from the
  eyes' midpoint along the eye line, over the eye distance (0: frontal; the sign says which way),
  mean and standard deviation; training mirrors half the faces, so B's decoder also sees B turned
  the other way;
- lighting side: the mean luminance of the face hull's half on the image's left of the nose line
  minus its right half's, over the face's mean (0: lit evenly; a mirror flips the sign). If A and
  B are lit from the same side, B's unmirrored faces match A's lighting, its mirrored ones match
  A's head turn: a test of why the swap keeps B's turn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def aligned_landmarks(faceset_dir: Path) -> np.ndarray:
    """(n, 68, 2): every face's landmarks in the aligned crop, in frame order."""
    from core.faces.align import CROP, alignment_matrix, transform_points
    from core.faceset import Faceset

    frames = Faceset.load(faceset_dir, check_crops=False).frames
    return np.stack([transform_points(f.landmarks, alignment_matrix(f.landmarks, CROP))
                     for _, faces in sorted(frames.items()) for f in faces])


def lighting_sides(faceset_dir: Path) -> np.ndarray:
    """(n,): each face's left-minus-right luminance inside its hull in the aligned crop, in frame order."""
    import cv2

    from core.faces.align import transform_points
    from core.faces.landmarks68 import NOSE_TIP
    from core.faceset import Faceset, read_crop

    fs = Faceset.load(faceset_dir)
    sides = []
    for _, face in fs.faces():
        crop = read_crop(faceset_dir / face.file)
        points = transform_points(face.landmarks, face.matrix)
        hull = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(points.round().astype(np.int32)), 1)
        luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float64)
        # the nose line through the bridge's top (point 27) and the nose tip, as x at each row
        (x0, y0), (x1, y1) = points[27], points[NOSE_TIP]
        rows, cols = np.mgrid[:crop.shape[0], :crop.shape[1]]
        left = cols < x0 + (rows - y0) * (x1 - x0) / max(y1 - y0, 1e-6)
        inside = hull > 0
        sides.append((luma[inside & left].mean() - luma[inside & ~left].mean()) / luma[inside].mean())
    return np.asarray(sides)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", action="append", default=None, help="d18 or hdtf (repeatable; default both)")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "facesets")
    args = p.parse_args()

    from convergence import HOLDOUT, PAIRS, VIDEO, faceset
    from core.faces.landmarks68 import OUTER_EYE_CORNERS
    from core.head_turn import head_turns

    for pair in args.pair or sorted(PAIRS):
        clip_a, clip_b = (VIDEO / name for name in PAIRS[pair])
        a, b = (aligned_landmarks(faceset(c, args.cache / c.stem)) for c in (clip_a, clip_b))
        held = a[len(a) - int(round(HOLDOUT * len(a))):]
        mean_a, mean_b = held.mean(axis=0), b.mean(axis=0)
        iod = np.linalg.norm(mean_a[OUTER_EYE_CORNERS[1]] - mean_a[OUTER_EYE_CORNERS[0]])
        gap = np.linalg.norm(mean_a - mean_b, axis=1) / iod
        turn_a, turn_b = head_turns(held), head_turns(b)
        lo, hi = min(turn_b.min(), -turn_b.max()), max(turn_b.max(), -turn_b.min())
        print(f"{pair}: shape gap A (held out) to B {gap.mean():.3f} of the inter-ocular distance "
              f"(jaw {gap[:17].mean():.3f}, inner face {gap[17:].mean():.3f})")
        print(f"  head turn: A held out {turn_a.mean():+.3f} (sd {turn_a.std():.3f}), B {turn_b.mean():+.3f} "
              f"(sd {turn_b.std():.3f}); A's held-out frames inside B's range unmirrored "
              f"{np.mean((turn_a >= turn_b.min()) & (turn_a <= turn_b.max())):.0%}, "
              f"mirrored or not {np.mean((turn_a >= lo) & (turn_a <= hi)):.0%}", flush=True)
        light_a, light_b = (lighting_sides(args.cache / c.stem) for c in (clip_a, clip_b))
        light_a = light_a[len(light_a) - len(held):]
        print(f"  lighting side (left minus right half, over the face's mean): A held out "
              f"{light_a.mean():+.3f} (sd {light_a.std():.3f}), B {light_b.mean():+.3f} (sd {light_b.std():.3f})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
