"""Reconstruction losses: L1 plus structural dissimilarity, weighted towards the face.

The weight map is 1 inside the landmark hull, the recipe's eye/mouth weight on the eyes and mouth
(where viewers look and where a blurred swap gives itself away) and `BACKGROUND_WEIGHT` outside
the face, which the swap never shows anyway. The recipe's eye/mouth priority adds an L1 on those
pixels alone, and its detail weight an L1 on the bands of a Laplacian pyramid (a weight-free
detail term: a pixel L1 is mostly paid by the low frequencies, which a blur already matches). The
mask channel learns the landmark hull.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from core.model import FaceSwapModel
    from core.train_data import IdentityFaces

BACKGROUND_WEIGHT = 0.1
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5) of images in [0, 1],
    averaged over channels: (n, 1, h, w)."""
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device, x.dtype)
    pad = SSIM_WINDOW // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, [pad] * 4, mode="reflect"), window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim.mean(dim=1, keepdim=True)


def weight_map(hull: torch.Tensor, eyes_mouth: torch.Tensor, eye_mouth_weight: float = 3.0) -> torch.Tensor:
    """(n, 1, h, w) loss weights from the hull mask and the eye/mouth mask, both in [0, 1]."""
    return BACKGROUND_WEIGHT + (1 - BACKGROUND_WEIGHT) * hull + (eye_mouth_weight - 1) * eyes_mouth


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                        priority: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of L1 + DSSIM ((1 - SSIM) / 2), one scalar for the batch; `priority`
    (n, 1, h, w) adds an L1 weighted per pixel in the same units (the hull's weight is 1)."""
    pred, target, weights = pred.float(), target.float(), weights.float()
    l1 = (pred - target).abs().mean(dim=1, keepdim=True)
    dssim = (1 - ssim_map(pred, target)) / 2
    total = ((l1 + dssim) * weights).sum()
    if priority is not None:
        total = total + (l1 * priority.float()).sum()
    return total / weights.sum().clamp_min(1e-6)


DETAIL_LEVELS = 3  # bands at 1, 1/2 and 1/4 of the resolution: at 64 px, detail down to 16 px


def _binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """The 5-tap binomial filter (Burt and Adelson's pyramid kernel), separable, reflect-padded."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 16
    c = x.shape[1]
    x = F.conv2d(F.pad(x, [2, 2, 0, 0], mode="reflect"), k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(F.pad(x, [0, 0, 2, 2], mode="reflect"), k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def laplacian_bands(x: torch.Tensor, levels: int = DETAIL_LEVELS) -> list[torch.Tensor]:
    """The band-pass levels of x's Laplacian pyramid, finest first (the low-pass rest is left
    out: the pixel L1 already holds it)."""
    bands = []
    for _ in range(levels):
        low = _binomial_blur(x)[:, :, ::2, ::2]
        bands.append(x - F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False))
        x = low
    return bands


def detail_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                levels: int = DETAIL_LEVELS) -> torch.Tensor:
    """Mean over the pyramid's bands of their L1, weighted by the loss map brought to each band's
    size: one scalar for the batch, in the units of the pixel L1."""
    pred, target, weights = pred.float(), target.float(), weights.float()
    total = pred.new_zeros(())
    for p, t in zip(laplacian_bands(pred, levels), laplacian_bands(target, levels)):
        w = F.adaptive_avg_pool2d(weights, p.shape[-2:])
        total = total + ((p - t).abs().mean(dim=1, keepdim=True) * w).sum() / w.sum().clamp_min(1e-6)
    return total / levels


LATENT_MATCH_SCALES = (0.5, 1.0, 2.0)  # kernel widths, in units of the median pairwise distance


def latent_match_loss(code_a: torch.Tensor, code_b: torch.Tensor) -> torch.Tensor:
    """Squared maximum mean discrepancy between A's and B's codes in a batch (Gaussian kernels):
    0 when the two identities' codes are drawn from one distribution.

    A swap feeds A's code to B's decoder, which has only ever seen B's codes; where the two
    distributions lie apart, B's decoder paints something between the two people (measured: the
    hdtf swap sits 0.70 from B where B's own rebuild sits 0.53). DeepFaceLab closes that gap with
    an adversarial code discriminator ("true face"); a kernel two-sample statistic does it with no
    network, optimiser or random state of its own, so resume stays bit-identical. The kernel
    widths follow the median pairwise distance (held constant for the gradient), so shrinking
    every code cannot lower the term.
    """
    z = torch.cat([code_a.flatten(1), code_b.flatten(1)]).float()
    d2 = torch.cdist(z, z).square()
    n, m = len(code_a), len(code_b)
    off = ~torch.eye(n + m, dtype=torch.bool, device=z.device)
    scale = d2.detach()[off].median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (s * scale)) for s in LATENT_MATCH_SCALES) * off  # unbiased: no self-pairs
    return k[:n, :n].sum() / (n * (n - 1)) + k[n:, n:].sum() / (m * (m - 1)) - 2 * k[:n, n:].mean()


def mask_loss(pred_mask: torch.Tensor, hull: torch.Tensor) -> torch.Tensor:
    return (pred_mask.float() - hull.float()).abs().mean()


@torch.no_grad()
def rebuild_ssim(model: FaceSwapModel, data: IdentityFaces, identity: str, device: str = "cpu",
                 batch: int = 32) -> float:
    """Mean SSIM of faces rebuilt through their own decoder, inside the face hull."""
    model.eval()
    scores = []
    for start in range(0, len(data), batch):
        idx = np.arange(start, min(start + batch, len(data)))
        x = torch.from_numpy(data.faces[idx]).to(device).permute(0, 3, 1, 2).float() / 255
        hull = torch.from_numpy(data.hull[idx]).to(device).float().unsqueeze(1)
        rgb, _ = model(x, identity)
        s = ssim_map(rgb, x)
        scores.append(((s * hull).sum(dim=(1, 2, 3)) / hull.sum(dim=(1, 2, 3)).clamp_min(1)).cpu())
    return float(torch.cat(scores).mean())
