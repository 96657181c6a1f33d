"""`--device auto|cpu|cuda`, resolved the same way by every step."""
from __future__ import annotations

from core.errors import DeepfakeError


def resolve_device(device: str = "auto"):
    """"auto" -> CUDA when torch sees a GPU, else the CPU; "cuda" without a GPU is an error the
    user can act on rather than a traceback from deep inside torch."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError("--device cuda asked for, but torch sees no CUDA GPU (use --device cpu)")
    return torch.device(device)
