"""Putting a face into a frame: the crop's footprint, warping back, compositing, overlays and
Poisson blending.

Compositing works in frame space, in the source's own dtype and colourspace, and only inside the
crop's footprint (`crop_footprint`): a 4K frame is copied once and touched only where the face
is. Where the final mask is 0 the output pixel is the input pixel, copied, never recomputed, so
everything the swap does not cover comes back bit-identical (DESIGN.md, "Colour"). The mask
itself is `core.masks`' (made in crop space, warped back by `masks.mask_to_frame`); the face's
colour is matched in crop space first (`core.color_match`), except for Poisson ("seamless")
blending, which needs the frame, so it runs here (`seamless_clone`).
"""
from __future__ import annotations

import cv2
import numpy as np

from core.faces.align import invert

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in frame pixels, end exclusive: frame[y0:y1, x0:x1]."""


def crop_footprint(matrix: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> Box:
    """Integer bounds (x0, y0, x1, y1), end exclusive, of everything a warped-back crop can touch.

    matrix: the 2x3 source -> crop alignment matrix. The crop's corners are taken 2 px beyond its
    pixel centres (the reach of bicubic interpolation), mapped to the frame, rounded outwards and
    clipped to the frame. May be empty (x0 == x1) when the face is entirely outside.
    """
    h, w = frame_shape[:2]
    lo, hi = -2.0, size + 1.0
    corners = np.array([[lo, lo], [hi, lo], [lo, hi], [hi, hi]])
    back = invert(matrix)
    pts = corners @ back[:, :2].T + back[:, 2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, x1 = int(np.clip(x0, 0, w)), int(np.clip(x1, 0, w))
    y0, y1 = int(np.clip(y0, 0, h)), int(np.clip(y1, 0, h))
    return x0, y0, max(x0, x1), max(y0, y1)


def footprint_matrix(matrix: np.ndarray, box: Box) -> np.ndarray:
    """The source -> crop matrix re-based so that source pixel (0, 0) is the box's corner."""
    m = np.asarray(matrix, dtype=np.float64).copy()
    m[:, 2] += m[:, :2] @ np.array([box[0], box[1]], dtype=np.float64)
    return m


def warp_to_footprint(crop: np.ndarray, matrix: np.ndarray, box: Box,
                      interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """A crop (face or mask) warped back into the box only, zero outside the crop."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:  # OpenCV would read an empty size as "the crop's size"
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0), *crop.shape[2:]), crop.dtype)
    return cv2.warpAffine(crop, footprint_matrix(matrix, box), (x1 - x0, y1 - y0),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def code_scale(dtype: np.dtype | type) -> float:
    """What 1.0 means in a frame of this dtype: 255 (uint8), 65535 (uint16), 1 (float)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(f"unsupported frame type {dtype}: expected uint8, uint16 or float")


def composite(frame: np.ndarray, face_in_frame: np.ndarray, mask_in_frame: np.ndarray, *,
              box: Box | None = None) -> np.ndarray:
    """frame * (1 - m) + face * m, as a new array of the frame's dtype.

    face_in_frame: float32, the frame's colourspace, normalised code values (frame / 255 for
    uint8, / 65535 for uint16, as-is for float frames, which may hold scene-linear values > 1).
    mask_in_frame: float32 in [0, 1]. Both frame-sized, or the box's size when `box` is given
    (the crop's footprint: only that region is read and written). Only pixels with m > 0 are
    computed; every other pixel is the input's, copied bit for bit. Integer frames are rounded
    and clipped; float frames are not clipped (HDR stays HDR). A frame with one channel more than
    the face (RGBA) keeps its alpha.
    """
    out = frame.copy()
    if box is None:
        box = (0, 0, frame.shape[1], frame.shape[0])
    x0, y0, x1, y1 = box
    mask = np.asarray(mask_in_frame, dtype=np.float32)
    if mask.ndim == 3:
        mask = mask[..., 0]
    face = np.asarray(face_in_frame, dtype=np.float32)
    if face.ndim == 2:
        face = face[..., None]
    if mask.shape != (y1 - y0, x1 - x0) or face.shape[:2] != mask.shape:
        raise ValueError(f"composite: face {face.shape[:2]} and mask {mask.shape} must match the region "
                         f"{(y1 - y0, x1 - x0)}")
    inside = (mask > 0).astype(np.uint8)
    if not inside.any():
        return out
    # Only the mask's bounding rectangle is computed (about half the crop's footprint), densely
    # (fast), and only its pixels with m > 0 are written: the others are never touched.
    bx, by, bw, bh = cv2.boundingRect(inside)
    m = mask[by:by + bh, bx:bx + bw, None]
    sel = inside[by:by + bh, bx:bx + bw, None].astype(bool)
    target = out[y0 + by:y0 + by + bh, x0 + bx:x0 + bx + bw]
    if target.ndim == 2:
        target = target[..., None]
    channels = face.shape[2]
    target = target[..., :channels]  # a view: an alpha channel beyond the face's stays as is
    scale = np.float32(code_scale(frame.dtype))
    blended = target.astype(np.float32) * (1 - m) + face[by:by + bh, bx:bx + bw] * (m * scale)
    if np.issubdtype(frame.dtype, np.integer):
        blended = np.clip(np.rint(blended, out=blended), 0, scale, out=blended)
    np.copyto(target, blended.astype(frame.dtype), where=np.broadcast_to(sel, target.shape))
    return out


def overlay_rgba(face_in_frame: np.ndarray, mask_in_frame: np.ndarray, dtype: np.dtype | type, *,
                 premultiplied: bool = False, box: Box | None = None,
                 frame_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An RGBA face layer for the VSE's Alpha Over, in `dtype` (uint8 / uint16 PNG, float EXR).

    Straight alpha by default: PNG stores straight (unassociated) alpha by specification, and
    Blender's image strips default to alpha_mode 'STRAIGHT'; the add-on should set that mode on
    the strip it creates. premultiplied=True gives associated alpha (OpenEXR's convention), to
    be paired with alpha_mode 'PREMUL'. RGB is 0 wherever alpha is 0. face_in_frame uses the
    same normalised values as `composite`. With `box` and `frame_shape` the layer is returned at
    frame size, transparent outside the box.
    """
    dtype = np.dtype(dtype)
    scale = np.float32(code_scale(dtype))
    mask = np.asarray(mask_in_frame, dtype=np.float32)
    if mask.ndim == 3:
        mask = mask[..., 0]
    face = np.asarray(face_in_frame, dtype=np.float32)[..., :3]
    alpha = mask[..., None]
    rgb = face * alpha if premultiplied else np.where(alpha > 0, face, 0.0)
    layer = np.concatenate([rgb, alpha], axis=-1) * scale
    if np.issubdtype(dtype, np.integer):
        layer = np.clip(np.rint(layer), 0, scale)
    layer = layer.astype(dtype)
    if box is None:
        return layer
    if frame_shape is None:
        raise ValueError("overlay_rgba: box needs frame_shape")
    full = np.zeros((*frame_shape[:2], 4), dtype)
    x0, y0, x1, y1 = box
    full[y0:y1, x0:x1] = layer
    return full


def seamless_clone(frame: np.ndarray, face_in_frame: np.ndarray, mask_in_frame: np.ndarray, *,
                   box: Box | None = None) -> np.ndarray:
    """Poisson blending (cv2.seamlessClone, NORMAL_CLONE) of the face into a uint8 frame, then the
    feathered composite of that result through the mask.

    Limits: OpenCV's implementation is 8-bit only (TypeError for other frames; use mean-std or
    histogram there). It keeps the face's gradients but re-solves its colours from the frame's
    pixels on the mask boundary, so it changes every pixel inside the mask's support, not just
    the seam: a dark background or hair on the boundary pulls the face's tone with it, and since
    the boundary changes from frame to frame it can flicker. The final feathered composite keeps
    the rule that pixels where the mask is 0 are bit-identical. Cost grows with the mask's area
    (a Poisson solve per frame), which is why it runs on the footprint only.
    """
    if frame.dtype != np.uint8:
        raise TypeError(f"seamless blending needs a uint8 frame (OpenCV's seamlessClone is 8-bit), got {frame.dtype}")
    if box is None:
        box = (0, 0, frame.shape[1], frame.shape[0])
    x0, y0, x1, y1 = box
    region = np.ascontiguousarray(frame[y0:y1, x0:x1])
    mask = np.asarray(mask_in_frame, dtype=np.float32)
    binary = (mask > 0).astype(np.uint8) * 255
    # seamlessClone zeroes the mask's 1 px border itself, then centres the mask's bounding box
    # on `p`; do the same here so the face lands exactly where it is (no shift).
    binary[0, :] = binary[-1, :] = binary[:, 0] = binary[:, -1] = 0
    bx, by, bw, bh = cv2.boundingRect(binary)
    if bw < 3 or bh < 3:
        return frame.copy()
    face_u8 = np.clip(np.rint(np.asarray(face_in_frame, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    cloned = cv2.seamlessClone(np.ascontiguousarray(face_u8[..., :3]), region[..., :3].copy(), binary,
                               (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
    return composite(frame, cloned.astype(np.float32) / 255, mask, box=box)
