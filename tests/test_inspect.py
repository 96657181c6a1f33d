"""`deepfake inspect` and `deepfake doctor`, and the `result` events the add-on reads instead of the
core's files (issue 14: the add-on holds no core file names or schemas)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

from conftest import CORE_PYTHON, ROOT, VIDEO, events_of, run_cli


def _inspect(path) -> dict:
    done = run_cli("inspect", path, "--events", "jsonl")
    assert done.returncode == 0, done.stdout + done.stderr
    return events_of(done.stdout)[-1]


def test_an_image_folder_lists_its_frames_in_the_cores_order(tmp_path):
    """The natural order the core numbers an image sequence by (f_2 before f_10), which the add-on
    used to repeat: frame n of a strip is the n-th name here."""
    for name in ("shot_10.png", "shot_2.png", "shot_1.png", ".hidden.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    described = _inspect(tmp_path)
    assert described["kind"] == "images" and described["frames"] == 3
    assert described["files"] == ["shot_1.png", "shot_2.png", "shot_10.png"]
    plain = run_cli("inspect", tmp_path)
    assert plain.returncode == 0 and "an image sequence of 3 frames (shot_1.png first)" in plain.stdout


def test_each_kind_is_named_by_its_owner(tiny_model, tmp_path):
    base = tiny_model.parent
    faceset = _inspect(base / "d18")
    assert faceset["kind"] == "faceset" and faceset["faces"] == 20 and faceset["complete"] is True
    assert faceset["source"] == str(VIDEO / "liveportrait_d18.mp4")
    model = _inspect(tiny_model)
    assert (model["kind"], model["resolution"], model["layout"], model["iteration"]) == ("model", 64, "df", 5)
    assert model["facesets_a"] == [str(base / "d18")] and model["preview"] is not None
    movie = _inspect(VIDEO / "liveportrait_d18.mp4")
    assert (movie["kind"], movie["frames"], movie["fps"]) == ("movie", 216, 30.0)
    (tmp_path / "empty").mkdir()
    assert _inspect(tmp_path / "empty")["kind"] == "empty"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert _inspect(tmp_path / "notes")["kind"] == "other"


def test_a_missing_path_and_a_broken_faceset_are_one_error_each(tmp_path, tiny_model):
    done = run_cli("inspect", tmp_path / "gone")
    assert done.returncode == 1 and done.stderr.strip() == f"error: {tmp_path / 'gone'} does not exist"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model.parent / "d18", broken)
    (broken / "alignments.json").write_text("{not json")
    done = run_cli("inspect", broken)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "alignments.json" in done.stderr


def test_the_swap_result_names_its_frames_and_flags_and_inspect_knows_the_output(tiny_model, tmp_path):
    out = tmp_path / "swap"
    done = run_cli("swap", VIDEO / "liveportrait_d18.mp4", "--model", tiny_model, "--out", out, "--start", 8,
                   "--count", 3, "--aligner", "dlib", "--device", "cpu", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    result = events_of(done.stdout)[-1]
    assert (result["first"], result["count"]) == (8, 3)
    assert result["files"] == sorted(p.name for p in out.glob("*.png"))
    assert all((out / name).is_file() for name in result["files"]) and len(result["files"]) == 3
    assert all(8 <= frame < 11 and reasons for frame, reasons in result["flagged"])
    described = _inspect(out)
    assert described["kind"] == "swap" and described["model"] == str(tiny_model.resolve())
    assert described["ranges"] == [[8, 3]] and described["files"] == result["files"]


def test_doctor_says_the_core_imports_and_names_what_is_missing(tmp_path):
    done = run_cli("doctor", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    report = events_of(done.stdout)[-1]
    assert report["ok"] is True and report["missing"] == [] and report["device"] in ("cpu", "cuda", "mps")
    assert report["message"].startswith(f"{CORE_PYTHON}: core and its dependencies import; torch ")
    # An interpreter whose path hides one dependency (a stub package named like it that is not
    # importable as it: find_spec sees nothing once the real one is masked by a None entry).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import sys\nsys.modules['dlib'] = None\n")
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import sitecustomize\n"
            "from core.doctor import diagnose\nprint(json.dumps(diagnose()))")
    done = subprocess.run([CORE_PYTHON, "-c", code, str(hook)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["missing"] == ["dlib"] and report["message"].endswith("lacks: dlib-bin")


def test_the_addons_helpers_import_and_run_without_bpy(tiny_model):
    """jobs.py, evaluation.py and core_record.py say they need no bpy: imported with bpy made
    unimportable, a Job runs `core inspect` and the evaluation lines come from a result event."""
    code = f"""
import json, sys
sys.modules["bpy"] = None  # any `import bpy` now raises ImportError
sys.path.insert(0, {str(ROOT)!r})
from blender_deepfake import core_record, evaluation, jobs
job = jobs.Job(jobs.core_command({CORE_PYTHON!r}, "inspect", [{str(tiny_model)!r}]), "inspect", env=jobs.core_env())
state = job.wait(timeout=120)
result = {{"summary": {{"identity_retrieval": {{"swap": 0.9, "source": 0.0, "control": 1.0}}}}, "target": "b",
          "counts": {{"frames": 4}}}}
print(json.dumps([state.status, state.result["kind"], evaluation.summary_lines(evaluation.compact_summary(result))[0],
                  core_record.FORMAT, "bpy" in sys.modules and sys.modules["bpy"] is not None]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd="/")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["done", "model", "Identity B: 90% of frames", 1, False]


def test_the_addon_holds_no_core_file_names():
    """What the core writes is named by the core (issue 14): none of its file names or naming
    patterns appears in the add-on's code."""
    names = ("alignments.json", "config.json", "flags.json", "report.json", "report.html", "preview.png",
             "swap.json", "state.json", "model.safetensors", "frame_{", "frame_%")
    found = [(path.name, name) for path in sorted((ROOT / "blender_deepfake").glob("*.py"))
             for name in names if name in path.read_text()]
    assert found == []
