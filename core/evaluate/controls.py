"""The facesets' identities and the two controls a swap is read against: the mean-face paste (the
floor) and the resolution control (the ceiling); the package docstring (`core.evaluate`) says
what each is and why.

Both are pasted onto the source frame by the swap's own paste (`paste_face` -> `core.face_paste`):
the same alignment, hull mask, colour transfer and compositing, minus the model and the temporal
smoothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import face_paste, masks
from core.color_management import get_converter
from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR
from core.faces.align import transform_points
from core.faceset import Faceset, cached_descriptor, is_faceset, read_crop

MEAN_FACE_CROPS = 200


def identity_of(folder: Path) -> np.ndarray:
    """Mean dlib descriptor of a faceset (the faceset's own cached descriptor, as the swap uses)."""
    from core.faces.identity import FaceDescriber

    path = Path(folder).resolve()
    if not is_faceset(path):
        Faceset.load(path, check_crops=False)  # raises the faceset's own error
    return cached_descriptor(path, FaceDescriber())


def mean_face(folder: Path, max_crops: int = MEAN_FACE_CROPS) -> np.ndarray:
    """The average aligned face of a faceset: float32 RGB in [0, 1], the faceset's crop size.

    The crops are aligned to one template, so their mean is a (blurry) face in the same pose,
    which is what the control pastes: the person's colouring, glasses and face shape, no model.
    """
    picked = Faceset.load(folder).spread_faces(max_crops)
    total = None
    for _, face in picked:
        crop = read_crop(Path(folder) / face.file).astype(np.float64)
        total = crop if total is None else total + crop
    return (total / len(picked) / 255.0).astype(np.float32)


DISPLAY = "sRGB"
"""The evaluator's frames are display sRGB (uint8): the controls are pasted in that space, which
is the network's, so the paste's colour management is the identity."""


def resampled_face(frame: np.ndarray, landmarks: np.ndarray, resolution: int, size: int) -> np.ndarray | None:
    """The source's own aligned face (a size x size crop, as the swap aligns it: `face_paste.align`)
    brought down to `resolution` px with INTER_AREA and back up with INTER_CUBIC, as the swap
    resizes the crop into the network and the network's output back: what a perfect model of that
    resolution would give (float32 RGB in [0, 1]; None when the face has no crop)."""
    aligned = face_paste.align(frame, landmarks, get_converter(DISPLAY), size)
    if aligned is None:
        return None
    small = cv2.resize(aligned.crop, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def model_resolution(record: dict[str, Any]) -> tuple[int | None, str]:
    """(the resolution of the swap's model, or None; why not, "" when found): what the resolution
    control resamples through. swap.json names the model folder, whose config.json holds it (read
    alone, no weights: the folder is read-only to evaluate, and may be shared). None when there is
    no record (a clip that `deepfake swap` did not write) or the folder is gone or not a model:
    the view is then skipped, with this note in the report, rather than guessed."""
    from core.model import ModelError, load_config

    model = record.get("model")
    if not model:
        return None, "no swap record (swap.json) names the swap's model"
    try:
        return load_config(model).resolution, ""
    except ModelError as exc:
        return None, f"the swap's model cannot be read ({exc})"


def paste_face(frame: np.ndarray, landmarks: np.ndarray, face: np.ndarray, color: str = DEFAULT_COLOR,
               erode: float = masks.DEFAULT_ERODE, blur: float = masks.DEFAULT_BLUR) -> np.ndarray:
    """`face` (an aligned crop, float RGB in [0, 1]) pasted onto a display uint8 frame at the face
    with these landmarks by the swap's own paste (`core.face_paste`): the same alignment, hull
    mask, colour transfer (Poisson included) and compositing; what is missing is the model (its
    face and its learned mask) and the swap's temporal smoothing."""
    size = face.shape[0]
    converter = get_converter(DISPLAY)
    aligned = face_paste.align(frame, landmarks, converter, size)
    if aligned is None:
        return frame.copy()
    mask = masks.face_mask(transform_points(landmarks, aligned.matrix), size, erode=erode, blur=blur)
    if not mask.any():
        return frame.copy()
    return face_paste.paste(frame, aligned, np.clip(face, 0, 1).astype(np.float32), mask, COLOR_TRANSFERS[color],
                            converter)
