"""Landmark accuracy of each aligner backend on the human-annotated faces.

Usage: .venv/bin/python benchmarks/landmarks.py [--backends dlib,fan] [--device cpu]
Prints per backend: faces found, median and mean normalised error (mean point error over the
inter-ocular distance, points 36-45; misses count as infinite in the median). A backend that
cannot load here (fan without its weights) is reported as such, not guessed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.errors import AlignerError  # noqa: E402
from core.faces.accuracy import face_errors, load_annotated  # noqa: E402
from core.faces.select import make_aligner  # noqa: E402

LANDMARKS = ROOT.parent / "shared" / "faces" / "landmarks"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="dlib,fan")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = load_annotated(LANDMARKS)
    n = sum(len(image.faces) for image in images)
    print(f"landmark accuracy on {n} human-annotated faces ({len(images)} images)")
    for backend in args.backends.split(","):
        try:
            aligner = make_aligner(backend, args.device, log=lambda msg: None)
        except AlignerError as exc:
            print(f"{backend:5} not measured: {exc}")
            continue
        errors = np.array(face_errors(aligner, images))
        found = np.isfinite(errors)
        print(f"{backend:5} found {found.sum()}/{n}  median NME {np.median(errors):.4f}  "
              f"mean NME over found {errors[found].mean():.4f}  per face {np.round(errors, 3).tolist()}")


if __name__ == "__main__":
    main()
