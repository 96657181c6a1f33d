"""The sidecar manifest of a frame sequence: `provenance.json` in the frame folder.

Why: a sequence is many files and C2PA binds a manifest to one. Each PNG frame carries its own
signed manifest, but an EXR frame can carry only a plain header label, and a reviewer handed a
folder wants one answer for the shot. The sidecar states the label once and lists every frame
with its SHA-256, so `deepfake verify FOLDER` can tell a frame changed after it was written.
Plain JSON, unsigned (the PNGs' manifests are the signed statement).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.atomic import write_atomic

NAME = "provenance.json"
KIND = "blender-deepfake sequence provenance"
FORMAT = 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read(folder: Path) -> dict[str, Any] | None:
    """The sidecar, or None when there is none or it is not ours."""
    try:
        data = json.loads((Path(folder) / NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("frames"), dict):
        return None
    return data


def digests(frames: Iterable[Path]) -> dict[str, str]:
    """Frame name -> SHA-256, computed before a writer takes the folder's lock (hashing a chunk's
    EXR frames can take a while; other chunks wait on that lock)."""
    return {p.name: sha256(p) for p in frames if p.is_file()}


def update(folder: Path, frames: dict[str, str], label: dict[str, str], signer: dict[str, object]) -> Path:
    """Record `frames` (name -> SHA-256) beside the frames already listed that are still there.
    The caller serialises writers (a swap holds the output's records lock, `label` the folder's)."""
    folder = Path(folder)
    old = read(folder) or {}
    listed = {name: digest for name, digest in (old.get("frames") or {}).items() if (folder / name).is_file()}
    listed.update(frames)
    data = {"kind": KIND, "format": FORMAT, "label": label, "signed_by": signer, "frames": dict(sorted(listed.items()))}
    path = folder / NAME
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode())
    return path
