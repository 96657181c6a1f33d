"""Landmark accuracy against human-annotated 68-point faces (../shared/faces/landmarks).

Error of a face: mean point-to-point distance over the 68 points, divided by the inter-ocular
distance (outer eye corners, points 36 and 45) of the annotation: the 300-W convention, so the
figure reads the same whatever the image size. A face the detector misses counts as an infinite
error, so a median that ignores misses cannot flatter a backend.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.faces.base import FaceAligner
from core.faces.landmarks68 import OUTER_EYE_CORNERS


@dataclass
class AnnotatedImage:
    path: Path
    faces: list[np.ndarray]  # (68, 2), 0-based pixel centres


def load_annotated(landmarks_dir: Path, human_only: bool = True) -> list[AnnotatedImage]:
    """The images of landmarks68.json with their faces; 1-based .pts points shifted to 0-based."""
    data = json.loads((landmarks_dir / "landmarks68.json").read_text())
    images = []
    for entry in data["entries"]:
        if human_only and not entry["human_annotated"]:
            continue
        offset = 1.0 if "1-based" in entry["source_format"] else 0.0
        images.append(AnnotatedImage(path=landmarks_dir.parent / entry["image"],
                                     faces=[np.asarray(f, dtype=np.float64) - offset for f in entry["faces"]]))
    return images


def normalised_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    interocular = np.linalg.norm(truth[OUTER_EYE_CORNERS[0]] - truth[OUTER_EYE_CORNERS[1]])
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / interocular)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def face_errors(aligner: FaceAligner, images: list[AnnotatedImage]) -> list[float]:
    """One error per annotated face: the detected face whose landmarks are nearest to it."""
    errors = []
    for image in images:
        found = aligner.detect([read_rgb(image.path)])[0]
        for truth in image.faces:
            candidates = [normalised_error(face.landmarks, truth) for face in found]
            errors.append(min(candidates, default=float("inf")))
    return errors
