"""The Extract step on real footage: what a user checks in the faceset it writes."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, VIDEO, events_of, run_cli
from core.faces.align import transform_points
from core.faces.landmarks68 import LEFT_EYE, MOUTH, RIGHT_EYE
from core.faceset import Faceset
from core.media import open_source


def test_d18_finds_a_face_in_nearly_every_frame(d18_faceset):
    faceset = Faceset.load(d18_faceset)
    assert faceset.complete and faceset.start == 0 and faceset.count == 216
    assert sorted(faceset.frames) == list(range(216))
    with_face = sum(1 for faces in faceset.frames.values() if faces)
    assert with_face / 216 >= 0.99
    assert all(len(faces) <= 1 for faces in faceset.frames.values())  # --face largest


def test_d18_aligned_eyes_and_mouth_stay_put(d18_faceset):
    """A face that lands a few pixels differently in each crop makes swaps flicker."""
    faceset = Faceset.load(d18_faceset)
    size = faceset.settings["size"]
    points = np.array([transform_points(face.landmarks, face.matrix) for _, face in faceset.faces()])
    for part in (LEFT_EYE, RIGHT_EYE, MOUTH):
        centres = points[:, part].mean(axis=1)
        assert (centres.std(axis=0) < 0.02 * size).all(), centres.std(axis=0) / size
    # The whole face, brows to chin, sits inside the crop with margin.
    assert points.min() > 0.1 * size and points.max() < 0.9 * size


def test_d18_crops_are_the_warped_source_frames(d18_faceset):
    """The stored matrix maps the source frame onto the stored crop: re-warping frame 100
    reproduces the PNG."""
    faceset = Faceset.load(d18_faceset)
    face = faceset.frames[100][0]
    with open_source(VIDEO / "liveportrait_d18.mp4", start=100, count=1) as source:  # decoded as extract did
        (_, frame), = list(source)
    crop = cv2.cvtColor(cv2.imread(str(d18_faceset / face.file)), cv2.COLOR_BGR2RGB)
    rewarped = cv2.warpAffine(frame, face.matrix, crop.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(rewarped.astype(int) - crop).max() <= 1
    assert crop.shape == (256, 256, 3)


def test_sub_range_holds_exactly_those_source_frames(tmp_path, d18_faceset):
    out = tmp_path / "sub"
    result = run_cli("extract", VIDEO / "liveportrait_d18.mp4", "--out", out, "--start", 50, "--count", 40, "--aligner", "dlib")
    assert result.returncode == 0, result.stderr
    sub, full = Faceset.load(out), Faceset.load(d18_faceset)
    assert (sub.start, sub.count) == (50, 40)
    assert sorted(sub.frames) == list(range(50, 90))
    assert len(list((out / "faces").iterdir())) == 40
    # Same source frames, not merely 40 frames: identical landmarks to the full run's.
    for frame in (50, 70, 89):
        np.testing.assert_array_equal(sub.frames[frame][0].landmarks, full.frames[frame][0].landmarks)


def test_hamilton_clip_runs_through_and_flags_no_face_frames(tmp_path):
    """Cuts, wide shots and frames without a face, with the default (fast, HOG) detector."""
    out = tmp_path / "hamilton"
    result = run_cli("extract", VIDEO / "face_recognition_short_hamilton_clip.mp4", "--out", out,
                     "--face", "all", "--aligner", "dlib", "--events", "jsonl")
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    faceset = Faceset.load(out)
    assert faceset.complete and len(faceset.frames) == faceset.count == faceset.source["frame_count"] == 275
    no_face = sorted(f for f, faces in faceset.frames.items() if not faces)
    flagged = sorted(e["frame"] for e in events if e["event"] == "flag" and e["reason"] == "no_face")
    assert no_face and flagged == no_face
    # The performer's close-ups (frames 84-215) have a face; the cutaways to the audience's
    # backs of heads (48-72) have none.
    assert sum(1 for f in range(84, 216) if faceset.frames[f]) > 0.8 * 132
    assert all(not faceset.frames[f] for f in range(50, 70))
    result_event = events[-1]
    assert result_event["event"] == "result" and result_event["no_face_frames"] == len(no_face)
    assert result_event["faces"] == sum(len(v) for v in faceset.frames.values())


def test_hamilton_audience_gives_several_faces_per_frame(tmp_path):
    """The audience shot (frames 216-274) shows four people, turned and partly hidden: HOG misses
    them, dlib's CNN detector finds them; --face all keeps each with its index."""
    out = tmp_path / "audience"
    result = run_cli("extract", VIDEO / "face_recognition_short_hamilton_clip.mp4", "--out", out, "--start", 220,
                     "--count", 6, "--face", "all", "--aligner", "dlib", "--detector", "cnn")
    assert result.returncode == 0, result.stderr
    faceset = Faceset.load(out)
    assert sorted(faceset.frames) == list(range(220, 226))
    for frame, faces in faceset.frames.items():
        assert len(faces) >= 3, (frame, len(faces))
        assert [face.index for face in faces] == list(range(len(faces)))
        assert len({face.file for face in faces}) == len(faces)
        # Distinct people, not one face found twice: no two faces' centres closer than half the
        # smaller face's size (two boxes on one face lie well within that).
        for i, a in enumerate(faces):
            for b in faces[i + 1:]:
                size = min(np.ptp(a.landmarks, axis=0).max(), np.ptp(b.landmarks, axis=0).max())
                gap = np.linalg.norm(a.landmarks.mean(axis=0) - b.landmarks.mean(axis=0))
                assert gap > 0.5 * size, (frame, a.index, b.index, gap, size)


def test_jsonl_events_follow_the_protocol(tmp_path):
    result = run_cli("extract", VIDEO / "liveportrait_d19.mp4", "--out", tmp_path / "d19", "--count", 20,
                     "--aligner", "dlib", "--events", "jsonl")
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)  # every stdout line is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and "progress" in kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 20 and progress[-1]["step"] == "extract"
    assert any(e["event"] == "log" and "dlib" in e["message"] for e in events)
    assert events[-1]["outputs"] == [str(tmp_path / "d19" / "alignments.json")]


def test_image_sequences_png_and_linear_exr(tmp_path):
    """An image folder works like a movie; a scene-linear EXR sequence lands on the same faces."""
    import av

    png_dir, exr_dir = tmp_path / "png", tmp_path / "exr"
    png_dir.mkdir(), exr_dir.mkdir()
    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"
    with av.open(str(VIDEO / "liveportrait_d18.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 6:
                break
            rgb = frame.to_ndarray(format="rgb24")
            cv2.imwrite(str(png_dir / f"shot_{i + 1}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            srgb = rgb.astype(np.float32) / 255
            linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)
            cv2.imwrite(str(exr_dir / f"shot_{i + 1:04d}.exr"), cv2.cvtColor(linear, cv2.COLOR_RGB2BGR))
    digest_before = _digest(png_dir) + _digest(exr_dir)
    for folder in (png_dir, exr_dir):
        result = run_cli("extract", folder, "--out", tmp_path / f"fs_{folder.name}", "--aligner", "dlib")
        assert result.returncode == 0, result.stderr
    png_fs, exr_fs = Faceset.load(tmp_path / "fs_png"), Faceset.load(tmp_path / "fs_exr")
    assert sorted(png_fs.frames) == sorted(exr_fs.frames) == list(range(6))
    assert png_fs.source["kind"] == "images"
    for frame in range(6):
        assert np.abs(png_fs.frames[frame][0].landmarks - exr_fs.frames[frame][0].landmarks).max() <= 2
    assert _digest(png_dir) + _digest(exr_dir) == digest_before, "the source frames were modified"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_rerun_resumes_and_another_source_is_refused(tmp_path):
    out = tmp_path / "fs"
    clip = VIDEO / "liveportrait_d19.mp4"
    first = run_cli("extract", clip, "--out", out, "--count", 24, "--aligner", "dlib", "--events", "jsonl")
    assert first.returncode == 0, first.stderr
    again = run_cli("extract", clip, "--out", out, "--count", 24, "--aligner", "dlib", "--events", "jsonl")
    assert again.returncode == 0, again.stderr
    assert events_of(again.stdout)[-1]["frames_processed"] == 0
    other = run_cli("extract", VIDEO / "liveportrait_d18.mp4", "--out", out, "--count", 24, "--aligner", "dlib")
    assert other.returncode != 0 and "another source" in other.stderr and "--force" in other.stderr
    assert Faceset.load(out).source["path"] == str(clip.resolve())  # untouched by the refusal
    forced = run_cli("extract", VIDEO / "liveportrait_d18.mp4", "--out", out, "--count", 24, "--aligner", "dlib", "--force")
    assert forced.returncode == 0, forced.stderr
    assert Faceset.load(out).source["path"] == str((VIDEO / "liveportrait_d18.mp4").resolve())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_job_leaves_a_faceset_that_resumes(tmp_path, sig):
    """SIGTERM saves and exits 130; SIGKILL loses at most the unsaved frames. Either way the
    folder loads (or holds no alignments yet) and a rerun finishes the job."""
    out = tmp_path / "fs"
    cmd = [sys.executable, "-m", "core", "extract", str(VIDEO / "liveportrait_s18.mp4"), "--out", str(out),
           "--aligner", "dlib", "--events", "jsonl"]
    # Saved after every batch, so SIGKILL can follow the first save at once: the kill lands with
    # most of the clip still to do, on a machine of any speed (a sleep past a 5 s save did not).
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DEEPFAKE_SAVE_INTERVAL_S": "0"})
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["done"] >= 16 and (out / "alignments.json").is_file():
            break
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    partial = Faceset.load(out)
    assert not partial.complete and 0 < len(partial.frames) < partial.count
    done_before = len(partial.frames)
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    final = Faceset.load(out)
    assert final.complete and sorted(final.frames) == list(range(final.count))
    assert events_of(rerun.stdout)[-1]["frames_processed"] == final.count - done_before


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in. root ignores permission bits, so as root
    use sysfs, which refuses new files to everyone."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked / "faceset"
    return Path("/sys/kernel/deepfake-faceset")


@pytest.mark.parametrize("case", ["missing", "text_as_mp4", "empty_folder", "unwritable", "out_inside_source"])
def test_bad_input_gives_one_clear_line_and_leaves_nothing_trusted(tmp_path, case):
    out = tmp_path / "out"
    if case == "missing":
        source, expect = tmp_path / "nope.mp4", "nope.mp4"
    elif case == "text_as_mp4":
        source, expect = tmp_path / "notes.mp4", "notes.mp4"
        source.write_text("this is not a video\n" * 50)
    elif case == "empty_folder":
        source, expect = tmp_path / "frames", "frames"
        source.mkdir()
    elif case == "unwritable":
        source, out = VIDEO / "liveportrait_d18.mp4", _unwritable_dir(tmp_path)
        expect = str(out)
    else:
        source = tmp_path / "frames"
        source.mkdir()
        cv2.imwrite(str(source / "f_1.png"), np.zeros((64, 64, 3), np.uint8))
        out, expect = source / "faceset", "inside the source"
    result = run_cli("extract", source, "--out", out, "--aligner", "dlib")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], result.stderr
    assert not (out / "alignments.json").exists()
