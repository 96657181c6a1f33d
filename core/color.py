"""Colour conversions between a source's pixels and the display-referred 8-bit sRGB that the
detectors and the network see.

For now only the fixed conversion extraction needs: 16-bit integers are rescaled, float images
(EXR) are taken as scene-linear Rec.709 (Blender's default for EXR) and encoded with the sRGB
transfer function. OCIO-managed conversions for arbitrary strip colourspaces belong here too.
"""
from __future__ import annotations

import numpy as np


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The IEC 61966-2-1 sRGB encoding of linear values, clipped to [0, 1]."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def to_display_uint8(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 sRGB from a frame as a source delivers it (uint8, uint16 or float32)."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.floating):
        return np.round(linear_to_srgb(frame.astype(np.float32)) * 255.0).astype(np.uint8)
    raise TypeError(f"unsupported frame type {frame.dtype}")
