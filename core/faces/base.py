"""What every face aligner backend returns, and the interface they share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass
class Face:
    """One face found in one frame, in source pixel coordinates.

    box: (x0, y0, x1, y1) of the detector, score: the detector's confidence (backend-specific
    scale), landmarks: (68, 2) float64 iBUG 300-W points, 0-based pixel centres.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceAligner(Protocol):
    """A detector plus a 68-point landmarker. Frames are RGB uint8 (H, W, 3) arrays."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per frame, in the order of `frames`; an empty list where there is none."""
        ...
