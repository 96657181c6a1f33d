"""Shared fixtures. Real media come from ../shared/faces (never copied into the repository)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"
VIDEO = FACES / "video"

# bpy writes user preferences and caches: keep them out of the user's home.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bd-blender-user-"))
# The add-on finds the core through a record scripts/setup.sh writes in the user's config folder: the
# tests read (and write) their own, never the user's.
os.environ.setdefault("DEEPFAKE_CORE_RECORD", os.path.join(tempfile.mkdtemp(prefix="bd-record-"), "core.json"))
# The local signing certificate of the provenance labels (core/provenance/credentials.py): the
# tests make their own, never in the user's config folder.
os.environ.setdefault("DEEPFAKE_CREDENTIALS", os.path.join(tempfile.mkdtemp(prefix="bd-credentials-"), "credentials"))
# The core's cache of face descriptors: per test run, not the user's.
os.environ.setdefault("DEEPFAKE_CACHE", tempfile.mkdtemp(prefix="bd-cache-"))

# The interpreter that runs the core: this one, or the main environment's when the add-on tests run
# in the bpy-only environment (.venv-bpy42, Blender 4.2), as a real Blender would.
CORE_PYTHON = os.environ.get("DEEPFAKE_CORE_PYTHON") or sys.executable


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m core ...` as the add-on and a shell user run it."""
    return subprocess.run([CORE_PYTHON, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def png_image_data(data: bytes) -> bytes:
    """A PNG's bytes without its label chunks (iTXt, C2PA's caBX): what two writes of the same
    pixels share (each write signs anew: another manifest id, time and signature)."""
    out, at = bytearray(data[:8]), 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] not in (b"iTXt", b"caBX"):
            out += data[at:at + 12 + length]
        at += 12 + length
    return bytes(out)


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    assert FACES.is_dir(), f"the shared test media are missing: {FACES}"
    return FACES


def _extract_whole_clip(tmp_path_factory, name: str) -> Path:
    out = tmp_path_factory.mktemp(name) / "faceset"
    result = run_cli("extract", VIDEO / f"liveportrait_{name}.mp4", "--out", out, "--aligner", "dlib", "--events", "jsonl")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def d18_faceset(tmp_path_factory) -> Path:
    """liveportrait_d18.mp4, every frame, dlib backend: extracted once per test session."""
    return _extract_whole_clip(tmp_path_factory, "d18")


@pytest.fixture(scope="session")
def d19_faceset(tmp_path_factory) -> Path:
    """liveportrait_d19.mp4, every frame, dlib backend: extracted once per test session."""
    return _extract_whole_clip(tmp_path_factory, "d19")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, d18_faceset, d19_faceset) -> Path:
    """A small model trained briefly on d18 (A) / d19 (B) with the last 20 % held out: enough
    for the swap's mechanics, not for a sharp face (DESIGN.md, "What training takes")."""
    from core.events import Events
    from core.train import TrainSettings, train

    model_dir = tmp_path_factory.mktemp("model") / "small"
    train(TrainSettings(facesets_a=[d18_faceset], facesets_b=[d19_faceset], model_dir=model_dir, iterations=60,
                        batch_size=8, device="cpu", seed=3, holdout=0.2, save_every=10**6, preview_every=10**6),
          Events(jsonl=True, out=open(os.devnull, "w")))
    return model_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Two 20-frame facesets and 5 iterations, through the core's command line: enough for the
    add-on's swap mechanics (~30 s on 2 cores), shared by the add-on test modules."""
    base = tmp_path_factory.mktemp("tiny")
    for name in ("d18", "d19"):
        done = run_cli("extract", VIDEO / f"liveportrait_{name}.mp4", "--out", base / name, "--count", 20,
                       "--aligner", "dlib", "--events", "jsonl")
        assert done.returncode == 0, done.stderr
    done = run_cli("train", "--faceset-a", base / "d18", "--faceset-b", base / "d19", "--model", base / "model",
                   "--iterations", 5, "--batch-size", 2, "--device", "cpu", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    return base / "model"


# -- the fast layer: `pytest -m "not slow"` -------------------------------------------------------------
# Slow: whatever trains, extracts whole clips, runs the add-on in bpy or runs the core on video
# through subprocesses. What is left (alignment maths, formats and validation, colour, losses,
# events, argument parsing, masks and temporal filters on known signals) runs in well under a minute.
SLOW_FIXTURES = {"d18_faceset", "d19_faceset", "small_model", "tiny_model"}
SLOW_MODULES = {"test_addon", "test_addon_workflow", "test_addon_timing", "test_careless_use", "test_evaluate", "test_swap", "test_train",
                "test_extract", "test_faceset", "test_landmarks", "test_fan_backend", "test_farm", "test_inspect"}
SLOW_TESTS = {"test_memory_stays_flat_over_a_long_clip", "test_kill_9_while_saving_leaves_a_loadable_checkpoint",
              "test_another_preset_than_expected", "test_hamilton_tracks_restart_across_cuts",
              "test_d18_held_out_is_steadier_without_lag", "test_offline_auto_makes_no_network_attempt_and_uses_dlib",
              "test_offline_fan_without_cached_weights_is_refused_not_downloaded"}


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: trains, extracts whole clips, runs bpy or the core on video (deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        name = item.originalname if hasattr(item, "originalname") else item.name
        if (module in SLOW_MODULES or name in SLOW_TESTS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or "[standard]" in item.name or "[large]" in item.name):
            item.add_marker(pytest.mark.slow)
