"""`deepfake doctor`: does this interpreter have what the core imports, and which device would it use.

The add-on's preferences run it to check a core interpreter (they used to carry their own list of
the core's imports, which went stale whenever the core gained a dependency). The list lives here,
beside the code that needs it; the module itself imports only the standard library until the
dependencies are known to be there, so a missing one is named rather than raised.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from core import VERSION

REQUIRED: dict[str, str] = {
    "numpy": "numpy", "cv2": "opencv-python", "torch": "torch", "dlib": "dlib-bin", "av": "av",
    "safetensors": "safetensors", "PyOpenColorIO": "opencolorio", "OpenEXR": "openexr", "c2pa": "c2pa-python",
    "face_recognition_models": "face-recognition-models", "matplotlib": "matplotlib",
}
"""Import name -> the pip package (requirements.txt pins it) of everything a step may import."""
OPTIONAL: dict[str, str] = {"face_alignment": "face-alignment (the FAN aligner; dlib is used without it)",
                            "openjd": "openjd-cli (runs farm bundles locally)"}


def missing(names: dict[str, str]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def diagnose() -> dict[str, Any]:
    """{"ok", "message", "missing", "optional_missing", "python", "version", "torch", "device", "device_reason"}."""
    report: dict[str, Any] = {"python": sys.executable, "version": VERSION, "missing": missing(REQUIRED),
                              "optional_missing": missing(OPTIONAL), "torch": None, "device": None, "device_reason": None}
    if report["missing"]:
        packages = ", ".join(REQUIRED[m] for m in report["missing"])
        return {**report, "ok": False, "message": f"{sys.executable} lacks: {packages}"}
    try:
        torch = importlib.import_module("torch")
        from core.device import choose_device

        device, reason = choose_device("auto")
    except Exception as exc:  # a broken install (an ABI mismatch, a missing shared library): say which
        return {**report, "ok": False, "message": f"{sys.executable} cannot import torch: {type(exc).__name__}: {exc}"}
    report.update(torch=torch.__version__, device=device, device_reason=reason)  # the version is in "version"
    return {**report, "ok": True,
            "message": f"{sys.executable}: core and its dependencies import; torch {torch.__version__}, "
                       f"device auto: {device}"}
