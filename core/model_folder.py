"""A model folder on disk: which files make one, and its readable training record.

`core.model` reads and writes the weights and `config.json` (through these names), `core.train`
writes `state.json` and the preview; everything else (swap, extract, farm, evaluate, inspect)
asks this module rather than knowing the names. Standard library only, so `deepfake inspect`
can say what a folder is without importing torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "state.json"
"""A readable copy of the training record (the checkpoint's metadata holds the authoritative one
and may be one save ahead)."""
PREVIEW = "preview.png"
FILES = (CONFIG, WEIGHTS, STATE, PREVIEW)


def config_path(folder: Path) -> Path:
    return Path(folder) / CONFIG


def weights_path(folder: Path) -> Path:
    return Path(folder) / WEIGHTS


def state_path(folder: Path) -> Path:
    return Path(folder) / STATE


def preview_path(folder: Path) -> Path:
    return Path(folder) / PREVIEW


def is_model(folder: Path) -> bool:
    """A folder with trained weights, or a config with a training record (weights being
    written): what no other output may be written into."""
    folder = Path(folder)
    return weights_path(folder).is_file() or (config_path(folder).is_file() and state_path(folder).is_file())


def has_config(folder: Path) -> bool:
    return config_path(folder).is_file()


def read_state(folder: Path) -> dict[str, Any]:
    """The readable training record ({} when absent or unreadable: callers say what they miss)."""
    try:
        state = json.loads(state_path(folder).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return state if isinstance(state, dict) else {}


def describe(folder: Path) -> dict[str, Any]:
    """What `deepfake inspect` says of a model folder (its config is validated by core.model,
    which imports torch: asked only for a folder that has one; ModelError when it is broken)."""
    from core.model import load_config

    preview = preview_path(folder)
    config = load_config(folder)  # ModelError (a DeepfakeError) when the config is not one
    state = read_state(folder)
    return {"kind": "model", "preview": str(preview) if preview.is_file() else None, "resolution": config.resolution, "layout": config.layout,
            "iteration": state.get("iteration"), "model_id": state.get("model_id"),
            "pretrain": bool(state.get("pretrain")), "init": state.get("init"),
            "facesets_a": state.get("facesets_a", []), "facesets_b": state.get("facesets_b", [])}
