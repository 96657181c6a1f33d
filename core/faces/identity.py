"""Who a face is: dlib's face recognition network (a 128-d descriptor, from
face-recognition-models), used to pick the trained person among several faces in a frame and to
flag frames where the face does not look like them.

Descriptors of faces of one person lie within about 0.6 of each other (dlib's own threshold for
"same person" on LFW); the mean descriptor of a faceset stands for its person.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from core.atomic import write_atomic
from core.errors import FacesetError
from core.faces.align import transform_points
from core.faces.dlib_backend import model_path
from core.faceset import ALIGNMENTS, Faceset, read_crop

SAME_PERSON = 0.6


class FaceDescriber:
    """128-d descriptors of faces given their 68 landmarks. One network per thread: dlib's
    objects are not safe to share across threads."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._path = str(model_path("dlib_face_recognition_resnet_model_v1.dat"))
        self._local = threading.local()

    def _net(self):
        if not hasattr(self._local, "net"):
            self._local.net = self._dlib.face_recognition_model_v1(self._path)
        return self._local.net

    def describe(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Descriptor of the face with these landmarks in `image` (RGB uint8)."""
        d = self._dlib
        x0, y0 = landmarks.min(axis=0)
        x1, y1 = landmarks.max(axis=0)
        rect = d.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
        shape = d.full_object_detection(rect, [d.point(int(round(x)), int(round(y))) for x, y in landmarks])
        return np.asarray(self._net().compute_face_descriptor(np.ascontiguousarray(image), shape), dtype=np.float64)


def faceset_descriptor(folder: Path, describer: FaceDescriber, max_faces: int = 40) -> np.ndarray:
    """Mean descriptor of up to `max_faces` faces spread over the faceset."""
    faceset = Faceset.load(folder)
    faces = faceset.faces()
    if not faces:
        raise FacesetError(f"{folder} holds no faces")
    pick = np.linspace(0, len(faces) - 1, min(max_faces, len(faces))).round().astype(int)
    descriptors = []
    for i in pick:
        _, face = faces[i]
        crop = read_crop(folder / face.file)
        descriptors.append(describer.describe(crop, transform_points(face.landmarks, face.matrix)))
    return np.mean(descriptors, axis=0)


def cache_folder() -> Path:
    """The user's cache for derived data ($DEEPFAKE_CACHE, else $XDG_CACHE_HOME or ~/.cache):
    never a model folder, which a farm or a shipped model keeps read-only."""
    if os.environ.get("DEEPFAKE_CACHE"):
        return Path(os.environ["DEEPFAKE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blender-deepfake"


def cached_faceset_descriptor(folder: Path, describer: FaceDescriber) -> np.ndarray:
    """faceset_descriptor, cached per faceset state (path, size and mtime of its alignments):
    a re-extracted faceset gets a new entry. A cache that cannot be written is skipped."""
    stat = (Path(folder) / ALIGNMENTS).stat()
    key = hashlib.sha256(json.dumps([str(Path(folder).resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()
    path = cache_folder() / "descriptors" / f"{key[:32]}.json"
    try:
        value = json.loads(path.read_text())
        if isinstance(value, list) and len(value) == 128 and all(isinstance(v, float) for v in value):
            return np.asarray(value)
    except (OSError, ValueError):
        pass
    descriptor = faceset_descriptor(folder, describer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(descriptor.tolist()).encode(), durable=False)
    except OSError:
        pass
    return descriptor


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
