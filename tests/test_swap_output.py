"""A swap's records as chunks of one shot update them: ranges combine, flags merge by frame, and a
chunk clears only its own leftovers."""
from __future__ import annotations

import json

from core import outputs, swap_output


def _record(tmp_path, **extra):
    record = swap_output.make_record({"path": "/a.mp4", "size": 1, "mtime": 2.0, "fps": 30.0}, tmp_path / "m",
                                     {"model_id": "x", "iteration": 5}, {"format": "png", "mode": "composite"})
    swap_output.write_record(tmp_path, "png", {**record, **extra})
    return record


def test_ranges_of_chunks_combine_into_the_shots(tmp_path):
    record = _record(tmp_path)
    assert swap_output.add_range(tmp_path, "png", 50, 50) == [[50, 50]]
    assert swap_output.add_range(tmp_path, "png", 150, 66) == [[50, 50], [150, 66]]
    assert swap_output.add_range(tmp_path, "png", 0, 50) == [[0, 100], [150, 66]]
    assert swap_output.add_range(tmp_path, "png", 100, 50) == [[0, 216]]
    assert swap_output.add_range(tmp_path, "png", 10, 5) == [[0, 216]]
    swap_output.write_record(tmp_path, "png", record)  # a rerun of the same work keeps them
    assert swap_output.read_record(tmp_path)["ranges"] == [[0, 216]]
    swap_output.write_record(tmp_path, "png", {**record, "iteration": 6})  # other work starts none
    assert swap_output.read_record(tmp_path)["ranges"] == []


def test_flags_merge_by_frame(tmp_path):
    swap_output.write_flags(tmp_path, "png", {3: ["no_face"], 60: ["low_score"], 70: ["no_face"]})
    swap_output.merge_flags(tmp_path, "png", range(50, 100), {55: ["landmark_jump"], 70: ["no_face"]})
    assert swap_output.read_flags(tmp_path, "png") == {3: ["no_face"], 55: ["landmark_jump"], 70: ["no_face"]}
    assert json.loads((tmp_path / "flags.json").read_text())["flags"][0] == {"frame": 3, "reasons": ["no_face"]}


def test_a_chunk_removes_only_its_own_leftovers(tmp_path):
    mine, theirs = ".frame_000010.png.0a1b2c3d4e5f.tmp", ".frame_000090.png.0a1b2c3d4e5f.tmp"
    for name in (mine, theirs, "frame_000010.png"):
        (tmp_path / name).write_bytes(b"x")
    assert outputs.temp_target(mine) == "frame_000010.png" and outputs.temp_target("frame_000010.png") is None
    assert outputs.remove_stale_temps(tmp_path, targets={swap_output.frame_name(i, "png") for i in range(0, 50)}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([theirs, "frame_000010.png"])
