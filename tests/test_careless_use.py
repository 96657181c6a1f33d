"""What a careless or hostile user finds (issue 16): never a silently wrong result, never a lost
model, one `error:` line for every mistake a user can make.

Full disks and read-only folders are real: a small tmpfs and a read-only bind mount, which need
root (CI runs as root); without root those tests skip and say why.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import CORE_PYTHON, ROOT, VIDEO, events_of, png_image_data, run_cli

D18, D19 = VIDEO / "liveportrait_d18.mp4", VIDEO / "liveportrait_d19.mp4"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with one `error: ...` line, last, and no traceback (log lines before it,
    such as "resuming the model", are fine)."""
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in result.stderr and len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def frames_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*.png"))}


@pytest.fixture()
def model(tmp_path, tiny_model) -> Path:
    """A copy of the 5-iteration tiny model that a test may train further."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy, ignore=shutil.ignore_patterns(".deepfake.lock"))
    return copy


def facesets(tiny_model: Path) -> tuple[Path, Path]:
    return tiny_model.parent / "d18", tiny_model.parent / "d19"


def swap(source: Path, model: Path, out: Path, *extra: object) -> subprocess.CompletedProcess:
    return run_cli("swap", source, "--model", model, "--out", out, "--count", 6, "--aligner", "dlib", *extra)


# -- 1. an output folder knows what made it -------------------------------------------------------------
def test_swap_after_more_training_writes_the_new_models_frames(tmp_path, model, tiny_model):
    out = tmp_path / "shot"
    assert swap(D18, model, out, "--count", 8).returncode == 0
    first = frames_of(out)
    assert len(first) == 8
    # Another source into the same folder: refused, naming what differs.
    message = one_error_line(swap(D19, model, out))
    assert "source" in message and "liveportrait_d19" in message and "--existing" in message
    # More training, then Swap again: refused, naming the iterations, old frames untouched.
    a, b = facesets(tiny_model)
    assert run_cli("train", "--faceset-a", a, "--faceset-b", b, "--model", model, "--iterations", 8,
                   "--batch-size", 2, "--device", "cpu").returncode == 0
    message = one_error_line(swap(D18, model, out))
    assert "model iteration 5 -> 8" in message
    assert frames_of(out) == first
    # Keep it and write beside it: out_2 holds the new model's frames, out is untouched.
    kept = swap(D18, model, out, "--existing", "new", "--events", "jsonl")
    assert kept.returncode == 0, kept.stderr
    assert events_of(kept.stdout)[-1]["output"] == str(tmp_path / "shot_2")
    assert frames_of(out) == first
    new = frames_of(tmp_path / "shot_2")
    assert len(new) == 6 and any(new[n] != first[n] for n in new)
    # Rerunning the same "new" swap resumes shot_2 rather than making shot_3.
    again = swap(D18, model, out, "--existing", "new", "--events", "jsonl")
    assert events_of(again.stdout)[-1]["frames_written"] == 0 and not (tmp_path / "shot_3").exists()
    # Replace: the folder becomes exactly the new swap (the old run's frames 6 and 7 go too).
    replaced = swap(D18, model, out, "--existing", "replace")
    assert replaced.returncode == 0, replaced.stderr
    assert {n: png_image_data(b) for n, b in frames_of(out).items()} == {n: png_image_data(b) for n, b in new.items()}
    record = json.loads((out / "swap.json").read_text())
    assert record["iteration"] == 8 and record["model_id"] == json.loads((model / "state.json").read_text())["model_id"]


# -- 2. two jobs, one output ---------------------------------------------------------------------------
def test_a_second_job_on_the_same_movie_is_refused_at_once(tmp_path, tiny_model):
    out = tmp_path / "shot.mp4"
    first = subprocess.Popen([CORE_PYTHON, "-m", "core", "swap", str(D18), "--model", str(tiny_model), "--out", str(out),
                              "--format", "mp4", "--count", "40", "--aligner", "dlib", "--events", "jsonl"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in first.stdout:
        if json.loads(line)["event"] == "progress":
            break
    first.send_signal(signal.SIGSTOP)  # holds its lock, mid-movie, whatever the machine's speed
    try:
        message = one_error_line(run_cli("swap", D19, "--model", tiny_model, "--out", out, "--format", "mp4",
                                         "--count", 5, "--aligner", "dlib"))
        assert "another job is writing" in message and str(out) in message
    finally:
        first.send_signal(signal.SIGCONT)
    rest, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert events_of(rest)[-1]["frames_written"] == 40
    import av
    with av.open(str(out)) as movie:
        assert sum(1 for _ in movie.decode(video=0)) == 40
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]


# -- 3. a model folder is absent, or complete ----------------------------------------------------------
def _train(model: Path, tiny_model: Path, iterations: int, *extra: object) -> subprocess.CompletedProcess:
    a, b = facesets(tiny_model)
    return run_cli("train", "--faceset-a", a, "--faceset-b", b, "--model", model, "--iterations", iterations,
                   "--batch-size", 2, "--device", "cpu", "--events", "jsonl", *extra)


def test_what_a_killed_first_checkpoint_leaves_does_not_block_a_rerun(tmp_path, tiny_model):
    # Killed while the first weights were being written: the lock, our temp and safetensors' own.
    model = tmp_path / "first"
    model.mkdir()
    (model / ".deepfake.lock").touch()
    (model / ".model.safetensors.0123456789ab.tmp").write_bytes(b"half")
    (model / ".tmpAb12Cd").write_bytes(b"half")
    done = _train(model, tiny_model, 3)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == [".deepfake.lock"]
    # A folder an earlier version left with config.json and no weights (nothing trained) starts anew.
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(model / "config.json", old / "config.json")
    done = _train(old, tiny_model, 2)
    assert done.returncode == 0, done.stderr
    assert any("never finished" in e.get("message", "") for e in events_of(done.stdout))


def test_a_lost_config_is_restored_and_trained_weights_are_never_replaced(model, tiny_model):
    (model / "config.json").unlink()
    done = _train(model, tiny_model, 7)
    assert done.returncode == 0, done.stderr
    events = events_of(done.stdout)
    assert any(e["event"] == "warning" and "restored" in e["message"] for e in events)
    assert any("iterations 5 -> 7" in e.get("message", "") for e in events)  # resumed, not from scratch
    assert json.loads((model / "config.json").read_text())["preset"] == "small"


def test_a_folder_of_other_files_is_not_trained_into(tmp_path, tiny_model):
    folder = tmp_path / "my_stuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    message = one_error_line(_train(folder, tiny_model, 2))
    assert "not a model folder" in message and "notes.txt" in message
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# -- 4. bounded memory ---------------------------------------------------------------------------------
def test_mask_memory_is_bounded_by_the_crop_whatever_blur_and_erode_ask():
    from core.masks import face_mask
    from core.faces.align import mean_face

    points = mean_face() * 256
    tracemalloc.start()
    for erode, blur in ((0.5, 1.0), (1000.0, 1000.0)):  # the largest the CLI accepts; far beyond it
        mask = face_mask(points, 256, erode=erode, blur=blur)
        assert mask.shape == (256, 256) and np.isfinite(mask).all()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # was 23.5 GB at --blur 1000


# -- 5. a resumed model's record stays true ----------------------------------------------------------------
def test_resume_with_other_facesets_is_recorded_and_another_seed_refused(tmp_path, model, tiny_model):
    a, b = facesets(tiny_model)
    more_b = tmp_path / "d19_more"
    assert run_cli("extract", D19, "--out", more_b, "--start", 100, "--count", 10, "--aligner", "dlib").returncode == 0
    done = run_cli("train", "--faceset-a", a, "--faceset-b", more_b, "--model", model, "--iterations", 7,
                   "--batch-size", 2, "--device", "cpu", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    assert any(e["event"] == "warning" and "other facesets" in e["message"] for e in events_of(done.stdout))
    state = json.loads((model / "state.json").read_text())
    assert state["facesets_b"] == [str(more_b.resolve())]
    assert [r["from"] for r in state["runs"]] == [0, 5] and state["runs"][0]["facesets_b"] == [str(b.resolve())]
    for option, value in (("--seed", 5), ("--holdout", 0.3)):
        message = one_error_line(run_cli("train", "--faceset-a", a, "--faceset-b", b, "--model", model,
                                         "--iterations", 9, "--device", "cpu", option, value))
        assert option in message and "resumed" in message
    assert json.loads((model / "state.json").read_text())["iteration"] == 7


# -- 6. EXR sources are linear whatever the output format ---------------------------------------------------
def test_an_exr_sequence_swapped_to_png_is_read_as_linear_and_written_as_srgb(tmp_path, tiny_model):
    from core.color_management import linear_to_srgb, srgb_to_linear
    from core.media import open_source

    plates = tmp_path / "plates"
    plates.mkdir()
    with open_source(D18, 0, 3) as source:
        srgb = [rgb for _, rgb in source]
    for i, frame in enumerate(srgb):
        linear = srgb_to_linear(frame.astype(np.float32) / 255).astype(np.float32)
        cv2.imwrite(str(plates / f"plate.{i:04d}.exr"), cv2.cvtColor(linear, cv2.COLOR_RGB2BGR))
    out = tmp_path / "png"
    done = run_cli("swap", plates, "--model", tiny_model, "--out", out, "--aligner", "dlib", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    result = events_of(done.stdout)[-1]
    assert result["colorspace"].startswith("Linear Rec.709") and result["output_colorspace"] == "sRGB"
    for i, frame in enumerate(srgb):
        written = cv2.cvtColor(cv2.imread(str(out / f"frame_{i:06d}.png")), cv2.COLOR_BGR2RGB)
        # Away from the face (the studio background of the top rows), the PNG is the plate in sRGB:
        # within one level of the source frame. Read as sRGB values, it would be far darker.
        corner = (slice(0, 60), slice(0, 480))
        assert np.abs(written[corner].astype(int) - frame[corner]).max() <= 1
        dark = np.round(srgb_to_linear(frame[corner] / 255) * 255)
        assert np.abs(written[corner].astype(int) - dark).mean() > 20


# -- 7 and 8. read-only models, torn frames, leftovers --------------------------------------------------------
def _mount(args: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a real tmpfs or read-only bind mount (CI runs as root)")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount refused here: {done.stderr.strip()}")


def _bind_read_only(folder: Path):
    """`folder` made a read-only file system (a bind mount of itself), for as long as the caller yields."""
    _mount(["--bind", str(folder), str(folder)])
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture()
def readonly_model(tmp_path, tiny_model):
    """A model on a read-only share: a read-only mount as root (root ignores permission bits),
    plain permissions for anyone else."""
    folder = tmp_path / "shared_model"
    # identity.json: the cache an earlier version wrote into model folders must not be there already.
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns(".deepfake.lock", "identity.json"))
    if os.geteuid() == 0:
        yield from _bind_read_only(folder)
        return
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_a_model_on_a_read_only_share_swaps(tmp_path, readonly_model):
    with pytest.raises(OSError):
        (readonly_model / "probe").touch()
    before = sorted(p.name for p in readonly_model.iterdir())
    done = swap(D18, readonly_model, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert len(frames_of(tmp_path / "out")) == 6 and sorted(p.name for p in readonly_model.iterdir()) == before


def test_resume_rewrites_torn_frames_and_removes_leftovers(tmp_path, tiny_model):
    out = tmp_path / "out"
    assert swap(D18, tiny_model, out).returncode == 0
    reference = frames_of(out)
    (out / "frame_000003.png").write_bytes(reference["frame_000003.png"][: len(reference["frame_000003.png"]) // 2])
    (out / "frame_000004.png").write_bytes(b"")
    (out / ".frame_000005.png.0123456789ab.tmp").write_bytes(b"a killed write")
    done = run_cli("swap", D18, "--model", tiny_model, "--out", out, "--count", 6, "--aligner", "dlib", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    assert events_of(done.stdout)[-1]["frames_written"] == 2
    for name in ("frame_000003.png", "frame_000004.png"):
        assert cv2.imread(str(out / name)) is not None
    assert {n: b for n, b in frames_of(out).items() if n not in ("frame_000003.png", "frame_000004.png")} == \
        {n: b for n, b in reference.items() if n not in ("frame_000003.png", "frame_000004.png")}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# -- 9. full disks and read-only outputs ----------------------------------------------------------------------
def _tmpfs(folder: Path, size: str):
    folder.mkdir()
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture()
def small_disk(tmp_path):
    yield from _tmpfs(tmp_path / "disk", "3m")


@pytest.fixture()
def roomy_disk(tmp_path):
    """Room for what the swap asks at the start, and more, until a filler takes it."""
    yield from _tmpfs(tmp_path / "disk", "24m")


def test_outputs_on_a_disk_too_small_are_refused_before_the_work(small_disk, tiny_model):
    a, b = facesets(tiny_model)
    message = one_error_line(run_cli("swap", D18, "--model", tiny_model, "--out", small_disk / "out", "--aligner", "dlib"))
    assert "not enough free space" in message and "216 swapped frames" in message
    message = one_error_line(run_cli("train", "--faceset-a", a, "--faceset-b", b, "--model", small_disk / "m",
                                     "--iterations", 2, "--device", "cpu"))
    assert "not enough free space" in message
    message = one_error_line(run_cli("extract", VIDEO / "liveportrait_s18.mp4", "--out", small_disk / "fs",
                                     "--aligner", "dlib"))
    assert "not enough free space" in message


def test_a_disk_that_fills_mid_swap_is_one_error_and_the_frames_so_far_resume(roomy_disk, tiny_model):
    small_disk = roomy_disk
    out = small_disk / "out"
    argv = [CORE_PYTHON, "-m", "core", "swap", str(D18), "--model", str(tiny_model), "--out", str(out),
            "--count", "12", "--aligner", "dlib", "--events", "jsonl"]
    job = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in job.stdout:
        if json.loads(line)["event"] == "progress":
            break
    job.send_signal(signal.SIGSTOP)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # take every byte left
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    job.send_signal(signal.SIGCONT)
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 1
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and lines[-1].startswith("error: the disk filled up") and "rerun to resume" in lines[-1]
    kept = frames_of(out)
    assert 0 < len(kept) < 12 and all(cv2.imread(str(out / n)) is not None for n in kept)
    filler.unlink()
    again = run_cli("swap", D18, "--model", tiny_model, "--out", out, "--count", 12, "--aligner", "dlib", "--events", "jsonl")
    assert again.returncode == 0, again.stderr
    assert events_of(again.stdout)[-1]["frames_written"] == 12 - len(kept) and len(frames_of(out)) == 12


@pytest.fixture()
def readonly_folder(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    yield from _bind_read_only(folder)


def test_read_only_outputs_are_refused_before_the_work(readonly_folder, tiny_model):
    a, b = facesets(tiny_model)
    for argv in (("swap", D18, "--model", tiny_model, "--out", readonly_folder / "out", "--aligner", "dlib"),
                 ("train", "--faceset-a", a, "--faceset-b", b, "--model", readonly_folder / "m", "--iterations", 2),
                 ("extract", D18, "--out", readonly_folder / "fs", "--aligner", "dlib")):
        message = one_error_line(run_cli(*argv))
        assert "Read-only file system" in message and str(readonly_folder) in message, (argv[0], message)


# -- 9. every user error is one line ----------------------------------------------------------------------------
def _faceset_with(tmp_path: Path, name: str, edit) -> Path:
    src = facesets_root() / "d18"
    folder = tmp_path / name
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns(".deepfake.lock"))
    path = folder / "alignments.json"
    path.write_text(edit(path.read_text()))
    return folder


_ROOT_OF_TINY: list[Path] = []


def facesets_root() -> Path:
    return _ROOT_OF_TINY[0]


def _model_without(tmp_path: Path, model: Path, key: str) -> Path:
    """A model whose checkpoint metadata lacks `key` (weights otherwise intact)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    out = tmp_path / f"model_without_{key}"
    shutil.copytree(model, out, ignore=shutil.ignore_patterns(".deepfake.lock"))
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = {k: v for k, v in (f.metadata() or {}).items() if k != key}
    save_file(tensors, str(out / "model.safetensors"), metadata=metadata)
    return out


def test_every_user_error_is_one_line_and_no_traceback(tmp_path, tiny_model):
    _ROOT_OF_TINY[:] = [tiny_model.parent]
    a, b = facesets(tiny_model)
    deep = _faceset_with(tmp_path, "deep", lambda text: "[" * 200_000 + "]" * 200_000)
    superscript = _faceset_with(tmp_path, "superscript",
                                lambda text: text.replace('"frames":{"0"', '"frames":{"\u00b2"', 1))
    sizes = _faceset_with(tmp_path, "sizes", lambda text: text.replace('"range":{"start":0', '"range":{"start":"zero"', 1))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(50_000))
    fake_blend = tmp_path / "shot.blend"
    fake_blend.write_text("not a blend")
    no_params = _model_without(tmp_path, tiny_model, "param_groups")
    no_state = _model_without(tmp_path, tiny_model, "state")
    train = ("train", "--faceset-a", a, "--faceset-b", b, "--model", tmp_path / "m", "--device", "cpu")
    cases = {
        "blur 1000": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--blur", 1000),
        "erode nan": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--erode", "nan"),
        "smooth nan": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--smooth", "nan"),
        "smooth inf": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--smooth", "inf"),
        "count 0": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--count", 0),
        "save-every 0": (*train, "--save-every", 0),
        "batch 1e8": (*train, "--batch-size", 100_000_000),
        "size abc": ("extract", D18, "--out", tmp_path / "fs", "--size", "abc"),
        "unknown option": ("swap", D18, "--model", tiny_model, "--out", tmp_path / "o", "--colour", "x"),
        "missing video": ("extract", tmp_path / "nope.mp4", "--out", tmp_path / "fs"),
        "corrupt video": ("extract", corrupt, "--out", tmp_path / "fs"),
        "deep json": ("info", deep),
        "frame key ²": ("info", superscript),
        "non-numeric size": ("info", sizes),
        "deep json faceset in train": ("train", "--faceset-a", deep, "--faceset-b", b, "--model", tmp_path / "m2"),
        "checkpoint without param_groups": ("train", "--faceset-a", a, "--faceset-b", b, "--model", no_params,
                                            "--iterations", 9, "--device", "cpu"),
        "checkpoint without state": ("train", "--faceset-a", a, "--faceset-b", b, "--model", no_state,
                                     "--iterations", 9, "--device", "cpu"),
        "empty faceset for identity": ("evaluate", "--model", tmp_path / "no_model"),
    }
    failures = {}
    for name, argv in cases.items():
        result = run_cli(*argv)
        try:
            one_error_line(result)
        except AssertionError:
            failures[name] = result.stderr[-600:]
    # The batch script: a fake .blend is one line too.
    batch = subprocess.run([sys.executable, str(ROOT / "scripts" / "deepfake_batch.py"), str(fake_blend), "swap",
                            "--strip", "A", "--model", tiny_model], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if batch.returncode == 0 or "Traceback" in batch.stderr or not batch.stderr.strip().splitlines()[-1].startswith("error: "):
        failures["fake .blend"] = batch.stderr[-600:]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


# -- what a hostile-user trial run found beyond the nine cases --------------------------------------
def test_reports_never_overwrite_the_source_the_swap_or_each_other(tmp_path, tiny_model):
    clip = tmp_path / "clip.mp4"  # a copy: a failing check here must not damage the shared footage
    shutil.copy(D18, clip)
    before = clip.read_bytes()
    out = tmp_path / "swap"
    assert swap(clip, tiny_model, out, "--count", 4).returncode == 0
    frame = (out / "frame_000000.png").read_bytes()
    a, b = facesets(tiny_model)
    evaluate = ("evaluate", "--source", clip, "--swapped", out, "--faceset-a", a, "--faceset-b", b)
    for argv, words in (((*evaluate, "--json", clip), "would overwrite"),
                        ((*evaluate, "--html", out / "frame_000000.png"), "would overwrite"),
                        ((*evaluate, "--json", out / "r.json"), "go inside"),
                        ((*evaluate, "--json", tmp_path / "r", "--html", tmp_path / "r"), "same file"),
                        ((*evaluate, "--html", out), "is a folder"),
                        (("evaluate", "--source", D19, "--swapped", out, "--faceset-a", a, "--faceset-b", b),
                         "is a swap of")):
        assert words in one_error_line(run_cli(*argv)), argv
    assert clip.read_bytes() == before and (out / "frame_000000.png").read_bytes() == frame
    assert not list(tmp_path.glob("*.png"))


def test_swap_requests_that_would_write_wrong_or_misplaced_results_are_refused(tmp_path, tiny_model):
    a, b = facesets(tiny_model)
    movie = tmp_path / "shot.mp4"
    assert swap(D18, tiny_model, movie, "--format", "mp4", "--count", 4).returncode == 0
    cases = [
        (("swap", D18, "--model", tiny_model, "--out", movie, "--format", "mp4", "--start", 10, "--count", 3),
         "frame range"),
        (("swap", D18, "--model", tiny_model, "--out", tmp_path / "x.mp4", "--format", "mp4", "--bit-depth", 16),
         "8-bit"),
        (("swap", D18, "--model", tiny_model, "--out", tiny_model / "frames"), "inside the model folder"),
        (("swap", D18, "--model", tiny_model, "--out", a / "frames"), "inside the faceset"),
        (("extract", D18, "--out", tiny_model, "--count", 2, "--aligner", "dlib"), "holds a model"),
        (("train", "--faceset-a", a, "--faceset-b", a, "--model", tmp_path / "m", "--iterations", 2), "both A and B"),
    ]
    for argv, words in cases:
        assert words in one_error_line(run_cli(*argv)), argv
    assert sorted(p.name for p in tiny_model.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "model.safetensors", "preview.png", "state.json"]


def test_a_diverged_model_and_degenerate_alignments(tmp_path, tiny_model):
    from safetensors import safe_open
    from safetensors.torch import save_file

    diverged = tmp_path / "diverged"
    shutil.copytree(tiny_model, diverged, ignore=shutil.ignore_patterns(".deepfake.lock"))
    with safe_open(str(diverged / "model.safetensors"), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors[next(k for k in tensors if k.startswith("model.") and k.endswith("out.bias"))][:] = float("nan")
    save_file(tensors, str(diverged / "model.safetensors"), metadata=metadata)
    assert "diverged" in one_error_line(swap(D18, diverged, tmp_path / "o1"))
    # A hand-edited alignments file whose frame-0 landmarks all sit on one point: that frame is
    # flagged and left as it was, the rest are swapped.
    a, _ = facesets(tiny_model)
    edited = tmp_path / "edited"
    shutil.copytree(a, edited, ignore=shutil.ignore_patterns(".deepfake.lock"))
    data = json.loads((edited / "alignments.json").read_text())
    data["frames"]["0"][0]["landmarks"] = [[100.0, 100.0]] * 68
    (edited / "alignments.json").write_text(json.dumps(data))
    out = tmp_path / "o2"
    done = run_cli("swap", D18, "--model", tiny_model, "--out", out, "--count", 3, "--aligner", "dlib",
                   "--alignments", edited / "alignments.json", "--face", "largest")
    assert done.returncode == 0, done.stderr
    flags = {f["frame"]: f["reasons"] for f in json.loads((out / "flags.json").read_text())["flags"]}
    assert "bad_landmarks" in flags[0] and 1 not in flags
    from core.media import open_source
    with open_source(D18, 0, 1) as source:
        first = next(iter(source))[1]
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(out / "frame_000000.png")), cv2.COLOR_BGR2RGB), first)


def test_the_largest_accepted_mask_settings_swap_and_flag_what_they_erase(tmp_path, tiny_model):
    out = tmp_path / "wide"
    done = run_cli("swap", D18, "--model", tiny_model, "--out", out, "--count", 3, "--aligner", "dlib",
                   "--erode", 0.5, "--blur", 1.0, "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    assert len(frames_of(out)) == 3  # every frame written; a mask eroded to nothing is flagged, not a crash
    flags = json.loads((out / "flags.json").read_text())["flags"]
    assert all("empty_mask" in f["reasons"] for f in flags) and len(flags) == 3


def test_seamless_on_a_16_bit_sequence_is_one_error_line(tmp_path, tiny_model):
    from core.media import open_source

    plates = tmp_path / "plates16"
    plates.mkdir()
    with open_source(D18, 0, 2) as source:
        for i, frame in source:
            cv2.imwrite(str(plates / f"p{i}.png"), cv2.cvtColor(frame.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
    message = one_error_line(run_cli("swap", plates, "--model", tiny_model, "--out", tmp_path / "o", "--color",
                                     "seamless", "--bit-depth", 16, "--aligner", "dlib"))
    assert "8-bit" in message


def test_cancel_works_when_the_launcher_ignores_sigint(tmp_path):
    """A job started in the background by a non-interactive shell (a farm, CI, nohup) inherits
    SIGINT ignored; Cancel (SIGINT) must still save and stop it, not let it run to the end."""
    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    job = subprocess.Popen([CORE_PYTHON, "-m", "core", "extract", str(VIDEO / "liveportrait_s18.mp4"), "--out",
                            str(tmp_path / "fs"), "--aligner", "dlib", "--events", "jsonl"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    for line in job.stdout:
        if json.loads(line)["event"] == "progress":
            break
    job.send_signal(signal.SIGINT)
    rest, _ = job.communicate(timeout=120)
    assert job.returncode == 130
    assert events_of(rest)[-1]["event"] == "error" and "interrupted" in events_of(rest)[-1]["message"]
