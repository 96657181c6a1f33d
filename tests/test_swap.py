"""The Swap step on real footage: what an editor checks in the frames it writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import VIDEO, events_of, run_cli
from core.media import open_source

D18 = VIDEO / "liveportrait_d18.mp4"
HELD_OUT = ("--start", "173", "--count", "12")  # the last 20 % of d18 was held out of training
# Tests whose subject is not continuity read no pre-roll: 12 frames, not the 47 before them too.
HELD_OUT_COLD = (*HELD_OUT, "--preroll", "0")


def _frames(path: Path, start: int = 0, count: int | None = None) -> list[np.ndarray]:
    """The source frames as the swap decoded them (Blender 4.4+'s conversion, which test_media
    checks against Blender's own render): untouched pixels must equal these bit for bit."""
    with open_source(path, start, count) as source:
        return [rgb for _, rgb in source]


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def test_png_composite_touches_only_the_masked_face(tmp_path, small_model):
    comp, over = tmp_path / "composite", tmp_path / "overlay"
    for out, mode in ((comp, "composite"), (over, "overlay")):
        result = run_cli("swap", D18, "--model", small_model, "--out", out, *HELD_OUT_COLD, "--mode", mode,
                         "--aligner", "dlib", "--events", "jsonl")
        assert result.returncode == 0, result.stderr
    source = _frames(D18, 173, 12)
    written = sorted(comp.glob("frame_*.png"))
    assert [p.name for p in written] == [f"frame_{i:06d}.png" for i in range(173, 185)]
    for frame, path in zip(source, written):
        out = _read(path)
        alpha = _read(over / path.name)[..., 3]
        assert out.shape == frame.shape and out.dtype == np.uint8
        outside = alpha == 0
        assert np.array_equal(out[outside], frame[outside])  # bit-identical where the mask is 0
        # The composite is the overlay layer alpha-composited over the source (straight alpha):
        # that holds whatever the briefly trained model's soft learned mask is.
        layer = _read(over / path.name).astype(np.float64)
        a = layer[..., 3:] / 255
        expected = np.round(layer[..., :3] * a + frame * (1 - a))
        assert np.abs(out.astype(int) - expected).max() <= 2
        support = alpha > 0
        assert support.sum() > 0.05 * alpha.size and not np.array_equal(out[support], frame[support])
    assert json.loads((comp / "flags.json").read_text())["flags"] == []


def test_mp4_output_keeps_count_size_and_fps(tmp_path, small_model):
    out = tmp_path / "swapped.mp4"
    result = run_cli("swap", D18, "--model", small_model, "--out", out, *HELD_OUT_COLD, "--format", "mp4", "--aligner", "dlib")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as c, av.open(str(D18)) as s:
        stream, src = c.streams.video[0], s.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        assert (stream.width, stream.height) == (src.width, src.height)
        assert float(stream.average_rate) == pytest.approx(float(src.average_rate), rel=1e-3)
    assert frames == 12


def test_linear_exr_in_exr_out(tmp_path, small_model):
    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"
    src = tmp_path / "exr_in"
    src.mkdir()
    for i, frame in enumerate(_frames(D18, 173, 6)):
        srgb = frame.astype(np.float32) / 255
        linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)
        cv2.imwrite(str(src / f"plate.{i:04d}.exr"), cv2.cvtColor(linear, cv2.COLOR_RGB2BGR))
    comp, over = tmp_path / "exr_out", tmp_path / "exr_overlay"
    for out, mode in ((comp, "composite"), (over, "overlay")):
        result = run_cli("swap", src, "--model", small_model, "--out", out, "--format", "exr", "--mode", mode,
                         "--colorspace", "Linear Rec.709", "--aligner", "dlib")
        assert result.returncode == 0, result.stderr
    for i, plate in enumerate(sorted(src.glob("*.exr"))):
        before = cv2.imread(str(plate), cv2.IMREAD_UNCHANGED)
        after = cv2.imread(str(comp / f"frame_{i:06d}.exr"), cv2.IMREAD_UNCHANGED)
        alpha = cv2.imread(str(over / f"frame_{i:06d}.exr"), cv2.IMREAD_UNCHANGED)[..., 3]
        assert after.dtype == np.float32 and after.shape == before.shape
        assert np.array_equal(after[alpha == 0], before[alpha == 0])
        assert (alpha > 0).sum() > 0.05 * alpha.size


def test_rerun_resumes_after_the_last_written_frame(tmp_path, small_model):
    out = tmp_path / "resume"
    first = run_cli("swap", D18, "--model", small_model, "--out", out, *HELD_OUT, "--aligner", "dlib")
    assert first.returncode == 0, first.stderr
    reference = {p.name: p.read_bytes() for p in out.glob("frame_*.png")}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("frame_*.png")}
    redone = ("frame_000182.png", "frame_000183.png", "frame_000184.png")
    for name in redone:
        (out / name).unlink()
    again = run_cli("swap", D18, "--model", small_model, "--out", out, *HELD_OUT, "--aligner", "dlib", "--events", "jsonl")
    assert again.returncode == 0, again.stderr
    assert events_of(again.stdout)[-1]["frames_written"] == 3
    after = {p.name: p.read_bytes() for p in out.glob("frame_*.png")}
    assert sorted(after) == sorted(reference)
    # The frames that were there are kept as they were: same bytes, never rewritten.
    for name in set(reference) - set(redone):
        assert after[name] == reference[name] and (out / name).stat().st_mtime_ns == stamps[name], name
    # The rewritten ones are whole swaps of the same frames: the source's pixels wherever the first
    # run kept the source's. (Inside the face they may differ: the resumed run's tracker starts
    # cold at frame 182, the known discontinuity that chunked swaps must remove.)
    source = dict(zip(range(173, 185), _frames(D18, 173, 12)))
    for name in redone:
        frame = source[int(name[6:12])]
        old, new = _read_bytes(reference[name]), _read(out / name)
        # (15 px clear of what the first run painted: a cold tracker's mask sits a few px elsewhere)
        untouched = cv2.erode((old == frame).all(axis=2).astype(np.uint8), np.ones((31, 31), np.uint8)) == 1
        assert untouched.mean() > 0.5 and np.array_equal(new[untouched], frame[untouched])
        assert (new != frame).any()
    other = run_cli("swap", D18, "--model", small_model, "--out", out, *HELD_OUT, "--color", "none", "--aligner", "dlib")
    assert other.returncode == 1 and "colour transfer mean-std -> none" in other.stderr


def _read_bytes(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_picks_the_trained_person_among_two(tmp_path, small_model):
    """A frame holding d18 (the trained A) and d19 side by side: the swap replaces d18 and leaves
    d19 untouched, whichever side each stands on. (One run per layout: within one run the
    faces are tracks, and a person does not swap places with another between two frames.)"""
    a, b = _frames(D18, 180, 1)[0], _frames(VIDEO / "liveportrait_d19.mp4", 180, 1)[0]
    w = a.shape[1]
    for i, frame in enumerate((np.hstack([a, b]), np.hstack([b, a]))):
        folder, out = tmp_path / f"pair_{i}", tmp_path / f"pair_{i}_out"
        folder.mkdir()
        cv2.imwrite(str(folder / "pair.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        result = run_cli("swap", folder, "--model", small_model, "--out", out, "--aligner", "dlib")
        assert result.returncode == 0, result.stderr
        a_side, b_side = (slice(0, w), slice(w, 2 * w)) if i == 0 else (slice(w, 2 * w), slice(0, w))
        after = _read(out / "frame_000000.png")
        assert np.array_equal(after[:, b_side], frame[:, b_side]), "the other person was touched"
        assert not np.array_equal(after[:, a_side], frame[:, a_side]), "the trained person was not swapped"


def test_hamilton_no_face_frames_come_out_unchanged_and_flagged(tmp_path, small_model):
    clip = VIDEO / "face_recognition_short_hamilton_clip.mp4"
    out = tmp_path / "hamilton"
    result = run_cli("swap", clip, "--model", small_model, "--out", out, "--face", "largest", "--aligner", "dlib",
                     "--events", "jsonl")
    assert result.returncode == 0, result.stderr
    flagged = {e["frame"] for e in events_of(result.stdout) if e["event"] == "flag" and e["reason"] == "no_face"}
    assert flagged and len(list(out.glob("frame_*.png"))) == 275  # the whole clip runs through
    for index, frame in enumerate(_frames(clip)):
        if index in flagged:
            assert np.array_equal(_read(out / f"frame_{index:06d}.png"), frame)
    stored = {f["frame"] for f in json.loads((out / "flags.json").read_text())["flags"] if "no_face" in f["reasons"]}
    assert stored == flagged


@pytest.mark.parametrize("case", ["inside_source", "missing_model", "foreign_alignments", "mp4_name"])
def test_bad_swap_requests_fail_clearly(tmp_path, small_model, d19_faceset, case):
    source, out, extra = D18, tmp_path / "out", []
    model = small_model
    if case == "inside_source":
        source = tmp_path / "plates"
        source.mkdir()
        cv2.imwrite(str(source / "p_1.png"), np.zeros((64, 64, 3), np.uint8))
        out, expect = source / "swapped", "inside it"
    elif case == "missing_model":
        model, expect = tmp_path / "no_model", "no_model"
    elif case == "foreign_alignments":
        extra, expect = ["--alignments", str(d19_faceset / "alignments.json")], "was extracted from"
    else:
        extra, expect = ["--format", "mp4"], ".mp4"
    result = run_cli("swap", source, "--model", model, "--out", out, "--count", "3", "--aligner", "dlib", *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and expect in lines[-1], result.stderr
