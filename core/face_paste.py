"""A face into a frame and back: the aligned crop the network sees, and the paste of a face (the
model's output, or a control's stand-in) through a mask into the frame.

The swap and the evaluation's controls both call these, so a control differs from the swap only
by what it pastes (the mean face, the source's own face resampled) and not by how: the same
footprint-only alignment, colour management (`core.color_management`), colour transfer
(`core.color_transfers`, with Poisson blending where the transfer asks for it) and compositing.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.color_management import ColorConverter, frame_to_network
from core.color_match import transfer_color
from core.color_transfers import ColorTransfer
from core.compositing import (Box, composite, crop_footprint, footprint_matrix, overlay_rgba, seamless_clone,
                              warp_to_footprint)
from core.faces.align import CROP, alignment_matrix
from core.masks import mask_to_frame


@dataclass
class AlignedFace:
    matrix: np.ndarray  # 2x3, frame -> crop pixels
    box: Box            # the crop's footprint in the frame
    crop: np.ndarray    # size x size float32 network sRGB in [0, 1]


def align(frame: np.ndarray, landmarks: np.ndarray, converter: ColorConverter, size: int = CROP) -> AlignedFace | None:
    """The aligned crop of the face with these landmarks; only the crop's footprint is converted
    and warped (cubic, edges replicated). None when the landmarks cannot make a crop (all on one
    point, absurd sizes: a hand-edited or foreign alignments file) or its footprint is empty."""
    matrix = alignment_matrix(landmarks, size)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))) if np.isfinite(matrix).all() else 0.0
    if not 1e-3 < scale < 1e3:
        return None
    box = crop_footprint(matrix, size, frame.shape)
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    region = frame_to_network(frame[y0:y1, x0:x1, :3], converter)
    crop = cv2.warpAffine(region, footprint_matrix(matrix, box), (size, size),
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(matrix, box, crop)


def paste(frame: np.ndarray, aligned: AlignedFace, face: np.ndarray, mask: np.ndarray, transfer: ColorTransfer,
          converter: ColorConverter, mode: str = "composite", layer_dtype: np.dtype | type | None = None,
          stats: tuple[np.ndarray, np.ndarray] | None = None, encode_display: bool = False) -> np.ndarray:
    """`face` (float32 network sRGB in [0, 1], the crop's size) colour-matched to the crop, warped
    back and laid into `frame` through `mask` (the crop's mask in [0, 1]).

    mode "composite" gives the whole frame (Poisson blended when the transfer says so); "overlay"
    an RGBA layer of `layer_dtype`. `stats` replaces the crop's own Lab statistics for mean-std
    (the swap's time-smoothed ones). `encode_display`: the frame is a float (linear) source written
    as display sRGB (a PNG of an EXR plate), so the result is encoded, and an overlay stays sRGB.
    """
    if transfer.crop == "mean-std" and stats is not None:
        face = transfer_color("mean-std", face, aligned.crop, mask, stats_override=stats)
    elif transfer.crop != "none":
        face = transfer_color(transfer.crop, face, aligned.crop, mask)
    face_net = warp_to_footprint(np.ascontiguousarray(face, dtype=np.float32), aligned.matrix, aligned.box)
    mask_frame = mask_to_frame(mask, aligned.matrix, aligned.box)
    if mode == "overlay" and encode_display:  # an sRGB layer over a linear plate; the sink sets the depth
        return overlay_rgba(face_net, mask_frame, np.float32, box=aligned.box, frame_shape=frame.shape)
    face_src = converter.from_network(face_net) if not converter.is_identity else face_net
    if mode == "overlay":
        return overlay_rgba(face_src, mask_frame, layer_dtype or frame.dtype, box=aligned.box, frame_shape=frame.shape)
    if transfer.poisson:
        return seamless_clone(frame, face_src, mask_frame, box=aligned.box)
    composed = composite(frame, face_src, mask_frame, box=aligned.box)
    return frame_to_network(composed[..., :3], converter) if encode_display else composed
