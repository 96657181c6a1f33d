"""Who a face is: dlib's face recognition network (a 128-d descriptor, from
face-recognition-models), used to pick the trained person among several faces in a frame and to
flag frames where the face does not look like them.

Descriptors of faces of one person lie within about 0.6 of each other (dlib's own threshold for
"same person" on LFW); the mean descriptor of a faceset stands for its person
(`core.faceset.cached_descriptor`).
"""
from __future__ import annotations

import threading

import numpy as np

from core.faces.dlib_backend import model_path

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


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
