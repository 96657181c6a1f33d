"""Masks, colour transfer and compositing for the swap step.

Where each piece works, and why:
- The mask is built in crop space (the aligned `size` x `size` crop), from the 68 landmarks in
  crop pixels and, optionally, the model's learned mask. Erosion and feathering are fractions of
  the face's width, so the seam has the same look whatever the crop size; and because the crop is
  a fixed fraction of the face, warping the mask back makes the seam scale with the face in the
  frame too (a 1000 px face gets a 10x wider feather in frame pixels than a 100 px face).
- Colour transfer works in crop space on float32 RGB in [0, 1] (the network's space), statistics
  taken inside the mask, in Lab as OpenCV defines it (computed in numpy: see `rgb_to_lab`).
  Poisson ("seamless") blending is the exception: it needs the frame, so it runs there.
- Compositing works in frame space, in the source's own dtype and colourspace, and only inside the
  crop's footprint (`crop_footprint`): a 4K frame is copied once and touched only where the face
  is. Where the final mask is 0 the output pixel is the input pixel, copied, never recomputed, so
  everything the swap does not cover comes back bit-identical (DESIGN.md, "Colour").

Zeros stay zeros: the feather is a Gaussian truncated to a finite kernel and applied after an
erosion that is one kernel radius larger, so the mask's support ends exactly where `erode` puts
it; anything below 1/512 (invisible at 8 bits) is set to 0, which also removes floating-point
dust left by filtering and interpolation. The mask is warped back with bilinear interpolation
(a convex combination: no overshoot, and exactly 0 wherever its four neighbours are 0).
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from core.faces.align import invert
from core.faces.landmarks68 import BROWS, NOSE_TIP

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in frame pixels, end exclusive: frame[y0:y1, x0:x1]."""

ColorMethod = Literal["none", "mean-std", "histogram"]

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
# Colour transfer (crop space, float32 RGB in [0, 1])


# OpenCV's float Lab definition (COLOR_RGB2Lab on float32): sRGB companding, its sRGB->XYZ
# matrix, D65 white, L in 0..100, a and b about -127..127. Computed in numpy because OpenCV's
# float RGB->Lab goes through interpolated lookup tables: it strays from the formula by ~0.08 on
# average (up to ~0.5 in a), and an RGB->Lab->RGB->Lab round trip of a face crop moved the
# b mean by ~0.02 before anything was matched. Here the two directions are inverses of each
# other up to float32 rounding (~1e-5), and cost ~5 ms each on a 256 px crop.
_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])
_RGB2XYZN = (_RGB2XYZ / _WHITE[:, None]).astype(np.float32)  # XYZ normalised by the white point
_XYZN2RGB = np.linalg.inv(_RGB2XYZ / _WHITE[:, None]).astype(np.float32)
_EPS, _KAPPA = np.float32(0.008856), np.float32(903.3)  # the CIE constants as OpenCV writes them
_LAB = np.array([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]], np.float32)
_LAB_INV = np.linalg.inv(_LAB.astype(np.float64)).astype(np.float32)
_LAB_OFFSET = np.array([-16.0, 0.0, 0.0], np.float32)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (clamped, like OpenCV) -> Lab, float32, same layout."""
    rgb = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    low = rgb <= 0.04045
    linear = np.power((rgb + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
    linear[low] = rgb[low] / np.float32(12.92)
    xyz = linear @ _RGB2XYZN.T
    f = np.cbrt(xyz)
    low = xyz <= _EPS
    f[low] = (_KAPPA * xyz[low] + 16) / 116
    return f @ _LAB.T + _LAB_OFFSET


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Lab -> RGB float32, the inverse of `rgb_to_lab`, clipped to [0, 1]."""
    f = (np.asarray(lab, dtype=np.float32) - _LAB_OFFSET) @ _LAB_INV.T
    xyz = f ** 3
    low = xyz <= _EPS
    xyz[low] = (116 * f[low] - 16) / _KAPPA
    linear = np.clip(xyz @ _XYZN2RGB.T, 0.0, 1.0)
    low = linear <= 0.0031308
    rgb = np.float32(1.055) * np.power(linear, np.float32(1 / 2.4)) - np.float32(0.055)
    rgb[low] = linear[low] * np.float32(12.92)
    return np.clip(rgb, 0.0, 1.0)


def _weighted_stats(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = np.asarray(mask, dtype=np.float32).reshape(-1)
    inside = np.flatnonzero(weights > 0)
    if inside.size == 0:
        raise ValueError("the colour mask is empty")
    w = weights[inside].astype(np.float64)
    values = lab.reshape(-1, 3)[inside].astype(np.float64)
    total = w.sum()
    mean = w @ values / total
    values -= mean
    std = np.sqrt(w @ (values * values) / total)
    return np.concatenate([mean, std])


def lab_stats(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(6,) float64: mean L, a, b then std L, a, b, weighted by `mask`.

    Lab as OpenCV defines it for float RGB in [0, 1] (see `rgb_to_lab`); input outside [0, 1]
    is clamped, as OpenCV does. Kept as a plain vector so the caller can smooth it over time
    (DESIGN.md: colour flicker is the known weakness of every tool).
    """
    return _weighted_stats(rgb_to_lab(image), mask)


def _match_lab(lab: np.ndarray, image_stats: np.ndarray, target_stats: np.ndarray) -> np.ndarray:
    """Reinhard transfer: each Lab channel shifted and scaled from image_stats to target_stats.

    The stats come in separately so a caller can pass time-smoothed target statistics: the
    result then has exactly the smoothed stats, frame after frame. Output clipped to [0, 1], so
    a target far out of gamut is met only approximately; a channel with (near) zero spread is
    only shifted.
    """
    image_stats = np.asarray(image_stats, dtype=np.float64)
    target_stats = np.asarray(target_stats, dtype=np.float64)
    src_std = image_stats[3:]
    scale = np.where(src_std > 1e-6, target_stats[3:] / np.maximum(src_std, 1e-6), 1.0)
    offset = target_stats[:3] - image_stats[:3] * scale
    return lab_to_rgb(lab * scale.astype(np.float32) + offset.astype(np.float32))


def _weighted_cdf(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (ascending) and their mid-point weighted CDF in (0, 1)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    w = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(uniq))
    cdf = np.cumsum(w) - 0.5 * w
    return uniq, cdf / w.sum()


def match_histogram(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel CDF matching in Lab of `image` to `reference`, both measured inside `mask`.

    A small numpy weighted CDF match rather than skimage.exposure.match_histograms: skimage has no
    mask or weights (we would extract the masked pixels and still need the mapping for the rest),
    and core must run inside Blender's Python, where scikit-image is not installed. Weighted by
    the soft mask so the feather counts less than the face's centre. Lab rather than RGB so the
    lightness is matched without twisting hue. The mapping is applied to every pixel of the crop
    (the mask decides later what shows); values beyond the masked range map to the end values.
    """
    weights = np.asarray(mask, dtype=np.float64).reshape(-1)
    inside = weights > 0
    if not inside.any():
        raise ValueError("match_histogram: the mask is empty")
    lab = rgb_to_lab(image)
    ref = rgb_to_lab(reference).reshape(-1, 3)[inside]
    flat = lab.reshape(-1, 3)
    out = np.empty_like(lab)
    for c in range(3):
        src_values, src_cdf = _weighted_cdf(flat[inside, c], weights[inside])
        ref_values, ref_cdf = _weighted_cdf(ref[:, c], weights[inside])
        quantile = np.interp(flat[:, c], src_values, src_cdf)
        out[..., c] = np.interp(quantile, ref_cdf, ref_values).reshape(lab.shape[:2])
    return lab_to_rgb(out)


def transfer_color(method: ColorMethod, swapped: np.ndarray, original: np.ndarray, mask: np.ndarray,
                   stats_override: np.ndarray | None = None) -> np.ndarray:
    """The swapped crop with its colour matched to the original crop inside the mask.

    method: "none", "mean-std" (Reinhard in Lab; stats_override, if given, is the (6,) target
    stats to use instead of the original's: the time-smoothed ones) or "histogram" (CDF match;
    stats_override does not apply). Poisson "seamless" blending works in frame space, on the
    composite: see `seamless_clone`. Returns float32 RGB in [0, 1].
    """
    swapped = np.asarray(swapped, dtype=np.float32)
    if method == "none":
        return swapped
    if method == "mean-std":
        target = lab_stats(original, mask) if stats_override is None else stats_override
        lab = rgb_to_lab(swapped)  # converted once: for its stats and for the transfer
        return _match_lab(lab, _weighted_stats(lab, mask), target)
    if method == "histogram":
        if stats_override is not None:
            raise ValueError("stats_override applies to mean-std only")
        return match_histogram(swapped, original, mask)
    raise ValueError(f"unknown colour transfer {method!r}: expected none, mean-std or histogram")


# --------------------------------------------------------------------------------------------
# Frame space


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


def mask_to_frame(mask: np.ndarray, matrix: np.ndarray, box: Box) -> np.ndarray:
    """The crop mask in the box's frame pixels: bilinear (no overshoot, bounded support),
    clipped to [0, 1], values below MASK_FLOOR set to 0. This is the final frame-space mask."""
    out = warp_to_footprint(np.asarray(mask, dtype=np.float32), matrix, box, cv2.INTER_LINEAR)
    out = np.clip(out, 0.0, 1.0)
    out[out < MASK_FLOOR] = 0.0
    return out


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
