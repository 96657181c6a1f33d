"""Landmark accuracy on the human-annotated faces of ../shared/faces/landmarks."""
from __future__ import annotations

import numpy as np

from core.faces.accuracy import face_errors, load_annotated
from core.faces.dlib_backend import DlibAligner


def test_dlib_median_error_is_at_most_5_percent_of_interocular(faces_dir):
    images = load_annotated(faces_dir / "landmarks")
    assert sum(len(image.faces) for image in images) == 10
    errors = face_errors(DlibAligner(), images)
    assert np.median(errors) <= 0.05, errors
    assert np.isfinite(errors).sum() >= 7  # the detector finds most faces (misses count as infinite)
