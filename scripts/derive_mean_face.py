"""Derive the mean-face template `core/faces/mean_face.json` from real landmarks.

How (run: `.venv/bin/python scripts/derive_mean_face.py`):
1. Collect 68-point shapes: the human-annotated and dlib-reference faces of
   ../shared/faces/landmarks/landmarks68.json (1-based .pts points shifted to 0-based; the
   3DMM-fitted, synthetically rotated 300W-LP faces are left out because they are not frontal),
   plus dlib's own landmarks on every face it finds in the labelled stills (../shared/faces/stills).
2. Generalised Procrustes analysis: align every shape to the current mean with a least-squares
   similarity (Umeyama), average, normalise, repeat until the mean stops moving.
3. Make it left-right symmetric by averaging it with its mirror image (iBUG point pairs swapped):
   a template that leans one way would tilt every crop.
4. Place it in the unit crop: brow top at y = 0.22, chin at y = 0.82, centred horizontally.
   This leaves room above the brows for the forehead and a margin around the jaw, so the crop
   holds the whole face with margin (and the swap's mask can feather inside the crop).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.faces.align import umeyama  # noqa: E402
from core.faces.dlib_backend import DlibAligner  # noqa: E402

FACES = ROOT.parent / "shared" / "faces"
OUT = ROOT / "core" / "faces" / "mean_face.json"
BROW_TOP, CHIN = 0.22, 0.82
MIRROR = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
          + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
          + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def annotated_shapes() -> list[np.ndarray]:
    data = json.loads((FACES / "landmarks" / "landmarks68.json").read_text())
    shapes = []
    for entry in data["entries"]:
        if "300W-LP" in entry["source_format"]:
            continue
        offset = 1.0 if "1-based" in entry["source_format"] else 0.0
        shapes += [np.asarray(face, dtype=np.float64) - offset for face in entry["faces"]]
    return shapes


def still_shapes() -> list[np.ndarray]:
    aligner = DlibAligner()
    shapes = []
    for path in sorted((FACES / "stills").rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        shapes += [face.landmarks for face in aligner.detect([rgb])[0]]
    return shapes


def procrustes_mean(shapes: list[np.ndarray], rounds: int = 20) -> np.ndarray:
    def normalise(shape: np.ndarray) -> np.ndarray:
        shape = shape - shape.mean(axis=0)
        return shape / np.sqrt((shape ** 2).sum(axis=1).mean())

    mean = normalise(shapes[0])
    for _ in range(rounds):
        aligned = []
        for shape in shapes:
            m = umeyama(shape, mean)
            aligned.append(shape @ m[:, :2].T + m[:, 2])
        new_mean = normalise(np.mean(aligned, axis=0))
        moved = np.abs(new_mean - mean).max()
        mean = new_mean
        if moved < 1e-9:
            break
    return mean


def symmetric(shape: np.ndarray) -> np.ndarray:
    """Level the eyes, then average with the mirror image about the vertical axis through the
    centroid: the result is exactly symmetric (mirroring it gives it back)."""
    dx, dy = shape[42:48].mean(axis=0) - shape[36:42].mean(axis=0)
    c, s = np.cos(-np.arctan2(dy, dx)), np.sin(-np.arctan2(dy, dx))
    level = (shape - shape.mean(axis=0)) @ np.array([[c, -s], [s, c]]).T
    return (level + level[MIRROR] * np.array([-1.0, 1.0])) / 2


def place_in_crop(shape: np.ndarray) -> np.ndarray:
    top, bottom = shape[17:27, 1].min(), shape[:, 1].max()
    scale = (CHIN - BROW_TOP) / (bottom - top)
    placed = (shape - [shape[:, 0].mean(), top]) * scale + [0.5, BROW_TOP]
    return placed


def main() -> None:
    shapes = annotated_shapes() + still_shapes()
    mean = place_in_crop(symmetric(procrustes_mean(shapes)))
    derivation = (f"scripts/derive_mean_face.py: Procrustes mean of {len(shapes)} real 68-point shapes, "
                  f"symmetrised, brow top at y={BROW_TOP} and chin at y={CHIN} of the unit crop")
    points = ",\n".join(f"  [{x:.6f}, {y:.6f}]" for x, y in mean)
    OUT.write_text(f'{{\n "version": 1,\n "derivation": {json.dumps(derivation)},\n "points": [\n{points}\n ]\n}}\n')
    print(f"{OUT}: mean of {len(shapes)} shapes; x range {mean[:, 0].min():.3f}..{mean[:, 0].max():.3f}, "
          f"y range {mean[:, 1].min():.3f}..{mean[:, 1].max():.3f}")


if __name__ == "__main__":
    main()
