"""The face mask of the swap: built in crop space, warped back into the frame.

The mask is built in crop space (the aligned `size` x `size` crop), from the 68 landmarks in
crop pixels and, optionally, the model's learned mask. Erosion and feathering are fractions of
the face's width, so the seam has the same look whatever the crop size; and because the crop is
a fixed fraction of the face, warping the mask back makes the seam scale with the face in the
frame too (a 1000 px face gets a 10x wider feather in frame pixels than a 100 px face).

Zeros stay zeros: the feather is a Gaussian truncated to a finite kernel and applied after an
erosion that is one kernel radius larger, so the mask's support ends exactly where `erode` puts
it; anything below 1/512 (invisible at 8 bits) is set to 0, which also removes floating-point
dust left by filtering and interpolation. The mask is warped back with bilinear interpolation
(a convex combination: no overshoot, and exactly 0 wherever its four neighbours are 0).
"""
from __future__ import annotations

import cv2
import numpy as np

from core.compositing import Box, warp_to_footprint
from core.faces.landmarks68 import BROWS, NOSE_TIP

MASK_FLOOR = 1.0 / 512
"""Mask values below this are set to exactly 0: half an 8-bit step, so it changes no 8-bit
output, and it keeps "outside the mask" a crisp, bit-identical region."""

DEFAULT_ERODE = 0.03
"""Erosion, as a fraction of the face's width: pulls the seam inside the landmark hull, off the
jaw line and the face's silhouette, where the background (not skin) would otherwise blend in."""
DEFAULT_BLUR = 0.08
"""Feather width (the 0-to-1 ramp), as a fraction of the face's width: wide enough to hide a
residual tone step, narrow enough to keep the swapped cheeks and chin."""
DEFAULT_FOREHEAD = 0.5
"""How far the brow points are lifted, as a fraction of the brow-to-nose-tip distance."""


# --------------------------------------------------------------------------------------------
# Mask (crop space)


def extend_forehead(landmarks: np.ndarray, forehead: float = DEFAULT_FOREHEAD) -> np.ndarray:
    """The 68 points with the 10 brow points lifted by `forehead` x (brows - nose tip).

    Why: the 68-point scheme stops at the brows, so a plain hull cuts across the brow ridge, where
    a tone or lighting mismatch is most visible and the new face's brows would be clipped. The
    face's thirds are about equal (hairline-brow ~ brow-nose base), so lifting by half the
    brow-to-nose distance reaches mid-forehead: flat skin for the seam, still below any hairline
    or fringe, which the model reproduces poorly and which differ between identities. The lift
    follows the face's own up direction (nose tip to brow centre), not the crop's y axis.
    """
    points = np.asarray(landmarks, dtype=np.float64).copy()
    up = points[BROWS].mean(axis=0) - points[NOSE_TIP]
    points[BROWS] += forehead * up
    return points


def face_mask(hull_points_crop: np.ndarray, size: int, learned: np.ndarray | None = None,
              erode: float = DEFAULT_ERODE, blur: float = DEFAULT_BLUR, *,
              forehead: float = DEFAULT_FOREHEAD) -> np.ndarray:
    """(size, size) float32 mask in [0, 1] for the aligned crop.

    hull_points_crop: (68, 2) landmarks in crop pixels. learned: the model's mask channel,
    (size, size) float in [0, 1], or None (resized bilinearly when it has another size).
    erode, blur: fractions of the hull's width (see DEFAULT_ERODE, DEFAULT_BLUR); the support of
    the result ends `erode` inside the hull (and inside the crop border) and rises to 1 over `blur`.

    The learned mask is combined with the hull by the minimum: each can only take area away
    (the hull bounds a learned mask that bleeds into hair or background; the learned mask cuts
    out hands, glasses rims, hair across the face), and unlike the product two partial values
    do not compound into a darker, wider edge. The hull is binary, so where the learned mask
    is 0 or 1 the two agree anyway.
    """
    points = extend_forehead(hull_points_crop, forehead)
    width = float(np.ptp(points[:, 0]))
    shift = 4  # sub-pixel vertex precision for the polygon fill
    hull = cv2.convexHull(np.round(points * (1 << shift)).astype(np.int32))
    mask_u8 = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask_u8, hull, 1, lineType=cv2.LINE_8, shift=shift)
    mask = mask_u8.astype(np.float32)
    if learned is not None:
        learned = np.asarray(learned, dtype=np.float32)
        if learned.ndim == 3:
            learned = learned[..., 0]
        if learned.shape != (size, size):
            learned = cv2.resize(learned, (size, size), interpolation=cv2.INTER_LINEAR)
        mask = np.minimum(mask, np.clip(learned, 0.0, 1.0))

    # Kernels never exceed the crop: a larger one erodes everything anyway, and this bounds the
    # memory by the crop size whatever erode and blur ask for.
    sigma = min(blur * width / 6, size)  # the ramp (kernel diameter, 6 sigma) is `blur` of the width
    radius = min(int(np.ceil(3 * sigma - 1e-6)), size) if sigma > 0 else 0
    shrink = min(max(1, round(erode * width) + radius), size)  # >= 1: the crop border is always 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * shrink + 1, 2 * shrink + 1))
    # A constant 0 border makes the crop's edge erode like the hull's: a face running off the
    # crop gets the same feather there instead of a hard cut.
    mask = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if radius > 0:
        # Truncated at 3 sigma: bounded support (`radius`), a negligible kink at its ends.
        # sigma stays fractional, so small crops keep the requested width despite integer kernels.
        mask = cv2.GaussianBlur(mask, (2 * radius + 1, 2 * radius + 1), sigmaX=sigma, sigmaY=sigma,
                                borderType=cv2.BORDER_CONSTANT)
    mask = np.clip(mask, 0.0, 1.0)
    mask[mask < MASK_FLOOR] = 0.0
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 0.0  # guaranteed above; kept explicit
    return mask.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Frame space


def mask_to_frame(mask: np.ndarray, matrix: np.ndarray, box: Box) -> np.ndarray:
    """The crop mask in the box's frame pixels: bilinear (no overshoot, bounded support),
    clipped to [0, 1], values below MASK_FLOOR set to 0. This is the final frame-space mask."""
    out = warp_to_footprint(np.asarray(mask, dtype=np.float32), matrix, box, cv2.INTER_LINEAR)
    out = np.clip(out, 0.0, 1.0)
    out[out < MASK_FLOOR] = 0.0
    return out
