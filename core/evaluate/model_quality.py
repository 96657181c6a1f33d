"""The model evaluation: how well a model rebuilds the faces its training held out (its own
--holdout split), SSIM and PSNR inside the face hull, beside the untrained model of the same
preset and seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DeepfakeError
from core.evaluate.clip import FORMAT, VERSION, WORST
from core.events import Events


def rebuild_psnr(model: Any, data: Any, identity: str, device: str = "cpu", batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per-face PSNR (dB, inside the face hull) of faces rebuilt through their own decoder, and the
    rebuilt faces (uint8). PSNR is over the hull only, like `losses.rebuild_ssim`: the decoder
    is not trained on the background, which the swap never shows."""
    import torch

    model.eval()
    psnr, rebuilt = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            idx = np.arange(start, min(start + batch, len(data)))
            x = torch.from_numpy(data.faces[idx]).to(device).permute(0, 3, 1, 2).float() / 255
            rgb, _ = model(x, identity)
            rgb = rgb.float().clamp(0, 1)
            hull = torch.from_numpy(data.hull[idx]).to(device).float().unsqueeze(1)
            mse = (((rgb - x) ** 2) * hull).sum(dim=(1, 2, 3)) / (3 * hull.sum(dim=(1, 2, 3)).clamp_min(1))
            psnr.append((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).cpu().numpy())
            rebuilt.append((rgb.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return np.concatenate(psnr), np.concatenate(rebuilt)


def evaluate_model(model_dir: str | Path, facesets_a: list[Path] | None = None, facesets_b: list[Path] | None = None,
                   events: Events | None = None, device: str = "cpu", worst: int = WORST) -> dict[str, Any]:
    """Rebuild quality on the faces the model's training held out (its own --holdout split):
    SSIM (`losses.rebuild_ssim`) and PSNR inside the face hull, per identity, beside the same
    figures for the untrained model of the same preset and seed (the control: what the
    architecture gives before learning anything)."""
    import torch

    from core.model import build_model, load_model
    from core.losses import rebuild_ssim
    from core.train_data import load_identity

    events = events or Events(jsonl=False)
    model_dir = Path(model_dir)
    model, config, _, metadata = load_model(model_dir, device=device)
    state = json.loads(metadata.get("state", "{}"))
    holdout = float(state.get("holdout", 0.0))
    if holdout <= 0:
        raise DeepfakeError(f"{model_dir} was trained without --holdout: it has no held-out faces to rebuild "
                            "(train with --holdout 0.2)")
    folders = {"a": facesets_a or [Path(p) for p in state.get("facesets_a", [])],
               "b": facesets_b or [Path(p) for p in state.get("facesets_b", [])]}
    torch.manual_seed(int(state.get("seed", 0)))  # what the trainer does before building the model
    untrained = build_model(config).to(device)
    result: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": "model", "model": str(model_dir),
                              "preset": config.preset, "resolution": config.resolution,
                              "iteration": state.get("iteration"), "seed": state.get("seed"), "holdout": holdout,
                              "identities": {}, "_thumbnails": {}}
    for step, identity in enumerate(("a", "b")):
        if not folders[identity]:
            raise DeepfakeError(f"no faceset {identity.upper()}: pass --faceset-{identity}")
        _, held = load_identity(folders[identity], config.resolution, holdout)
        if len(held) == 0:
            raise DeepfakeError(f"faceset {identity.upper()} has no held-out faces at --holdout {holdout}")
        psnr, rebuilt = rebuild_psnr(model, held, identity, device)
        psnr0, _ = rebuild_psnr(untrained, held, identity, device)
        result["identities"][identity] = {
            "facesets": [str(p) for p in folders[identity]], "faces": len(held),
            "ssim": rebuild_ssim(model, held, identity, device), "psnr": float(psnr.mean()),
            "control_ssim": rebuild_ssim(untrained, held, identity, device), "control_psnr": float(psnr0.mean()),
            "per_face_psnr": psnr.tolist(), "sources": held.sources,
        }
        order = np.argsort(psnr)[:worst]
        result["_thumbnails"][identity] = [(held.sources[i], held.faces[i], rebuilt[i]) for i in order]
        events.progress("evaluate", step + 1, 2)
    return result
