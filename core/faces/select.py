"""Choosing the face aligner: `--aligner fan|dlib|auto` and `--device auto|cpu|cuda`.

auto prefers face-alignment (S3FD + 2DFAN4: better landmarks, batched on the GPU) but only when
its weights are cached or downloadable; otherwise it takes the offline dlib backend at once,
so a machine without internet never waits on a download timeout. In offline mode
(`core.network`) "downloadable" is never asked: no probe, no download. Either way it logs one line
saying which backend and why. Neither torch nor face_alignment is imported for an explicit
"dlib" with an explicit device.
"""
from __future__ import annotations

from typing import Callable

from core.device import resolve_device
from core.errors import AlignerError
from core.faces.base import FaceAligner
from core.network import OFFLINE_ENV, offline

ALIGNERS = ("auto", "fan", "dlib")


def fan_weights_status(probe_timeout: float = 2.0) -> tuple[bool, str]:
    """(usable, reason): whether face-alignment's weights are cached or can be downloaded.

    Cheap: looks at files and, only when some are missing, opens one TCP connection with a short
    timeout. Does not import face_alignment.
    """
    from core.faces import fan_backend

    folder = fan_backend.weights_dir()
    missing = fan_backend.missing_weights()
    if not missing:
        return True, f"face-alignment weights are cached in {folder}"
    names = ", ".join(p.name for p in missing)
    if offline():
        return False, (f"face-alignment weights not cached in {folder} ({names} missing) and the core is offline "
                       f"({OFFLINE_ENV}=1, e.g. Blender's Allow Online Access is off): nothing is downloaded")
    if fan_backend.download_host_reachable(probe_timeout):
        return True, f"face-alignment weights {names} are not cached in {folder} but {fan_backend.DOWNLOAD_HOST} is reachable"
    return False, f"face-alignment weights not cached in {folder} ({names} missing) and {fan_backend.DOWNLOAD_HOST} is unreachable"


def choose_aligner(name: str = "auto") -> tuple[str, str]:
    """The backend `make_aligner` would build, and why: ("fan" | "dlib", reason)."""
    if name not in ALIGNERS:
        raise AlignerError(f"unknown aligner {name!r}: expected one of {', '.join(ALIGNERS)}")
    if name != "auto":
        return name, "asked for"
    import importlib.util

    if importlib.util.find_spec("face_alignment") is None:
        return "dlib", "the face-alignment package is not installed"
    usable, reason = fan_weights_status()
    return ("fan" if usable else "dlib"), reason


def make_aligner(name: str = "auto", device: str = "auto", log: Callable[[str], None] = print,
                 detector: str = "hog") -> FaceAligner:
    """Build the aligner `name` on `device`, logging one line with the choice and its reason.

    An explicit "fan" fails with AlignerError when it cannot load; "auto" then falls back to dlib
    (e.g. the host answered but the download failed). `detector` (hog | cnn) picks dlib's face
    detector; fan always uses S3FD.
    """
    choice, reason = choose_aligner(name)
    if choice == "fan":
        from core.faces.fan_backend import FanAligner

        dev = str(resolve_device(device))
        try:
            aligner: FaceAligner = FanAligner(device=dev)
        except AlignerError as exc:
            if name == "fan":
                raise
            reason = f"face-alignment failed to load: {exc}"
        else:
            log(f"aligner: fan on {dev} ({reason})")
            return aligner
    from core.faces.dlib_backend import DlibAligner

    aligner = DlibAligner(detector=detector)
    log(f"aligner: dlib with the {detector} detector ({reason})")
    return aligner
