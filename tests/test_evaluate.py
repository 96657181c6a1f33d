"""The Evaluate step on real footage: each figure moves the right way, bad inputs fail clearly.

Held-out d18 frames 173..184 (the small_model fixture kept the last 20 % of d18 out of
training) are swapped once per module; the corruptions are built from that swap.
"""
from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import VIDEO, events_of, run_cli

from core import cli, masks
from core.errors import MediaError
from core.evaluate import EvaluateSettings, evaluate_clip
from core.evaluate.controls import model_resolution
from core.evaluate.pairing import pair_frames
from core.events import Events
from core.faceset import Faceset
from core.media import open_source
from core.model import load_config
from core.report import write_reports
from core.sinks import open_sink
from core.swap import SwapSettings, swap

D18 = VIDEO / "liveportrait_d18.mp4"
START, COUNT = 173, 12
FRAMES = list(range(START, START + COUNT))
MOVING = (56, 48)  # (start, count): d18 frames where the mouth opens, stays open and closes


def quiet() -> Events:
    return Events(jsonl=True, out=open(os.devnull, "w"))


def _swap(model: Path, out: Path) -> Path:
    # No pre-roll: the evaluation's subject is the frames, not how a stretch joins the one before.
    swap(D18, model, out, SwapSettings(start=START, count=COUNT, aligner="dlib", device="cpu", preroll=0), quiet())
    return out


def _evaluate(swapped: Path, d18: Path, d19: Path, **kw) -> dict:
    return evaluate_clip(D18, swapped, d18, d19, EvaluateSettings(**kw), quiet())


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _write(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def swapped(tmp_path_factory, small_model) -> Path:
    """deepfake swap's PNG composite of the held-out frames."""
    return _swap(small_model, tmp_path_factory.mktemp("eval") / "swap")


def _main(*args: object) -> tuple[int, list[dict]]:
    """`deepfake ... --events jsonl` in this process (the descriptor cache and imports are shared)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main([*map(str, args), "--events", "jsonl"])
    return code, events_of(stdout.getvalue())


@pytest.fixture(scope="module")
def swap_report(tmp_path_factory, swapped, d18_faceset, d19_faceset) -> tuple[dict, Path, list[dict]]:
    """The swap evaluated through the command line."""
    out = tmp_path_factory.mktemp("report")
    code, events = _main("evaluate", "--source", D18, "--swapped", swapped, "--faceset-a", d18_faceset,
                         "--faceset-b", d19_faceset, "--json", out / "report.json", "--html", out / "report.html")
    assert code == 0, events[-3:]
    return json.loads((out / "report.json").read_text()), out, events


@pytest.fixture(scope="module")
def self_report(d18_faceset, d19_faceset) -> dict:
    """The source evaluated against itself: the 'swap' replaced by the source."""
    return _evaluate(D18, d18_faceset, d19_faceset, start=START, count=COUNT)


def test_clip_against_itself_changes_nothing(self_report):
    r, swap_frames = self_report, self_report["per_frame"]["swap"]
    assert r["per_frame"]["frame"] == FRAMES and r["counts"] == {"frames": COUNT, "no_face": 0, "no_source_face": 0,
                                                                "control_no_face": 0}
    assert r["pairing"] == "position" and r["target"] == "b"
    assert all(a < b for a, b in zip(swap_frames["distance_a"], swap_frames["distance_b"]))  # A on every frame
    assert max(swap_frames["landmark_error"]) < 1e-9
    assert max(swap_frames["untouched_any"]) == 0 and max(swap_frames["untouched_mean_abs"]) == 0
    s = r["summary"]
    assert s["identity_retrieval"]["swap"] == 0
    assert s["seam"]["swap"] == pytest.approx(1.0) and s["detail"]["swap"] == pytest.approx(1.0)
    assert s["jitter"]["swap"] == pytest.approx(s["jitter"]["source"])
    assert s["mouth_correlation"]["swap"] == pytest.approx(1.0)
    # The mean-face control: B's average face pasted, no model. The descriptor calls it B on every
    # frame (DESIGN.md, "Metrics need controls"), but its mouth does not follow the source's.
    assert s["identity_retrieval"]["control"] == 1.0
    assert s["identity_distance_target"]["control"] < s["identity_distance_target"]["source"] - 0.2
    assert abs(s["mouth_correlation"]["control"]) < 0.5 and abs(s["mouth_gain"]["control"]) < 0.3
    assert s["mouth_gain"]["swap"] == pytest.approx(1.0)
    assert s["detail"]["control"] < 0.6


def test_swap_report_holds_figures_arrays_plots_and_a_self_contained_page(swap_report, swapped):
    r, out, events = swap_report
    assert r["pairing"] == "frame number" and r["range"] == {"start": START, "count": COUNT}  # from the file names
    assert r["per_frame"]["frame"] == FRAMES
    for view in ("swap", "control", "resolution", "source"):
        for key in ("distance_a", "distance_b", "landmark_error", "jitter", "flicker", "seam", "untouched_changed"):
            assert len(r["per_frame"][view][key]) == COUNT
        assert set(r["summary"]["identity_retrieval"]) == {"swap", "control", "resolution", "source"}
    s = r["summary"]
    # The swap's PNG frames are the source's bit for bit outside the mask.
    assert s["untouched_any"]["swap"] == 0
    assert s["landmark_error"]["swap"] < 0.15  # the face is still there, in the source's pose
    assert s["seam"]["swap"] < 2
    # Frames flagged no_face are exactly those without a descriptor distance (two fields of the report
    # that must agree), and the count says how many.
    no_face = {f["frame"] for f in r["flags"] if "no_face" in f["reasons"]}
    undescribed = {f for f, d in zip(FRAMES, r["per_frame"]["swap"]["distance_b"]) if d is None}
    assert no_face == undescribed and r["counts"]["no_face"] == len(no_face)
    plots = [Path(p) for p in r["plots"]]
    assert [p.name for p in plots] == ["report.identity.png", "report.stability.png", "report.expression.png"]
    for p in plots:
        image = cv2.imread(str(p))
        assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 + 2 * len(r["worst_frames"]) and len(r["worst_frames"]) > 0
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "href=" not in page and "<script" not in page
    result = [e for e in events if e["event"] == "result"][-1]
    assert str(out / "report.json") in result["outputs"] and str(out / "report.html") in result["outputs"]
    assert result["summary"]["seam"]["swap"] == pytest.approx(s["seam"]["swap"], abs=1e-5)


def test_resolution_control_is_a_perfect_model_of_the_swaps_size(tmp_path, small_model, swap_report, d18_faceset,
                                                                 d19_faceset):
    """The source's own face through the swap's model resolution (64 px) and pasted back: the
    most detail and expression any 64 px model could show, measured like the swap."""
    r, out, _ = swap_report
    s = r["summary"]
    assert r["model_resolution"] == load_config(small_model).resolution == 64
    assert all(set(s[k]) == {"swap", "control", "resolution", "source"} for k in s), s
    assert r["counts"]["resolution_no_face"] == 0  # a resampled face is still found on every frame
    line = "source face resampled through the model's 64 px and pasted back: a perfect model of this size"
    assert r["resolution_control"].startswith(line)
    assert html.escape(line) in (out / "report.html").read_text()
    # The held-out frames keep the mouth closed (inner-lip gap 0.006-0.04 of the inter-ocular
    # distance): a correlation there is dlib's noise (the resolution control's read 0.29). So the
    # expression is read where the mouth moves: d18 frames 56..103, where it opens (to 0.34),
    # stays open and closes again. Training frames, but this view involves no model.
    start, count = MOVING
    moving = tmp_path / "moving"
    swap(D18, small_model, moving, SwapSettings(start=start, count=count, aligner="dlib", device="cpu"), quiet())
    m = _evaluate(moving, d18_faceset, d19_faceset)["summary"]
    for summary in (s, m):
        # 64 px cannot hold the detail of a face ~230 px wide in these 480 px frames: measured 0.08
        # and 0.09 (DESIGN.md: 0.03 at 64 px on a ~300 px face); the source's is 1 by construction.
        assert summary["detail"]["source"] == pytest.approx(1.0)
        assert summary["detail"]["resolution"] < 0.25 * summary["detail"]["source"], summary["detail"]
        assert summary["identity_retrieval"]["resolution"] == 0.0  # a resampled A is still A
        assert summary["untouched_changed"]["resolution"] == 0  # pasted through the swap's mask, nothing beyond
    # The expression is the source's own, so it follows it: measured correlation 0.92, gain 0.98
    # (DESIGN.md: 0.83-0.84 at every size on a longer talking head).
    assert m["mouth_correlation"]["resolution"] > 0.8, m["mouth_correlation"]
    assert m["mouth_gain"]["resolution"] > 0.7, m["mouth_gain"]


def test_resolution_control_without_its_model_is_skipped_with_a_note(self_report, tmp_path):
    """No swap record (the source evaluated against itself) or a model folder gone: no resolution
    to resample through, so the view is left out (NaN, null in JSON) and the report says why."""
    r = self_report
    assert r["model_resolution"] is None and r["resolution_control"].startswith("skipped: no swap record")
    assert all(np.isnan(r["summary"][k]["resolution"]) for k in r["summary"])
    assert "resolution_no_face" not in r["counts"]
    resolution, note = model_resolution({"model": str(tmp_path / "gone")})
    assert resolution is None and "does not exist" in note


def test_source_as_swap_drops_retrieval_to_the_baseline(swap_report, self_report):
    swap_s, self_s = swap_report[0]["summary"], self_report["summary"]
    baseline = swap_s["identity_retrieval"]["source"]
    assert self_s["identity_retrieval"]["swap"] == baseline == 0.0
    assert swap_s["identity_distance_target"]["swap"] < swap_s["identity_distance_target"]["source"]
    assert swap_s["identity_retrieval"]["control"] == 1.0


def _shifted(folder: Path, shift_of) -> Path:
    """The source's own frames, frame k moved by shift_of(k) = (dx, dy) px, written as a swap."""
    folder.mkdir()
    with open_source(D18, START, COUNT) as source:
        for k, (index, frame) in enumerate(source):
            dx, dy = shift_of(k)
            moved = cv2.warpAffine(frame, np.float64([[1, 0, dx], [0, 1, dy]]), frame.shape[1::-1],
                                   borderMode=cv2.BORDER_REPLICATE)
            _write(folder / f"frame_{index:06d}.png", moved)
    return folder


def _inter_ocular(d18_faceset: Path) -> np.ndarray:
    return np.array([np.linalg.norm(np.subtract(f[0].landmarks[45], f[0].landmarks[36]))
                     for k, f in sorted(Faceset.load(d18_faceset, check_crops=False).frames.items()) if k in FRAMES])


def test_shaking_the_frames_adds_the_jitter_it_should(tmp_path, d18_faceset, d19_faceset):
    """The source's own frames shaken by a known alternating shift of (+8, +8) / (-8, -8) px, evaluated
    as the swap: no model is involved, so the figure is the same on every machine. The second
    difference of the shift is 32 px per axis (45.3 px), so the shaken jitter must exceed the
    source's, measured in the same report, by about 45.3 px over the inter-ocular distance."""
    shaken = _shifted(tmp_path / "shaken", lambda k: (8, 8) if k % 2 == 0 else (-8, -8))
    r = _evaluate(shaken, d18_faceset, d19_faceset)
    s = r["summary"]
    iod = _inter_ocular(d18_faceset)
    expected = float(np.mean(np.hypot(32, 32) / iod))
    added = s["jitter"]["swap"] - s["jitter"]["source"]
    # dlib re-fits landmarks on the moved faces (its boxes snap to a grid), so the added jitter is
    # the shift's up to a few pixels: measured 0.954 of `expected` (dlib is deterministic: no
    # thread or training noise reaches this figure); 0.8-1.2 is the bound.
    assert 0.8 * expected < added < 1.2 * expected, (added, expected, s["jitter"])
    assert s["untouched_changed"]["swap"] > 0.05  # the whole frame moved
    # The shift averages out over the frames, so the landmark error is all in the varying part
    # (measured: varying 0.97, constant 0.05 of the shift).
    moved = float(np.mean(np.hypot(8, 8) / iod))
    assert 0.8 * moved < s["landmark_tracking"]["swap"] < 1.2 * moved, (s["landmark_tracking"], moved)
    assert s["landmark_offset"]["swap"] < 0.3 * moved, (s["landmark_offset"], moved)
    assert s["landmark_offset"]["source"] == 0 and s["landmark_tracking"]["source"] == 0
    # A shift turns no head: the swap's head turn is the source's (measured equal to 3 decimals).
    assert abs(s["head_turn"]["swap"] - s["head_turn"]["source"]) < 0.01, s["head_turn"]


def test_a_constant_shift_is_an_offset_not_a_tracking_error(tmp_path, d18_faceset, d19_faceset):
    """The same frames all moved by (+8, +8) px: as large a landmark error as the shaken frames', but
    the same on every frame, as a swap's face shape is; the split puts it in the constant part.
    Beside the shaken frames' figures this is what tells a swap that paints B's face shape (or B's
    habitual head turn) from one that does not follow the source's pose and expression."""
    s = _evaluate(_shifted(tmp_path / "shifted", lambda k: (8, 8)), d18_faceset, d19_faceset)["summary"]
    moved = float(np.mean(np.hypot(8, 8) / _inter_ocular(d18_faceset)))
    # Measured: error 1.02, constant 1.01, varying 0.11 of the shift (dlib's re-fit on moved faces).
    assert 0.8 * moved < s["landmark_error"]["swap"] < 1.2 * moved, (s["landmark_error"], moved)
    assert 0.8 * moved < s["landmark_offset"]["swap"] < 1.2 * moved, (s["landmark_offset"], moved)
    assert s["landmark_tracking"]["swap"] < 0.3 * moved, (s["landmark_tracking"], moved)


def test_unmasked_paste_raises_the_seam(tmp_path, monkeypatch, small_model, swap_report, d18_faceset, d19_faceset):
    """The same swap composited through the crop's full square instead of the feathered hull."""
    monkeypatch.setattr(masks, "face_mask", lambda points, size, **kw: np.ones((size, size), np.float32))
    r = _evaluate(_swap(small_model, tmp_path / "square"), d18_faceset, d19_faceset)
    before, after = swap_report[0]["summary"], r["summary"]
    # The mean-face control goes through the same mask (no model, no training noise): its seam must
    # rise well above the feathered one's. The swap's own must rise too, by any amount.
    assert after["seam"]["control"] > 1.5 * before["seam"]["control"], (before["seam"], after["seam"])
    assert after["seam"]["swap"] > before["seam"]["swap"], (before["seam"], after["seam"])
    assert after["untouched_changed"]["control"] > before["untouched_changed"]["control"] + 0.01


def test_frames_without_a_face_are_flagged_not_fatal(tmp_path, swapped, d18_faceset, d19_faceset):
    part = tmp_path / "part"
    part.mkdir()
    boxes = Faceset.load(d18_faceset, check_crops=False).frames
    blank = START + 2
    for frame in range(START, START + 4):
        image = _read(swapped / f"frame_{frame:06d}.png")
        if frame == blank:  # the face painted over with the background's grey
            x0, y0, x1, y1 = np.asarray(boxes[frame][0].box)
            w, h = x1 - x0, y1 - y0
            image[int(max(0, y0 - 0.5 * h)):int(y1 + 0.5 * h), int(max(0, x0 - 0.5 * w)):int(x1 + 0.5 * w)] = image[5, 5]
        _write(part / f"frame_{frame:06d}.png", image)
    r = _evaluate(part, d18_faceset, d19_faceset)
    assert r["counts"]["no_face"] == 1 and r["flags"] == [{"frame": blank, "reasons": ["no_face"]}]
    distances = np.array(r["per_frame"]["swap"]["distance_b"])
    assert np.isnan(distances[2]) and np.isfinite(distances[[0, 1, 3]]).all()
    assert r["summary"]["identity_distance_target"]["swap"] == pytest.approx(np.nanmean(distances))
    assert np.isfinite(r["per_frame"]["swap"]["seam"][2])  # what needs no re-detected face still holds
    outputs = write_reports(r, tmp_path / "r.json", tmp_path / "r.html")
    assert json.loads((tmp_path / "r.json").read_text())["per_frame"]["swap"]["distance_b"][2] is None
    assert "no_face" in (tmp_path / "r.html").read_text() and len(outputs) == 5


def _short_mp4(path: Path, start: int, count: int) -> Path:
    with open_source(D18, start, count) as src:
        sink = open_sink(path, "mp4", src.info.fps, src.info.width, src.info.height)
        for index, frame in src:
            sink.write(index, frame)
        sink.close()
    return path


def _one_line_error(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_inputs_name_what_differs(tmp_path, swapped, d18_faceset, d19_faceset):
    facesets = ("--faceset-a", d18_faceset, "--faceset-b", d19_faceset)
    # A movie of 5 frames pairs with exactly a 5-frame range, not with 12 frames nor the whole clip.
    short = _short_mp4(tmp_path / "short.mp4", START, 5)
    assert pair_frames(D18, short, START, 5).how == "position"
    message = _one_line_error(run_cli("evaluate", "--source", D18, "--swapped", short, "--start", START,
                                      "--count", COUNT, *facesets))
    assert "5 frames" in message and "216" in message and f"{START}..{START + COUNT - 1}" in message
    # Frames numbered past the source's end.
    beyond = tmp_path / "beyond"
    beyond.mkdir()
    shutil.copy(swapped / f"frame_{START:06d}.png", beyond / "frame_000300.png")
    with pytest.raises(MediaError, match="up to 300.* has 216"):
        pair_frames(D18, beyond)
    # Frames of another size.
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(swapped.glob("frame_*.png")):
        _write(small / path.name, cv2.resize(_read(path), (240, 240), interpolation=cv2.INTER_AREA))
    message = _one_line_error(run_cli("evaluate", "--source", D18, "--swapped", small, *facesets))
    assert "240x240" in message and "480x480" in message
    # A folder with frames missing in the middle of the range.
    gaps = tmp_path / "gaps"
    shutil.copytree(swapped, gaps)
    for frame in (176, 180, 181):
        (gaps / f"frame_{frame:06d}.png").unlink()
    result = run_cli("evaluate", "--source", D18, "--swapped", gaps, *facesets, "--events", "jsonl")
    assert result.returncode == 1
    error = [e for e in events_of(result.stdout) if e["event"] == "error"]
    assert len(error) == 1 and "176, 180-181" in error[0]["message"] and f"{START}..{START + COUNT - 1}" in error[0]["message"]


def test_model_mode_reports_held_out_rebuild_quality(tmp_path, small_model, d18_faceset, d19_faceset):
    out = tmp_path / "model.json"
    code, events = _main("evaluate", "--model", small_model, "--faceset-a", d18_faceset, "--faceset-b", d19_faceset,
                         "--json", out, "--html", tmp_path / "model.html")
    assert code == 0, events[-3:]
    assert events[-1]["event"] == "result" and set(events[-1]["summary"]) == {"a", "b"}
    r = json.loads(out.read_text())
    assert r["kind"] == "model" and r["holdout"] == 0.2 and r["iteration"] == 60
    for identity in ("a", "b"):
        m = r["identities"][identity]
        assert m["faces"] > 30 and len(m["per_face_psnr"]) == m["faces"]
        # Better than the untrained model of the same seed, even after 60 iterations: measured SSIM
        # +0.157..+0.202 and PSNR +5.9..+7.8 dB (seed 3 at 1 and 2 threads, benchmarks/test_margins.py),
        # so +0.05 and +1 dB hold with a wide margin.
        assert m["ssim"] > m["control_ssim"] + 0.05 and m["psnr"] > m["control_psnr"] + 1, m
    page = (tmp_path / "model.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    code, events = _main("evaluate", "--model", small_model, "--source", D18)
    assert code == 1 and events[-1]["event"] == "error" and "one or the other" in events[-1]["message"]
