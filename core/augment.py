"""Training augmentation on batches of tensors, on whatever device the batch lives on.

Everything is one `grid_sample` per batch: on CUDA the GPU never waits for a CPU worker, and on
the CPU it costs a few milliseconds. All randomness comes from the caller's generator, so a
resumed run draws exactly what an uninterrupted run would.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    rotation_deg: float = 10.0
    scale: float = 0.05
    shift: float = 0.05
    flip: bool = True
    warp: float = 0.04  # std of the random warp's control-point offsets, in units of half the crop
    warp_points: int = 5  # control points per side of the smooth warp grid
    brightness: float = 0.08
    contrast: float = 0.10
    saturation: float = 0.10
    # Largest slope of a random left-to-right brightness ramp on the encoder's input only (the
    # target keeps its light), as a fraction of brightness per half crop; 0: none. Meant to make
    # the side a face is lit from a poor cue for the encoder, so that B's decoder reads the head
    # turn: two clips lit from one side made the swap paint B's unmirrored turn (docs/TRAINING.md).
    light_ramp: float = 0.0


def _uniform(n: int, spread: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * spread


def random_affine_grid(n: int, size: int, settings: AugmentSettings, generator: torch.Generator,
                       device: torch.device) -> torch.Tensor:
    """Sampling grids for a small random rotation, scale, shift and optional mirror per sample."""
    angle = torch.deg2rad(_uniform(n, settings.rotation_deg, generator, device))
    scale = 1 + _uniform(n, settings.scale, generator, device)
    shift = _uniform(2 * n, settings.shift * 2, generator, device).reshape(n, 2)
    mirror = torch.ones(n, device=device)
    if settings.flip:
        mirror = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], dim=1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], dim=1)], dim=1)
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


def random_warp_offsets(n: int, size: int, settings: AugmentSettings, generator: torch.Generator,
                        device: torch.device) -> torch.Tensor:
    """A smooth random displacement field (n, size, size, 2): coarse Gaussian offsets at a few
    control points, upsampled bicubically. It moves features by a few pixels without tearing,
    so the encoder must learn the face, not the exact pixel layout of each frame."""
    coarse = torch.randn(n, 2, settings.warp_points, settings.warp_points, generator=generator, device=device)
    coarse = coarse * settings.warp
    coarse[:, :, [0, -1], :] = 0  # keep the border still so no edge pixels are pulled in
    coarse[:, :, :, [0, -1]] = 0
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def draw_colour_jitter(n: int, settings: AugmentSettings, generator: torch.Generator,
                       device: torch.device) -> torch.Tensor:
    """(n, 3) per-sample brightness offset, contrast and saturation factors."""
    return torch.stack([_uniform(n, settings.brightness, generator, device),
                        1 + _uniform(n, settings.contrast, generator, device),
                        1 + _uniform(n, settings.saturation, generator, device)], dim=1)


def apply_colour_jitter(images: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
    brightness, contrast, saturation = (jitter[:, i].view(-1, 1, 1, 1) for i in range(3))
    luma = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    grey = (images * luma).sum(1, keepdim=True)
    images = grey + (images - grey) * saturation
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean + brightness).clamp(0, 1)


def apply_light_ramp(images: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """Multiply each image (n, 3, s, s) by 1 + slope * x, x from -1 (left edge) to 1 (right edge)."""
    x = torch.linspace(-1, 1, images.shape[-1], device=images.device, dtype=images.dtype).view(1, 1, 1, -1)
    return (images * (1 + slopes.view(-1, 1, 1, 1).to(images.dtype) * x)).clamp(0, 1)


def augment(faces: torch.Tensor, extras: torch.Tensor, settings: AugmentSettings,
            generator: torch.Generator, warp: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(warped input, target, target extras) from faces (n, 3, s, s) in [0, 1] and per-face maps
    (n, k, s, s) such as the landmark mask and loss weights.

    Input and target share the affine jitter and the colour jitter; only the input is warped,
    so the network learns to undo the warp and rebuild the un-warped face. `warp=False` feeds
    the target itself (a recipe's unwarped steps). The light ramp, drawn last so that settings
    without one draw what they always drew, is put on the input only.
    """
    n, _, size, _ = faces.shape
    device = faces.device
    grid = random_affine_grid(n, size, settings, generator, device)
    stacked = torch.cat([faces, extras], dim=1)
    target_all = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border", align_corners=False)
    target, target_extras = target_all[:, :3], target_all[:, 3:]
    if warp:
        warped_grid = grid + random_warp_offsets(n, size, settings, generator, device)
        warped = F.grid_sample(faces, warped_grid, mode="bilinear", padding_mode="border", align_corners=False)
    else:
        warped = target
    jitter = draw_colour_jitter(n, settings, generator, device)
    inputs = apply_colour_jitter(warped, jitter)
    if settings.light_ramp > 0:
        inputs = apply_light_ramp(inputs, _uniform(n, settings.light_ramp, generator, device))
    return inputs, apply_colour_jitter(target, jitter), target_extras
