"""Shots split into chunks (a render farm's tasks, a resumed run) give the frames of one whole
swap; the Open Job Description job runs them for real with `openjd run`; the Flamenco job type
compiles to the same commands; the movie is assembled from the chunks' frames."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import ROOT, VIDEO, events_of, run_cli
from core.farm import FLAMENCO_JOB_TYPE, TEMPLATE

D18 = VIDEO / "liveportrait_d18.mp4"
SHOT = 120  # d18's frames 0..119 (of 216): three chunks of 50, two of them with a full pre-roll
OPENJD = Path(sys.executable).with_name("openjd")


def _png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int16)


def _largest_difference(a: Path, b: Path, frames: range) -> int:
    """The largest difference of any channel of any frame between two frame folders (levels)."""
    return max(int(np.abs(_png(a / f"frame_{i:06d}.png") - _png(b / f"frame_{i:06d}.png")).max()) for i in frames)


def _flags(folder: Path) -> list:
    return json.loads((folder / "flags.json").read_text())["flags"]


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = float(np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b)]))
    return 10 * np.log10(255 ** 2 / mse)


def _decoded(movie: Path) -> list[np.ndarray]:
    with av.open(str(movie)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def whole(tmp_path_factory, small_model) -> Path:
    """The reference: d18's whole shot swapped by one local `deepfake swap`."""
    out = tmp_path_factory.mktemp("whole") / "frames"
    done = run_cli("swap", D18, "--model", small_model, "--out", out, "--count", SHOT, "--aligner", "dlib",
                   "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out


def _openjd(params: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(OPENJD), "run", str(TEMPLATE), "--step", "Assemble", "--run-dependencies",
                           "-p", json.dumps(params), *extra], capture_output=True, text=True, timeout=1800)


def test_openjd_job_in_chunks_equals_one_local_swap(tmp_path, small_model, whole):
    """The OpenJD template run by `openjd run`: d18's shot in chunks of 50 (0-49, 50-99, 100-119),
    each its own process with its pre-roll, all into one folder, then the movie assembled.
    Frames within 1 level of the whole swap's, the same flags, and the movie of a local swap
    to mp4."""
    out, movie = tmp_path / "farm", tmp_path / "farm.mp4"
    params = {"Source": str(D18), "Model": str(small_model), "Output": str(out), "Movie": str(movie),
              "FrameStart": 0, "FrameEnd": SHOT - 1, "ChunkSize": 50, "CorePython": sys.executable,
              "Aligner": "dlib", "Device": "cpu"}
    job = _openjd(params)
    assert job.returncode == 0, job.stdout[-3000:]
    assert "Chunks run: 4" in job.stdout  # three swap tasks and the assembly
    assert job.stdout.count("pre-roll: 47 frames before frame") == 2  # every chunk but the first warmed up
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:06d}.png" for i in range(SHOT)]
    assert _largest_difference(whole, out, range(SHOT)) <= 1
    assert _flags(out) == _flags(whole)
    record = json.loads((out / "swap.json").read_text())
    assert record["ranges"] == [[0, SHOT]]  # the three chunks' records combined
    local = tmp_path / "local.mp4"
    done = run_cli("swap", D18, "--model", small_model, "--out", local, "--format", "mp4", "--count", SHOT,
                   "--aligner", "dlib", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    # Two H.264 encodes of frames that differ by a level here and there differ by the encoder's
    # noise, not bit for bit: the assembled movie must be exactly as faithful to the whole swap's
    # frames as the local movie is (45.09 dB for both at CRF 12, measured), and close to it.
    assembled, reference = _decoded(movie), _decoded(local)
    frames = [cv2.cvtColor(_png(whole / f"frame_{i:06d}.png").astype(np.uint8), cv2.COLOR_BGR2RGB).astype(np.int16)
              for i in range(SHOT)]
    assert len(assembled) == len(reference) == SHOT
    assert _psnr(assembled, frames) == pytest.approx(_psnr(reference, frames), abs=0.01)
    assert _psnr(assembled, frames) > 40 and _psnr(assembled, reference) > 45
    with av.open(str(movie)) as c, av.open(str(D18)) as s:
        assert float(c.streams.video[0].average_rate) == pytest.approx(float(s.streams.video[0].average_rate))
        assert c.streams.audio and c.streams.audio[0].codec_context.name == s.streams.audio[0].codec_context.name
        sound = sum(p.size for p in c.demux(c.streams.audio[0]))
        whole_clip = sum(p.size for p in s.demux(s.streams.audio[0]))
        assert 0.9 * whole_clip * SHOT / 216 < sound < 1.1 * whole_clip * SHOT / 216  # the shot's stretch of sound
    assert json.loads(movie.with_suffix(".flags.json").read_text())["flags"] == _flags(whole)


def test_a_failing_chunk_fails_the_job_with_the_core_error(tmp_path):
    params = {"Source": str(D18), "Model": str(tmp_path / "no_model"), "Output": str(tmp_path / "out"),
              "Movie": str(tmp_path / "out.mp4"), "FrameStart": 0, "FrameEnd": 9, "ChunkSize": 5,
              "CorePython": sys.executable, "Aligner": "dlib", "Device": "cpu"}
    job = _openjd(params)
    assert job.returncode != 0
    errors = [line for line in job.stdout.splitlines() if "error: " in line]
    assert errors and str(tmp_path / "no_model") in errors[0], job.stdout[-3000:]
    assert not (tmp_path / "out.mp4").exists()  # Assemble never ran


def test_killed_swap_resumes_to_the_frames_of_an_uninterrupted_one(tmp_path, small_model, whole):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "core", "swap", str(D18), "--model", str(small_model), "--out", str(out),
           "--count", str(SHOT), "--aligner", "dlib", "--device", "cpu"]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while job.poll() is None and len(list(out.glob("frame_*.png"))) < SHOT // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    kept = len(list(out.glob("frame_*.png")))
    assert 0 < kept < SHOT
    again = subprocess.run([*cmd, "--events", "jsonl"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    result = events_of(again.stdout)[-1]
    assert result["frames_written"] == SHOT - kept and result["frames_read_not_written"] > 0
    assert _largest_difference(whole, out, range(SHOT)) <= 1
    assert _flags(out) == _flags(whole)


def test_encode_refuses_a_shot_with_missing_frames(tmp_path, whole):
    partial = tmp_path / "partial"
    shutil.copytree(whole, partial)
    (partial / "frame_000060.png").unlink()
    done = run_cli("encode", partial, "--out", tmp_path / "shot.mp4", "--start", 0, "--end", SHOT - 1)
    assert done.returncode == 1
    assert f"1 of frames 0..{SHOT - 1} are missing" in done.stderr and "60" in done.stderr
    assert not (tmp_path / "shot.mp4").exists()


def _openjd_commands(params: dict, tmp_path: Path) -> list[list[str]]:
    """The command lines the OpenJD template runs, from a real `openjd run` whose interpreter is
    a script that prints its arguments."""
    echo = tmp_path / "echo_args"
    echo.write_text(f"#!{sys.executable}\nimport json, sys\nprint('ARGV ' + json.dumps(sys.argv[1:]))\n")
    echo.chmod(0o755)
    job = _openjd({**params, "CorePython": str(echo)})
    assert job.returncode == 0, job.stdout[-3000:]
    return [json.loads(line.split("ARGV ", 1)[1]) for line in job.stdout.splitlines() if "ARGV " in line]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the Flamenco job type is JavaScript")
def test_flamenco_job_type_compiles_to_the_openjd_job(tmp_path):
    """What this checks: the job type parses and its compileJob() makes one task per chunk plus an
    assemble task that depends on all of them, each an `exec` of exactly the command line the
    OpenJD template runs. What it cannot: Flamenco's own JS runtime (goja, with the author API
    stood in by tests/flamenco_compile.js as Flamenco 3.x documents it), the manager's settings
    form, variable expansion ({deepfake_python}) and workers running the tasks."""
    shot = {"source": "/shots/a b.mp4", "model": "/models/m", "output": "/out/frames", "movie": "/out/shot.mp4",
            "frame_start": 10, "frame_end": 59, "chunk_size": 20, "core_python": "/venv/bin/python",
            "aligner": "dlib", "device": "cpu"}
    (tmp_path / "settings.json").write_text(json.dumps(shot))
    done = subprocess.run(["node", str(ROOT / "tests" / "flamenco_compile.js"), str(FLAMENCO_JOB_TYPE),
                           str(tmp_path / "settings.json")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    compiled = json.loads(done.stdout)
    tasks = compiled["tasks"]
    assert [t["name"] for t in tasks] == ["swap-10-29", "swap-30-49", "swap-50-59", "assemble"]
    assert tasks[-1]["dependencies"] == ["swap-10-29", "swap-30-49", "swap-50-59"]
    flamenco = [[t["commands"][0]["parameters"]["exe"], *t["commands"][0]["parameters"]["args"]] for t in tasks]
    assert all(t["commands"][0]["name"] == "exec" and len(t["commands"]) == 1 for t in tasks)
    params = {"Source": shot["source"], "Model": shot["model"], "Output": shot["output"], "Movie": shot["movie"],
              "FrameStart": 10, "FrameEnd": 59, "ChunkSize": 20, "Aligner": "dlib", "Device": "cpu"}
    openjd = _openjd_commands(params, tmp_path)
    assert [argv for argv in openjd] == [cmd[1:] for cmd in flamenco]
    assert all(cmd[0] == shot["core_python"] for cmd in flamenco)
    (tmp_path / "bad.json").write_text(json.dumps({**shot, "frame_end": 5}))
    bad = subprocess.run(["node", str(ROOT / "tests" / "flamenco_compile.js"), str(FLAMENCO_JOB_TYPE),
                          str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "not a range" in bad.stdout


def test_farm_job_bundle_names_the_frames_and_refuses_mistakes(tmp_path, small_model):
    bundle = tmp_path / "bundle"
    done = run_cli("farm-job", D18, "--model", small_model, "--out", tmp_path / "frames", "--start", 10, "--end", 59,
                   "--chunk-size", 20, "--bundle", bundle, "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    params = json.loads((bundle / "parameters.json").read_text())
    assert (params["FrameStart"], params["FrameEnd"], params["ChunkSize"]) == (10, 59, 20)
    assert params["Movie"] == str((tmp_path / "frames.mp4").resolve())
    assert (bundle / "template.yaml").read_bytes() == TEMPLATE.read_bytes()
    assert "- name: FrameEnd\n  value: 59\n" in (bundle / "parameter_values.yaml").read_text()
    check = subprocess.run([str(OPENJD), "summary", str(bundle / "template.yaml"), "-p",
                            f"file://{bundle / 'parameters.json'}"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "'Swap' (3 total Tasks)" in check.stdout, check.stdout + check.stderr
    for args, expect in ((["--end", "999"], "frame 999 is not there"),
                         (["--model", str(tmp_path)], "not a model folder"),
                         (["--out", str(small_model / "x")], "inside the model folder")):
        base = {"--model": str(small_model), "--out": str(tmp_path / "f2"), "--end": "20"}
        base.update(dict(zip(args[::2], args[1::2])))
        bad = run_cli("farm-job", D18, *[x for kv in base.items() for x in kv], "--bundle", tmp_path / "b2")
        assert bad.returncode == 1 and expect in bad.stderr, bad.stderr
    result = run_cli("farm-result", tmp_path / "frames", "--start", 10, "--count", 50)
    assert result.returncode == 1 and "holds no swap yet" in result.stderr
