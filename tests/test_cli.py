"""Argument parsing and the error line: fast, no media, no model."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from core import cli
from core.swap_output import differences, make_record, numbered


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("option,value,why", [
    ("--blur", "1000", "outside 0..1"), ("--erode", "nan", "not a finite number"), ("--smooth", "inf", "not a finite"),
    ("--smooth", "-1", "outside 0..10"), ("--count", "0", "outside 1..1e+08"), ("--start", "x", "not an integer"),
])
def test_out_of_range_swap_options_are_one_error_line(option, value, why):
    code, out, err = _main("swap", "in.mp4", "--model", "m", "--out", "o", option, value)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: deepfake swap: argument " + option) and why in err, err


@pytest.mark.parametrize("argv", [("train", "--faceset-a", "a", "--faceset-b", "b", "--model", "m", "--save-every", "0"),
                                  ("train", "--faceset-a", "a", "--faceset-b", "b", "--model", "m", "--batch-size", "100000000"),
                                  ("extract", "in.mp4", "--out", "o", "--size", "abc"),
                                  ("swap", "in.mp4", "--model", "m", "--out", "o", "--colour", "x"),
                                  ("nonsense",)])
def test_bad_command_lines_are_one_error_line_and_a_json_event(argv):
    code, out, err = _main(*argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    code, out, err = _main(*argv, "--events", "jsonl")
    assert code == 2 and json.loads(out)["event"] == "error"


def test_a_record_names_each_difference():
    settings = {"direction": "a2b", "mode": "composite", "format": "png", "bit_depth": 8, "color": "mean-std",
                "smooth": 1.0, "erode": 0.03, "blur": 0.08, "face": "identity", "yuv": "accurate", "colorspace": "sRGB"}
    source = {"path": "/a.mp4", "size": 10, "mtime": 1.0}
    old = make_record(source, "/m", {"model_id": "x", "iteration": 300}, settings)
    same = make_record(source, "/m", {"model_id": "x", "iteration": 300}, settings)
    assert differences(old, same) == []
    moved = make_record(source, "/elsewhere/m", {"model_id": "x", "iteration": 300}, settings)
    assert differences(old, moved) == []  # the same model reached by another path
    later = make_record({**source, "mtime": 2.0}, "/m", {"model_id": "x", "iteration": 600}, {**settings, "color": "none"})
    assert differences(old, later) == ["source /a.mp4 changed since", "model iteration 300 -> 600",
                                       "colour transfer mean-std -> none"]
    assert differences({"model": "/m"}, same)[0].startswith("it was written by an earlier version")
    assert numbered(Path("/w/shot"), 2).name == "shot_2"
    assert numbered(Path("/w/shot.mp4"), 3).name == "shot_3.mp4"
