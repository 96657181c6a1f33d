"""Reading a faceset validates it: clear errors, no code run, whoever made the files."""
from __future__ import annotations

import json
import shutil

import pytest

from core.errors import FacesetError
from core.faceset import Faceset


@pytest.fixture
def faceset_copy(d18_faceset, tmp_path):
    copy = tmp_path / "faceset"
    shutil.copytree(d18_faceset, copy)
    return copy


def _edit(folder, change):
    path = folder / "alignments.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_round_trip_keeps_everything(faceset_copy):
    faceset = Faceset.load(faceset_copy)
    before = faceset.to_json()
    faceset.save()
    assert Faceset.load(faceset_copy).to_json() == before


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.update(format="something-else"), "not a blender-deepfake-faceset"),
    (lambda d: d["frames"]["3"][0].update(landmarks=[[0, 0]] * 5), "frames.3.landmarks"),
    (lambda d: d["frames"]["3"][0].update(matrix="__import__('os')"), "frames.3.matrix"),
    (lambda d: d["frames"]["3"][0].update(index="0"), "frames.3.index should be int"),
    (lambda d: d["frames"]["3"][0].update(file="../../etc/passwd"), "outside the faceset"),
    (lambda d: d["range"].update(count=True), "range.count should be int"),
    (lambda d: d.pop("source"), "missing field 'source'"),
])
def test_bad_alignments_give_clear_errors(faceset_copy, change, message):
    _edit(faceset_copy, change)
    with pytest.raises(FacesetError, match="alignments.json") as error:
        Faceset.load(faceset_copy)
    assert message in str(error.value)


def test_missing_crops_and_broken_json_are_reported(faceset_copy):
    (faceset_copy / "faces" / "000007_0.png").unlink()
    with pytest.raises(FacesetError, match="1 crop.* missing.*000007_0.png"):
        Faceset.load(faceset_copy)
    (faceset_copy / "alignments.json").write_text('{"format": "blender-deepfake-faceset", "vers')
    with pytest.raises(FacesetError, match="not readable JSON"):
        Faceset.load(faceset_copy)
    with pytest.raises(FacesetError, match="no alignments.json"):
        Faceset.load(faceset_copy / "faces")
