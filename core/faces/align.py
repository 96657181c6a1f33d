"""Alignment maths: a similarity transform from a face's landmarks to the project's mean face.

The template (`mean_face.json`, derived by `scripts/derive_mean_face.py`) holds the 68 points
of an average frontal face in unit crop coordinates. The transform is fitted to the 51 non-jaw
points only: the jaw line moves with the mouth and slides along the cheek as the head turns, so
including it would make the crop breathe with every word.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from core.faces.landmarks68 import NON_JAW

TEMPLATE_FILE = Path(__file__).with_name("mean_face.json")
CROP = 256
"""The swap aligns faces at this size, then resizes them to the model's resolution (the evaluation's
resolution control uses the same)."""


@lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """(68, 2) template points in unit crop coordinates (0..1, x right, y down)."""
    data = json.loads(TEMPLATE_FILE.read_text())
    points = np.asarray(data["points"], dtype=np.float64)
    assert points.shape == (68, 2), f"{TEMPLATE_FILE} must hold 68 points"
    return points


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama (1991), closed form; returns the 2x3 matrix. OpenCV's estimateAffinePartial2D only
    offers robust (RANSAC / LMedS) fits, which would discard landmarks and jitter between frames.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_dst - matrix[:, :2] @ mu_src
    return matrix


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2x3 matrix taking source pixels to the pixels of a `size` x `size` aligned crop."""
    return umeyama(np.asarray(landmarks)[NON_JAW], mean_face()[NON_JAW] * size)


def invert(matrix: np.ndarray) -> np.ndarray:
    """2x3 matrix taking crop pixels back to source pixels."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_face(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop. Cubic interpolation; edges replicate so the crop has no black wedges."""
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def warp_back(crop: np.ndarray, matrix: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """A crop (or a mask of it) placed back into frame coordinates; zero outside the crop."""
    h, w = frame_shape[:2]
    return cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def blur_measure(crop: np.ndarray) -> float:
    """Variance of the Laplacian over the central half of the crop (the face, not the
    background): low values mean motion blur or defocus, worth skipping when training."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape
    centre = gray[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    return float(cv2.Laplacian(centre.astype(np.float32), cv2.CV_32F).var())
