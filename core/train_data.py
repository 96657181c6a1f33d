"""The faces of one identity, loaded once into memory for training.

Crops are resized to the model's resolution at load time and kept as uint8 (a 64 px face is
12 KB, so tens of thousands fit in memory). With each face go two masks drawn from its aligned
landmarks: the face hull (the mask channel's target, and the loss weight) and the eyes and mouth
(extra loss weight). A hold-out fraction keeps the *last* frames of each faceset out of
training, so evaluation looks at moments the model never saw rather than at neighbours of
training frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import FacesetError
from core.faces.align import transform_points
from core.faces.landmarks68 import LEFT_EYE, MOUTH, RIGHT_EYE
from core.faceset import Faceset, read_crop


@dataclass
class IdentityFaces:
    """faces: (n, res, res, 3) uint8 RGB; hull, eyes_mouth: (n, res, res) uint8 in {0, 1}."""

    faces: np.ndarray
    hull: np.ndarray
    eyes_mouth: np.ndarray
    sources: list[str]  # "faceset:frame:index" of each face, for the record

    def __len__(self) -> int:
        return len(self.faces)

    def take(self, index: np.ndarray | list[int]) -> "IdentityFaces":
        return IdentityFaces(self.faces[index], self.hull[index], self.eyes_mouth[index],
                             [self.sources[i] for i in index])


def _masks(points: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    hull = np.zeros((resolution, resolution), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    parts = np.zeros_like(hull)
    for part in (LEFT_EYE, RIGHT_EYE, MOUTH):
        cv2.fillConvexPoly(parts, cv2.convexHull(np.round(points[part]).astype(np.int32)), 1)
    grow = max(1, resolution // 32)
    parts = cv2.dilate(parts, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return hull, parts


def load_identity(folders: list[Path], resolution: int, holdout: float = 0.0) -> tuple[IdentityFaces, IdentityFaces]:
    """(training faces, held-out faces) of one identity from one or several facesets."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be in [0, 1)")
    train: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
    crop_sizes: dict[int, Path] = {}
    for folder in folders:
        faceset = Faceset.load(folder)
        faces = faceset.faces()
        if not faces:
            raise FacesetError(f"{folder}: the faceset holds no faces")
        size = int(faceset.settings.get("size", 0))
        crop_sizes.setdefault(size, folder)
        if len(crop_sizes) > 1:
            (s1, f1), (s2, f2) = list(crop_sizes.items())[:2]
            raise FacesetError(f"facesets of different crop sizes: {f1} has {s1} px crops, {f2} has {s2} px")
        cut = len(faces) - int(round(len(faces) * holdout))
        for i, (frame, face) in enumerate(faces):
            crop = read_crop(folder / face.file)
            if crop.shape[:2] != (size, size):
                raise FacesetError(f"{folder / face.file}: {crop.shape[1]}x{crop.shape[0]} px, the faceset says {size}")
            image = cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA) if size != resolution else crop
            points = transform_points(face.landmarks, face.matrix) * (resolution / size)
            hull, parts = _masks(points, resolution)
            (train if i < cut else held).append((image, hull, parts, f"{folder}:{frame}:{face.index}"))
    if not train:
        raise FacesetError(f"no faces left for training in {', '.join(map(str, folders))} after the hold-out")

    def stack(items: list) -> IdentityFaces:
        if not items:
            empty = np.zeros((0, resolution, resolution), np.uint8)
            return IdentityFaces(np.zeros((0, resolution, resolution, 3), np.uint8), empty, empty.copy(), [])
        images, hulls, parts, sources = zip(*items)
        return IdentityFaces(np.stack(images), np.stack(hulls), np.stack(parts), list(sources))

    return stack(train), stack(held)
