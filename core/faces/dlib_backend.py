"""Offline face aligner: dlib's HOG detector and its 68-point shape predictor.

The model files come with the `face-recognition-models` wheel. Its `__init__` imports
`pkg_resources` (gone from new setuptools), so the files are located with `find_spec` instead
of importing it.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from core.errors import AlignerError
from core.faces.base import Face


def model_path(name: str) -> Path:
    """Path of a model file shipped in face-recognition-models, without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AlignerError("the dlib aligner needs the face-recognition-models package (pip install face-recognition-models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise AlignerError(f"face-recognition-models is installed but {path} is missing")
    return path


class DlibAligner:
    """HOG detection on a downscaled copy of large frames, landmarks at full resolution.

    HOG finds faces of about 80 px and up in the image it scans, so with the default
    `detect_max_side=1280` a 1080p frame is scanned at 2/3 size and faces smaller than about
    120 source pixels are skipped: far too small to train on anyway, and scanning full 1080p
    costs twice the time. dlib releases the GIL, so frames of a batch run on a thread pool;
    its detector is not safe to share between threads (it crashed doing so), so each thread
    builds its own. The shape predictor (const evaluation, 1 s to load) is shared.
    """

    name = "dlib"

    def __init__(self, detector: str = "hog", detect_max_side: int = 1280, upsample: int = 0,
                 threads: int | None = None):
        """detector: "hog" (fast, frontal faces) or "cnn" (dlib's MMOD CNN: also finds turned,
        partly hidden and small faces, at about 2 s per 640x360 frame on a CPU)."""
        if detector not in ("hog", "cnn"):
            raise AlignerError(f"unknown dlib detector {detector!r}: expected hog or cnn")
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
            raise AlignerError(f"the dlib aligner needs dlib (pip install dlib-bin): {exc}") from exc
        self._dlib = dlib
        self.detector = detector
        self._predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
        self._cnn_path = str(model_path("mmod_human_face_detector.dat")) if detector == "cnn" else None
        self._local = threading.local()
        self.detect_max_side = detect_max_side
        self.upsample = upsample
        self._pool = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1)

    def _models(self):
        if not hasattr(self._local, "detector"):
            self._local.detector = (self._dlib.cnn_face_detection_model_v1(self._cnn_path) if self._cnn_path
                                    else self._dlib.get_frontal_face_detector())
        return self._local.detector

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        return list(self._pool.map(self._detect_one, frames))

    def landmarks_for_box(self, frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """Fit the 68 points inside a given box (source pixels)."""
        frame = np.ascontiguousarray(frame)
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(frame, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _detect_one(self, frame: np.ndarray) -> list[Face]:
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        detector = self._models()
        if self._cnn_path:
            found = detector(small, self.upsample)
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        else:
            rects, scores, _ = detector.run(small, self.upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            box = (rect.left() / scale, rect.top() / scale, rect.right() / scale, rect.bottom() / scale)
            faces.append(Face(box=box, score=float(score), landmarks=self.landmarks_for_box(frame, box)))
        return faces
