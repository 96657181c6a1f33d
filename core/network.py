"""Offline mode: the one switch that keeps the core off the network.

The core's only network use is face-alignment's first-use download of its weights (S3FD, 2DFAN4)
and the two-second reachability probe `--aligner auto` makes before choosing it. Blender's
extension rules forbid an add-on to go online when the user turned "Allow Online Access" off, so
the add-on starts every core step with DEEPFAKE_OFFLINE=1 then (`--offline` does the same from a
shell, and a farm task inherits it): `auto` takes face-alignment only when its weights are already
cached, else dlib, saying why, and an explicit `--aligner fan` without cached weights is refused
instead of downloaded. An environment variable rather than a setting because it must reach every
process a step starts.
"""
from __future__ import annotations

import os

OFFLINE_ENV = "DEEPFAKE_OFFLINE"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def go_offline() -> None:
    """This process and every one it starts stay offline."""
    os.environ[OFFLINE_ENV] = "1"
