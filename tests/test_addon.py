"""The add-on against the real `bpy` module: registration, packaging, and the operators in
background mode (they block until the core subprocess ends), on the shared sample clips."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from conftest import CORE_PYTHON, ROOT, VIDEO, png_image_data, run_cli

bpy = pytest.importorskip("bpy")

D18 = VIDEO / "liveportrait_d18.mp4"


def test_manifest_names_the_extension():
    manifest = tomllib.loads((ROOT / "addon_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "blender_deepfake" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["permissions"]["files"]
    assert "never when offline" in manifest["permissions"]["network"]  # the reason Blender shows the user


def test_register_and_unregister_twice():
    import blender_deepfake

    for _ in range(2):
        blender_deepfake.register()
        assert hasattr(bpy.types.Scene, "deepfake") and hasattr(bpy.ops.deepfake, "extract")
        blender_deepfake.unregister()
        assert not hasattr(bpy.types.Scene, "deepfake")


def test_built_zip_validates(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_addon.py"), "--out-dir", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    zip_path = Path(done.stdout.strip().splitlines()[-1])
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "vse.py" in names
    assert not any(n.startswith("core/") for n in names)


INSTALL_AND_SWAP = """
import json, sys
import bpy
zip_path, model, movie, work = sys.argv[1:5]
done = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.blender_deepfake"
prefs = bpy.context.preferences.addons[module].preferences
checked = bpy.ops.deepfake.check_core()
report = {"install": sorted(done), "module": module in sys.modules, "check": sorted(checked),
          "python_pref": prefs.python, "result": prefs.check_result, "scene": hasattr(bpy.types.Scene, "deepfake")}
prefs.device, prefs.work_folder = "cpu", work
scene = bpy.context.scene
scene.sequence_editor_create()
if hasattr(bpy.context.workspace, "sequencer_scene"):
    bpy.context.workspace.sequencer_scene = scene
strips = scene.sequence_editor.strips if hasattr(scene.sequence_editor, "strips") else scene.sequence_editor.sequences
strip = strips.new_movie(name="footage", filepath=movie, channel=1, frame_start=1)
strip.frame_final_duration = 6
strip.select = True
scene.sequence_editor.active_strip = strip
scene.deepfake.model_folder, scene.deepfake.aligner, scene.deepfake.evaluate = model, "dlib", False
scene.deepfake.swap_mode, scene.deepfake.swap_format = "composite", "png"
report["swap"] = sorted(bpy.ops.deepfake.swap())
report["strips"] = sorted((s.name, s.type, s.channel, s.frame_final_start, s.frame_final_duration) for s in strips)
print(json.dumps(report))
"""


def test_built_zip_installs_as_an_extension_finds_the_recorded_core_and_swaps(tmp_path, tiny_model):
    """What a user does: run scripts/setup.sh (which records the core), Install from Disk (the
    extension lands in bl_ext.user_default), leave every preference alone, Check Core, Swap; in a
    fresh Blender process with its own user folder. Under .venv-bpy42 Blender's own Python has no
    core, so only the record can make this pass."""
    sys.path.insert(0, str(ROOT))
    from blender_deepfake import core_record

    built = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_addon.py"), "--out-dir", str(tmp_path)],
                           check=False, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    zip_path = built.stdout.strip().splitlines()[-1]
    record = tmp_path / "config" / "core.json"
    core_record.write_record(core_record.CoreRecord(python=CORE_PYTHON, project=str(ROOT), torch_build="cpu",
                                                    reason="test"), record)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"), "DEEPFAKE_CORE_RECORD": str(record)}
    done = subprocess.run([sys.executable, "-c", INSTALL_AND_SWAP, zip_path, str(tiny_model), str(D18),
                           str(tmp_path / "work")], check=False, capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    result = report.pop("result")
    assert report == {"install": ["FINISHED"], "module": True, "check": ["FINISHED"], "python_pref": "", "scene": True,
                      "swap": ["FINISHED"], "strips": [["footage", "MOVIE", 1, 1, 6], ["footage composite", "IMAGE", 2, 1, 6]]}
    assert result.startswith(f"OK: {CORE_PYTHON}: core and its dependencies import; torch ")
    assert result.endswith(f"device auto: cpu (from the setup record {record})")
    assert (tmp_path / "user" / "extensions" / "user_default" / "blender_deepfake" / "vse.py").is_file()
    swapped = sorted((tmp_path / "work" / "swaps").rglob("frame_*.png"))
    assert [p.name for p in swapped] == [f"frame_{i:06d}.png" for i in range(6)]


def test_check_core_without_any_core_names_the_setup_command(scene, addon, monkeypatch, tmp_path):
    """No preference, no record, and a Blender Python without core (faked by an interpreter that
    cannot import it): the message says what to run."""
    from blender_deepfake import jobs

    monkeypatch.setenv("DEEPFAKE_CORE_RECORD", str(tmp_path / "none.json"))
    bare = tmp_path / "python"
    bare.write_text("#!/bin/sh\nexec /usr/bin/env -i /bin/false\n")
    bare.chmod(0o755)
    monkeypatch.setattr(jobs, "default_python", lambda: str(bare))
    addon.python = ""
    with pytest.raises(RuntimeError, match="fix: run `bash scripts/setup.sh`"):  # the ERROR report
        bpy.ops.deepfake.check_core()
    assert addon.check_result.startswith(f"Missing: {bare} cannot import core")
    assert "fix: run `bash scripts/setup.sh` in the blender-deepfake folder" in addon.check_result


# -- operators -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def addon():
    """The add-on enabled the way Blender enables it, so its preferences exist."""
    import addon_utils

    addon_utils.enable("blender_deepfake", default_set=True)
    yield bpy.context.preferences.addons["blender_deepfake"].preferences
    addon_utils.disable("blender_deepfake", default_set=True)


@pytest.fixture()
def scene(addon, tmp_path):
    """A clean scene, the core interpreter = CORE_PYTHON (this Python, or the main environment's
    when bpy 4.2 runs in its own environment), an absolute work folder in tmp."""
    from blender_deepfake import vse

    addon.python, addon.core_path, addon.device = CORE_PYTHON, "", "cpu"
    addon.work_folder = str(tmp_path / "work")
    scene = bpy.context.scene
    scene.sequence_editor_clear()
    scene.timeline_markers.clear()
    scene.deepfake.strip_links.clear()
    scene.deepfake.swap_results.clear()
    scene.deepfake.evaluate = False  # on by default; test_addon_workflow evaluates
    scene.deepfake.facesets_a.clear()
    scene.deepfake.facesets_b.clear()
    scene.deepfake.job_status = ""
    scene.deepfake.aligner = "dlib"
    scene.deepfake.model_folder = ""
    vse.ensure_editor(scene)
    return scene


def movie_strip(scene, path: Path, first: int, count: int, channel: int = 1, frame_start: int = 1):
    """A movie strip showing source frames first..first+count-1, selected and active."""
    from blender_deepfake import vse

    strip = vse.add_movie_strip(scene, path, channel, frame_start)
    strip.frame_offset_start = first
    strip.frame_final_duration = count
    select_only(scene, strip)
    return strip


def select_only(scene, strip) -> None:
    from blender_deepfake import vse

    for other in vse.all_strips(scene):
        other.select = False
    if strip is not None:
        strip.select = True
    scene.sequence_editor.active_strip = strip


def snapshot(scene, work: Path) -> tuple:
    from blender_deepfake import vse

    strips = sorted((s.name, s.type, s.channel, s.frame_final_start, s.frame_final_duration)
                    for s in vse.all_strips(scene))
    markers = sorted((m.name, m.frame) for m in scene.timeline_markers)
    files = sorted(str(p) for p in work.rglob("*")) if work.exists() else []
    return strips, markers, len(scene.deepfake.strip_links), files


def test_visible_range_of_a_trimmed_movie_strip(scene):
    from blender_deepfake import vse

    strip = movie_strip(scene, D18, 10, 50, frame_start=5)
    assert vse.visible_range(strip) == (D18, 10, 50)
    assert strip.frame_final_start == 15
    assert vse.strip_colorspace(strip) == "sRGB"


def test_version_shims(scene, addon):
    """What vse.py papers over between 4.2 (`sequences`, `new_effect(frame_end=, seq1=)`, no
    `media_type`, no blend-relative path flag) and 5.0 (`strips`, `length=`, `input1=`)."""
    from blender_deepfake import vse

    a = vse.new_effect(scene, "A", "COLOR", 1, 40, length=5)
    b = vse.new_effect(scene, "B", "COLOR", 2, 40, length=5)
    assert (a.type, a.channel, a.frame_final_start, a.frame_final_duration) == ("COLOR", 1, 40, 5)
    cross = vse.new_effect(scene, "Cross", "CROSS", 3, 40, length=5, inputs=(a, b))
    assert (cross.input_1, cross.input_2) == (a, b) and cross.frame_final_start == 40
    assert vse.top_strips(scene)["Cross"] == cross
    assert {s.name for s in vse.all_strips(scene)} == {"A", "B", "Cross"}
    select_only(scene, b)
    assert vse.active_strip(scene) == b and vse.selected_strips(scene) == [b]
    assert type(b).__name__ in ("ColorSequence", "ColorStrip")
    vse.set_video_output(scene)
    assert scene.render.image_settings.file_format == "FFMPEG"
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties:  # 5.0, not 4.2
        assert type(addon).bl_rna.properties["work_folder"].is_path_supports_blend_relative


def test_the_colour_menu_and_batch_options_are_the_cores_transfers(addon):
    """The add-on cannot import core (DESIGN.md), so its Color menu and the batch script's --color
    repeat the core's registry; this is where they are held equal."""
    from blender_deepfake import batch
    from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR

    prop = bpy.types.Scene.bl_rna.properties["deepfake"].fixed_type.bl_rna.properties["color"]
    items = [(i.identifier, i.name, i.description) for i in prop.enum_items]
    assert items == [(t.name, t.label, t.description) for t in COLOR_TRANSFERS.values()]
    assert prop.default == DEFAULT_COLOR
    option = next(a for a in batch.parser()._subparsers._group_actions[0].choices["swap"]._actions
                  if a.dest == "color")
    assert list(option.choices) == list(COLOR_TRANSFERS) and option.default == DEFAULT_COLOR


class _Layout:
    """Records what a draw() asks for: every icon, and every property it shows must exist."""

    def __init__(self, icons: list[str], texts: list[str] | None = None):
        self.icons, self.texts = icons, texts if texts is not None else []

    def _item(self, *args, icon: str = "NONE", text: str = "", **kwargs):
        if icon != "NONE":
            self.icons.append(icon)
        if text:
            self.texts.append(text)
        return _Layout(self.icons, self.texts)

    label = operator = progress = _item
    box = column = row = _item

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        return self._item(**kwargs)


class _Drawing:
    """`self` for a draw() call outside Blender's UI: a recording layout, the rest from `target`."""

    def __init__(self, target, layout: _Layout):
        self.layout, self._target = layout, target

    def __getattr__(self, name):
        return getattr(self._target, name)


def test_panel_and_preferences_draw_with_this_versions_icons(scene, addon):
    from blender_deepfake import ui

    strip = movie_strip(scene, D18, 0, 10)
    scene.deepfake.strip_links.add().name = strip.name
    scene.deepfake.facesets_a.add().path = "/a"
    scene.deepfake.job_status = "extract: done"
    addon.check_result = "OK"
    icons: list[str] = []
    for panel in ui.classes:
        panel.draw(_Drawing(panel, _Layout(icons)), bpy.context)
    type(addon).draw(_Drawing(addon, _Layout(icons)), bpy.context)
    known = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()
    assert len(icons) >= 10 and [i for i in icons if i not in known] == []


def test_the_swap_button_comes_before_any_setting(scene, addon):
    """At the Video Editing workspace's default split the sidebar shows ~350 px: the three
    buttons are the top panel's first items (the settings are in sub-panels below), before the
    job's lines (docs/panel.png is a screenshot at that split)."""
    from blender_deepfake import ui

    movie_strip(scene, D18, 0, 10)
    scene.deepfake.job_status = "train: running, 4000/10000, ETA 12:34, loss A 0.0213 B 0.0241"
    texts: list[str] = []
    ui.DEEPFAKE_PT_panel.draw(_Drawing(ui.DEEPFAKE_PT_panel, _Layout([], texts)), bpy.context)
    assert texts[:4] == ["Active: liveportrait_d18", "1. Extract Faces", "2. Train Model", "3. Swap Face"]
    assert texts[4] == "train: running"
    assert all(getattr(panel, "bl_parent_id", "") == "DEEPFAKE_PT_panel" for panel in ui.classes[1:])


def test_extract_covers_exactly_the_visible_source_frames(scene, addon):
    strip = movie_strip(scene, D18, 10, 50)
    assert bpy.ops.deepfake.extract() == {"FINISHED"}
    faceset = Path(addon.work_folder) / "facesets" / strip.name
    frames = sorted(int(f) for f in json.loads((faceset / "alignments.json").read_text())["frames"])
    assert frames == list(range(10, 60))
    link = scene.deepfake.strip_links[strip.name]
    assert Path(link.faceset) == faceset and (link.first, link.count) == (10, 50)


def _refused(scene, addon, operator, match: str) -> None:
    """The operator reports an error (bpy.ops raises it as RuntimeError) and changes nothing."""
    work = Path(addon.work_folder)
    before = snapshot(scene, work)
    with pytest.raises(RuntimeError, match=match):
        operator()
    assert snapshot(scene, work) == before


def test_no_strip_selected_is_refused(scene, addon):
    from blender_deepfake import vse

    strip = movie_strip(scene, D18, 0, 10)
    select_only(scene, None)
    _refused(scene, addon, bpy.ops.deepfake.extract, "select one or more")
    _refused(scene, addon, bpy.ops.deepfake.swap, "make a movie or image strip active")
    assert strip.name in vse.top_strips(scene)


def test_color_strip_is_refused(scene, addon):
    from blender_deepfake import vse

    color = vse.new_effect(scene, "Colour", "COLOR", 2, 1, length=10)
    select_only(scene, color)
    _refused(scene, addon, bpy.ops.deepfake.extract, "color strip")
    _refused(scene, addon, bpy.ops.deepfake.swap, "color strip")


def test_strip_with_missing_file_is_refused(scene, addon, tmp_path):
    from blender_deepfake import vse

    strip = movie_strip(scene, D18, 0, 10)
    strip.filepath = str(tmp_path / "gone.mp4")
    _refused(scene, addon, bpy.ops.deepfake.extract, "movie is missing")
    with pytest.raises(vse.StripError):
        vse.add_movie_strip(scene, tmp_path / "gone.mp4", 3, 1)  # never a silent 1-frame strip
    assert len(vse.all_strips(scene)) == 1


def test_swap_refuses_a_folder_that_is_not_a_model(scene, addon, tmp_path):
    movie_strip(scene, D18, 0, 10)
    (tmp_path / "not_a_model").mkdir()
    scene.deepfake.model_folder = str(tmp_path / "not_a_model")
    _refused(scene, addon, bpy.ops.deepfake.swap, "not a model folder")


def test_interpreter_without_core_is_refused(scene, addon, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    movie_strip(scene, D18, 0, 10)
    addon.python = str(fake)
    _refused(scene, addon, bpy.ops.deepfake.extract, "cannot import core")
    addon.python = str(tmp_path / "missing_python")
    _refused(scene, addon, bpy.ops.deepfake.extract, "core interpreter not found")


def test_relative_work_folder_on_an_unsaved_file_is_refused(scene, addon):
    assert not bpy.data.filepath
    movie_strip(scene, D18, 0, 10)
    addon.work_folder = "//deepfake/"
    before = snapshot(scene, Path("deepfake"))
    with pytest.raises(RuntimeError, match="save the .blend first"):
        bpy.ops.deepfake.extract()
    assert snapshot(scene, Path("deepfake")) == before


def test_cancel_stops_the_core_subprocess(tmp_path):
    from blender_deepfake import jobs

    # 282 frames of 720p: cancelled at the first progress report, the job has most of its work
    # ahead of it on any machine (the 275-frame Hamilton clip once ended first, in 3 s).
    argv = jobs.core_command(CORE_PYTHON, "extract", [VIDEO / "liveportrait_s18.mp4",
                                                         "--out", tmp_path / "fs", "--aligner", "dlib"])
    job = jobs.Job(argv, "extract", env=jobs.core_env(), cwd=str(tmp_path))
    deadline = time.monotonic() + 60
    while job.poll(timeout=0.1).done == 0 and not job.state.finished and time.monotonic() < deadline:
        pass
    assert not job.state.finished and job.state.done > 0, "the extract ended before it could be cancelled"
    job.cancel()
    state = job.wait()
    assert state.status == "cancelled" and job.proc.poll() is not None and state.done < 282
    assert job not in jobs.running_jobs()


# -- swap with a tiny model ------------------------------------------------------------------------------
def test_overlay_swap_lands_on_the_first_free_channel_above(scene, addon, tiny_model):
    from blender_deepfake import vse

    strip = movie_strip(scene, D18, 10, 12, channel=1, frame_start=21)
    blocker = vse.new_effect(scene, "Blocker", "COLOR", 2, 40, length=5)  # overlaps 31..42: channel 2 is taken
    select_only(scene, strip)
    scene.deepfake.model_folder = str(tiny_model)
    scene.deepfake.swap_mode = "overlay"
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    added = [s for s in vse.all_strips(scene) if s not in (strip, blocker)]
    assert len(added) == 1
    result = added[0]
    assert result.type == "IMAGE" and result.channel == 3
    assert strip.frame_final_start == 31
    assert (result.frame_final_start, result.frame_final_duration) == (strip.frame_final_start, 12)
    assert result.blend_type == "ALPHA_OVER" and result.alpha_mode == "STRAIGHT"
    assert result.elements[0].filename == "frame_000010.png" and len(result.elements) == 12


def test_swap_after_more_training_replaces_or_keeps_the_earlier_result(tmp_path, scene, addon, tiny_model):
    """Swap, train further, Swap again: Replace (the default) updates the strip's folder with the new
    model's frames; Keep leaves it and places a strip reading a new folder beside it."""
    import shutil

    from blender_deepfake import vse

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns(".deepfake.lock"))
    base = tiny_model.parent

    def train_to(iterations: int) -> None:
        done = run_cli("train", "--faceset-a", base / "d18", "--faceset-b", base / "d19", "--model", model,
                       "--iterations", iterations, "--batch-size", 2, "--device", "cpu")
        assert done.returncode == 0, done.stderr

    strip = movie_strip(scene, D18, 0, 4, channel=1, frame_start=1)
    settings = scene.deepfake
    settings.model_folder, settings.evaluate = str(model), False

    def swap_once() -> tuple[Path, dict[str, bytes]]:
        select_only(scene, strip)
        assert bpy.ops.deepfake.swap() == {"FINISHED"}
        placed = [s for s in vse.all_strips(scene) if s.type == "IMAGE"][-1]
        folder = Path(bpy.path.abspath(placed.directory))
        return folder, {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*.png"))}

    assert settings.swap_existing == "replace"
    first_folder, first = swap_once()
    train_to(8)
    again_folder, again = swap_once()
    assert again_folder == first_folder and again.keys() == first.keys()
    assert {n: png_image_data(b) for n, b in again.items()} != {n: png_image_data(b) for n, b in first.items()}
    train_to(10)
    settings.swap_existing = "new"
    kept_folder, kept = swap_once()
    assert kept_folder == first_folder.with_name(first_folder.name + "_2") and len(kept) == 4
    assert {p.name: p.read_bytes() for p in sorted(first_folder.glob("frame_*.png"))} == again


def _png(path: Path) -> None:
    """A valid 1x1 RGBA PNG (no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")) + chunk(b"IEND", b""))


def test_flags_become_markers_at_the_strips_timeline_frames(scene, tmp_path):
    """The swap's placement step on a prepared output: flagged source frames 12 and 14 of a strip
    showing source frames 10..14 from timeline frame 31 give markers at 33 and 35, named by reason."""
    from blender_deepfake import jobs, ops, vse

    out = tmp_path / "swap"
    out.mkdir()
    for n in range(10, 15):
        _png(out / f"frame_{n:06d}.png")
    strip = movie_strip(scene, D18, 10, 5, frame_start=21)
    snap = {"name": strip.name, "start": 31, "duration": 5, "colorspace": "sRGB"}
    after = ops.DEEPFAKE_OT_swap._placer(snap, out, D18, 10, 5, "composite", "png", True, {}, lambda written: None)
    # The swap's result event as the core writes it (core.swap_output.placed): the frames' files
    # and the flagged frames of the range with their reasons.
    result = {"event": "result", "output": str(out), "files": [f"frame_{n:06d}.png" for n in range(10, 15)],
              "first": 10, "count": 5, "flagged": [[12, ["no_face"]], [14, ["low_score", "jump"]]]}
    after(bpy.context, jobs.JobState(step="swap", result=result))
    assert sorted((m.frame, m.name) for m in scene.timeline_markers) == [(33, "no_face"), (35, "low_score, jump")]
    result = vse.top_strips(scene)[f"{strip.name} composite"]
    assert (result.channel, result.frame_final_start, result.frame_final_duration) == (2, 31, 5)


def test_train_starts_a_new_model_from_a_pretrained_one_and_resumes_without_it(scene, addon, tiny_model, tmp_path):
    """Start From applies to a new model only; Train again resumes it (the start is recorded)."""
    base = tiny_model.parent
    settings = scene.deepfake
    settings.facesets_a.add().path = str(base / "d18")
    settings.facesets_b.add().path = str(base / "d19")
    settings.model_folder = str(tmp_path / "pair")
    settings.init_model = str(tiny_model)
    settings.iterations = 2
    assert bpy.ops.deepfake.train() == {"FINISHED"}
    state = json.loads((tmp_path / "pair" / "state.json").read_text())
    assert state["init"]["model"] == str(tiny_model.resolve()) and state["iteration"] == 2
    settings.iterations = 3
    assert bpy.ops.deepfake.train() == {"FINISHED"}  # resumes: no --init for a folder that holds a model
    assert json.loads((tmp_path / "pair" / "state.json").read_text())["iteration"] == 3
    settings.model_folder = str(tmp_path / "other")
    settings.init_model = str(tmp_path / "nothing")
    with pytest.raises(RuntimeError, match="Start From: .* is not a model folder"):
        bpy.ops.deepfake.train()


def test_farm_job_of_a_trimmed_strip_runs_and_lands_like_a_local_swap(tmp_path, scene, addon, tiny_model):
    """Write Farm Job on a strip showing source frames 10..59: the bundle names exactly those
    frames; `openjd run` of the bundle (as a farm would) swaps them in chunks; Load Farm Result
    places them above the strip on its own timeline frames, as Swap does. Before the farm has
    written every frame, Load Farm Result refuses and changes nothing."""
    from blender_deepfake import vse

    strip = movie_strip(scene, D18, 10, 50, channel=1, frame_start=101)
    settings = scene.deepfake
    settings.model_folder, settings.farm_chunk_size = str(tiny_model), 20
    settings.swap_mode, settings.swap_format = "overlay", "png"
    _refused(scene, addon, bpy.ops.deepfake.farm_job, "composited PNG")  # the movie is joined at the end
    settings.swap_mode = "composite"
    assert bpy.ops.deepfake.farm_job() == {"FINISHED"}
    (bundle,) = (tmp_path / "work" / "farm").iterdir()
    params = json.loads((bundle / "parameters.json").read_text())
    assert (params["FrameStart"], params["FrameEnd"], params["ChunkSize"]) == (10, 59, 20)
    assert params["Source"] == str(D18) and params["Model"] == str(tiny_model) and params["CorePython"] == CORE_PYTHON
    assert params["Colorspace"] == "sRGB" and params["Yuv"] == vse.movie_yuv_conversion()
    before = snapshot(scene, tmp_path / "work" / "swaps")
    with pytest.raises(RuntimeError, match="holds no swap yet"):
        bpy.ops.deepfake.farm_result()
    assert snapshot(scene, tmp_path / "work" / "swaps") == before
    openjd = Path(CORE_PYTHON).with_name("openjd")
    job = subprocess.run([str(openjd), "run", str(bundle / "template.yaml"), "--step", "Assemble", "--run-dependencies",
                          "-p", f"file://{bundle / 'parameters.json'}"], capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:]
    out = Path(params["Output"])
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:06d}.png" for i in range(10, 60)]
    assert Path(params["Movie"]).is_file()
    select_only(scene, strip)
    assert bpy.ops.deepfake.farm_result() == {"FINISHED"}
    placed = [s for s in vse.all_strips(scene) if s.type == "IMAGE"]
    assert len(placed) == 1 and placed[0].channel == 2
    assert (placed[0].frame_final_start, placed[0].frame_final_duration) == (strip.frame_final_start, 50)
    assert Path(bpy.path.abspath(placed[0].directory)) == out
    assert [e.filename for e in placed[0].elements] == [f"frame_{i:06d}.png" for i in range(10, 60)]


def test_with_online_access_off_the_addons_extract_makes_no_network_attempt(scene, addon, monkeypatch, tmp_path):
    """The bpy module starts with Allow Online Access off (as a Blender whose user turned it off):
    the add-on starts the core offline, and Extract with the Auto aligner and no cached
    face-alignment weights uses dlib without one socket call (an audit hook in the core's process,
    put there through the Core Folder preference, which goes on the core's PYTHONPATH)."""
    from blender_deepfake import jobs, prefs
    from test_setup import AUDIT

    assert bpy.app.online_access is False
    assert prefs.settings().env()["DEEPFAKE_OFFLINE"] == "1"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / "net.log"
    log.write_text("")
    monkeypatch.setenv("NET_AUDIT_LOG", str(log))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEEPFAKE_OFFLINE", raising=False)
    addon.core_path = str(hook)
    scene.deepfake.aligner = "auto"
    movie_strip(scene, D18, 0, 3)
    assert bpy.ops.deepfake.extract() == {"FINISHED"}
    assert Path(f"{log}.loaded").is_file() and log.read_text() == ""
    assert jobs.last_job().state.result["aligner"] == "dlib"


def test_renaming_a_strip_keeps_its_faceset_and_a_copy_does_not_inherit_it(scene, addon):
    from blender_deepfake import props

    strip = movie_strip(scene, D18, 0, 3)
    assert bpy.ops.deepfake.extract() == {"FINISHED"}
    faceset = Path(scene.deepfake.strip_links[strip.name].faceset)
    copy = movie_strip(scene, D18, 0, 3, channel=3)  # the same file again, while the original has its name
    other = movie_strip(scene, VIDEO / "liveportrait_d19.mp4", 0, 3, channel=4)
    assert props.strip_link(scene, copy) is None
    strip.name = "Interview A"
    assert props.strip_link(scene, other) is None  # another file never takes the link over
    select_only(scene, strip)
    assert bpy.ops.deepfake.faceset_add(side="A") == {"FINISHED"}  # Train's "+": the selected strip's faceset
    assert [Path(item.path) for item in scene.deepfake.facesets_a] == [faceset]
    assert [link.name for link in scene.deepfake.strip_links] == ["Interview A"]  # taken over, not copied
    assert props.strip_link(scene, copy) is None and props.strip_link(scene, strip).name == "Interview A"
