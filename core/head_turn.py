"""Whether B's faceset holds the head turns of A's, told to the user before training.

A DF model paints, in A's frames, what B's decoder learnt from B's faces. Where A's head is turned
further than B's ever is, the swap paints B's own habitual turn, nose and mouth off the source's:
on the test pair d18 -> d19 (d18 turned one way in every frame, d19 the other) the swap's landmarks
sit 9 % of the eye distance off the source's, as a constant offset, while they follow the source
from frame to frame (docs/TRAINING.md, "The d18 landmark error is a head turn"). Training mirrors
half the faces, and that did not make up for it there, so the check reads B's faces as they are.
The remedy is the user's: footage of B turned the other way.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.faces.landmarks68 import LEFT_EYE, NOSE_TIP, RIGHT_EYE
from core.faceset import Faceset

# B's range is its 2nd to 98th percentile, widened by MARGIN: a few misfits do not widen it, and
# turns this close to B's are rendered well enough (hdtf's pair, inside B's range, follows).
PERCENTILES = (2.0, 98.0)
MARGIN = 0.02
WARN_SHARE = 0.25  # warn when at least this share of A's faces lies outside


def head_turns(landmarks: np.ndarray) -> np.ndarray:
    """(n,) from (n, 68, 2) landmarks: the nose tip's offset from the eyes' midpoint along the
    eye line, over the eye distance. 0 is frontal; positive, the nose points to the image's right.
    A ratio of distances along one line, so the same in the frame and in any aligned crop."""
    left, right = landmarks[:, LEFT_EYE].mean(axis=1), landmarks[:, RIGHT_EYE].mean(axis=1)
    axis = right - left
    return ((landmarks[:, NOSE_TIP] - (left + right) / 2) * axis).sum(axis=1) / (axis ** 2).sum(axis=1)


def faceset_turns(folders: Sequence[Path]) -> np.ndarray:
    shapes = [f.landmarks for folder in folders
              for faces in Faceset.load(Path(folder), check_crops=False).frames.values() for f in faces]
    return head_turns(np.asarray(shapes, dtype=np.float64)) if shapes else np.zeros(0)


def uncovered_turns_warning(facesets_a: Sequence[Path], facesets_b: Sequence[Path]) -> str | None:
    """A sentence for the user when much of A is turned beyond anything in B; None otherwise."""
    a, b = faceset_turns(facesets_a), faceset_turns(facesets_b)
    if len(a) == 0 or len(b) == 0:
        return None
    low, high = np.percentile(b, PERCENTILES)
    beyond_right, beyond_left = a > high + MARGIN, a < low - MARGIN
    share = float((beyond_right | beyond_left).mean())
    if share < WARN_SHARE:
        return None
    side, beyond = ("right", beyond_right) if beyond_right.sum() >= beyond_left.sum() else ("left", beyond_left)
    return (f"{share:.0%} of A's faces have the head turned further toward the image's {side} than any of B's "
            f"(head turn, nose from the eyes' midpoint over the eye distance, 0 frontal: those faces "
            f"{np.median(a[beyond]):+.2f}, B {low:+.2f} to {high:+.2f}): B's decoder has not seen B turned that way, "
            f"so on those frames the swap is likely to paint B's own head turn, its nose and mouth off the "
            f"source's. Add footage of B turned toward the image's {side} to B's facesets")
