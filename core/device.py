"""`--device auto|cuda|mps|cpu`, resolved the same way by every step.

auto takes an NVIDIA GPU (CUDA), then an Apple GPU (MPS, Apple Silicon), then the CPU, and says
which and why, because a training that silently lands on the CPU costs the user hours. The two
probes (`torch.cuda.is_available`, `torch.backends.mps.is_available`) are the only things looked
at, so the choice can be tested on any machine by faking them.

What MPS cannot do, and how the core avoids it: float64 tensors (MPS has none; the core moves only
uint8 and float32 arrays to the device, and tests/test_device.py checks that a real train and swap
create no float64 tensor), the CUDA-only speed paths (bf16/fp16 autocast with a gradient scaler,
channels_last, the batch-size probe, NCCL): they stay behind `device.type == "cuda"`; autocast on
MPS falls back to fp32 with a log line (`core.train`). Ops that MPS lacks run on the CPU rather
than failing halfway through a training: the CLI sets PYTORCH_ENABLE_MPS_FALLBACK=1 before torch
is imported (unless the user set it), and an MPS run logs that it is on.
"""
from __future__ import annotations

import os
from typing import Callable

from core.errors import DeepfakeError

DEVICES = ("auto", "cuda", "mps", "cpu")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(device: str = "auto") -> tuple[str, str]:
    """(device, reason) for a `--device` value; an asked-for device the machine lacks is a
    DeepfakeError the user can act on rather than a traceback from deep inside torch."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise DeepfakeError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "auto":
        if _cuda_available():
            return "cuda", "auto: torch sees a CUDA GPU"
        if _mps_available():
            return "mps", "auto: no CUDA GPU; torch sees an Apple GPU (MPS)"
        return "cpu", "auto: torch sees neither a CUDA GPU nor an Apple GPU (MPS)"
    if device.startswith("cuda") and not _cuda_available():
        raise DeepfakeError(f"--device {device} asked for, but torch sees no CUDA GPU "
                            "(use --device auto; a CPU-only torch needs `scripts/setup.sh --cuda`)")
    if device == "mps" and not _mps_available():
        raise DeepfakeError("--device mps asked for, but torch sees no Apple GPU (MPS needs Apple Silicon "
                            "and macOS 12.3+; use --device auto)")
    return device, "asked for"


def resolve_device(device: str = "auto", log: Callable[[str], None] | None = None):
    """The torch.device of a `--device` value; for auto, `log` gets one line with the choice and why."""
    import torch

    chosen, reason = choose_device(device)
    if log is not None and device == "auto":  # an asked-for device is no news (and no line before an error)
        log(f"device: {chosen} ({reason})")
    if chosen == "mps" and log is not None:
        fallback = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"
        log("device: ops MPS lacks " + ("run on the CPU (PYTORCH_ENABLE_MPS_FALLBACK=1)" if fallback
                                        else "fail (PYTORCH_ENABLE_MPS_FALLBACK is not 1)"))
    return torch.device(chosen)
