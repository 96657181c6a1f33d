"""Colour transfer for the swap: the swapped crop's colour matched to the original crop's.

Colour transfer works in crop space on float32 RGB in [0, 1] (the network's space), statistics
taken inside the mask, in Lab as OpenCV defines it (computed in numpy: see `rgb_to_lab`).
Poisson ("seamless") blending is the exception: it needs the frame, so it runs there
(`core.compositing.seamless_clone`). Which transfers a swap offers is `core.color_transfers`.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

ColorMethod = Literal["none", "mean-std", "histogram"]


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
    composite: see `core.compositing.seamless_clone`. Returns float32 RGB in [0, 1].
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
