"""The add-on's workflow end to end against the real `bpy` module, as an editor would check it:
the sequencer render of a composite swap, markers on a real clip with faceless frames, a cancel
in the middle of a job, and the headless batch one-liner. Runs under bpy 5.0 (main environment)
and bpy 4.2 (.venv-bpy42, the core through DEEPFAKE_CORE_PYTHON); numpy comes with bpy."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CORE_PYTHON, ROOT, VIDEO, run_cli
from test_addon import addon, movie_strip, scene, select_only, snapshot  # noqa: F401  (fixtures)

bpy = pytest.importorskip("bpy")

D18 = VIDEO / "liveportrait_d18.mp4"
HAMILTON = VIDEO / "face_recognition_short_hamilton_clip.mp4"


def render_frame(scene, frame: int, path: Path) -> np.ndarray:
    """The sequencer's render of one frame (view transform Standard, 8-bit PNG) as uint8 RGB."""
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    if hasattr(scene.render.image_settings, "media_type"):  # 5.0: a movie render earlier left VIDEO
        scene.render.image_settings.media_type = "IMAGE"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_png(path)


def read_png(path: Path) -> np.ndarray:
    """An 8-bit PNG as uint8 RGB through bpy (the bpy-only 4.2 environment has no OpenCV)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    # Blender stores rows bottom-up; 8-bit PNG values come back as n/255 exactly.
    return np.round(pixels.reshape(height, width, 4)[::-1, :, :3] * 255).astype(np.uint8)


def face_boxes(tmp_path: Path, first: int, count: int) -> dict[int, tuple[int, int, int, int]]:
    """Per source frame, the landmarks' bounding box grown by half its size on every side: the
    swap may change pixels only inside it (mask lifted to mid-forehead, feathered)."""
    faceset = tmp_path / "reference_faceset"
    done = run_cli("extract", D18, "--out", faceset, "--start", first, "--count", count, "--aligner", "dlib",
                   "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    boxes = {}
    for frame, faces in json.loads((faceset / "alignments.json").read_text())["frames"].items():
        points = np.array(faces[0]["landmarks"])
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        grow_x, grow_y = (x1 - x0) / 2, (y1 - y0) / 2
        boxes[int(frame)] = (int(x0 - grow_x), int(y0 - grow_y), int(x1 + grow_x) + 1, int(y1 + grow_y) + 1)
    return boxes


def test_composite_render_equals_the_source_render_away_from_the_face(scene, addon, tiny_model, tmp_path):
    first, count = 173, 4  # held-out frames of d18
    strip = movie_strip(scene, D18, first, count, channel=1, frame_start=1 - first)  # visible from frame 1
    select_only(scene, strip)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 480, 100
    scene.deepfake.model_folder, scene.deepfake.swap_mode = str(tiny_model), "composite"
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    swapped = next(s for s in scene.sequence_editor.strips_all if s.name.endswith("composite")) \
        if hasattr(scene.sequence_editor, "strips_all") else \
        next(s for s in scene.sequence_editor.sequences_all if s.name.endswith("composite"))
    boxes = face_boxes(tmp_path, first, count)
    for timeline_frame in (1, 4):
        source_frame = first + timeline_frame - 1
        with_swap = render_frame(scene, timeline_frame, tmp_path / f"swap_{timeline_frame}.png")
        swapped.mute = True
        source = render_frame(scene, timeline_frame, tmp_path / f"source_{timeline_frame}.png")
        swapped.mute = False
        x0, y0, x1, y1 = boxes[source_frame]
        away = np.ones(source.shape[:2], bool)
        away[max(0, y0):y1, max(0, x0):x1] = False
        assert away.sum() > 30_000  # the face fills most of this 480x480 clip; a fifth of it is away
        changed = (with_swap != source).any(axis=2)
        assert not changed[away].any(), \
            f"frame {timeline_frame}: {int(changed[away].sum())} pixels away from the face differ from the source render"
        # Where the face is, the render shows the frame the core wrote (whatever a 5-iteration
        # model painted there), and that frame is not the source.
        written = read_png(Path(bpy.path.abspath(swapped.directory)) / f"frame_{source_frame:06d}.png")
        assert np.abs(with_swap.astype(int) - written).max() <= 1, f"frame {timeline_frame}: the render is not the swap"
        assert (written != source)[~away].any(), f"frame {timeline_frame}: the face is untouched"


def test_flags_on_a_real_clip_become_one_marker_per_run(scene, addon, tiny_model):
    """Hamilton source frames 205..226 hold a stretch without a face (211-216 for dlib's
    detector); the other frames show faces that are not d18's person (flagged as a mismatch)."""
    first, count, at = 205, 22, 101
    strip = movie_strip(scene, HAMILTON, first, count, channel=2, frame_start=at - first)
    select_only(scene, strip)
    assert strip.frame_final_start == at
    scene.deepfake.model_folder = str(tiny_model)
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    work = Path(addon.work_folder)
    flags = json.loads(next((work / "swaps").glob("*/flags.json")).read_text())["flags"]
    no_face = sorted(f["frame"] for f in flags if f["reasons"] == ["no_face"])
    assert no_face[:6] == [211, 212, 213, 214, 215, 216]  # 222-223 too, with 4.4+'s YUV conversion
    markers = sorted((m.frame, m.name) for m in scene.timeline_markers)
    assert (at + 211 - first, "no_face (6 frames)") in markers
    # every flagged frame is inside exactly one marker's run, and runs start at flagged frames
    covered = set()
    for frame, name in markers:
        length = int(name.rsplit("(", 1)[1].split()[0]) if name.endswith("frames)") else 1
        covered |= set(range(frame - at + first, frame - at + first + length))
    assert covered == {f["frame"] for f in flags}


def test_cancel_in_the_middle_of_a_swap_leaves_the_scene_as_it_was(scene, addon, tiny_model):
    """What the Cancel button does (`deepfake.cancel` -> Job.cancel), here from a thread while
    the operator blocks as it does in background mode."""
    from blender_deepfake import jobs, ops

    # The 282-frame 720p clip: cancelled at its first progress report, the job has hundreds of
    # frames (tens of seconds) still to go on any machine, so the cancel cannot lose the race.
    strip = movie_strip(scene, VIDEO / "liveportrait_s18.mp4", 0, 282, channel=1, frame_start=1)
    select_only(scene, strip)
    scene.deepfake.model_folder = str(tiny_model)
    before = snapshot(scene, Path(addon.work_folder) / "nothing")
    seen: dict[str, object] = {}

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = next(iter(jobs.running_jobs()), None)
            if job is not None and job.state.done >= 1:
                seen["job"], seen["done"] = job, job.state.done
                job.cancel()
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    try:
        result = bpy.ops.deepfake.swap()
    except RuntimeError as exc:  # some versions raise on the operator's report
        result, seen["report"] = {"CANCELLED"}, str(exc)
    canceller.join()
    job = seen.get("job")
    assert job is not None, "the swap ended before it could be cancelled"
    assert result == {"CANCELLED"}
    assert job.state.status == "cancelled" and job.proc.poll() is not None
    assert job not in jobs.running_jobs()
    assert 1 <= seen["done"] < 282
    assert snapshot(scene, Path(addon.work_folder) / "nothing") == before


def test_swap_then_evaluate_shows_the_figures_and_the_report(scene, addon, tiny_model):
    """Swap with Evaluate on: the panel shows the figures beside their controls, the report exists
    and opens (in background mode: its path is reported), and Re-evaluate on the swapped strip
    gives the same figures. tiny_model saw d18 frames 0..19 only; these are 30..35."""
    from blender_deepfake import evaluation, props, ui, vse

    from test_addon import _Drawing, _Layout

    strip = movie_strip(scene, D18, 30, 6, channel=1, frame_start=1)
    select_only(scene, strip)
    scene.deepfake.model_folder, scene.deepfake.evaluate = str(tiny_model), True
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    result = props.swap_result(scene, strip)  # right after Swap the source is still active
    swapped = next(s for s in vse.all_strips(scene) if s.name == result.name)
    assert swapped.channel == 2 and (result.first, result.count) == (30, 6)
    report = json.loads(Path(result.report).with_name("report.json").read_text())  # the core's name
    assert report["range"] == {"start": 30, "count": 6} and report["counts"]["frames"] == 6
    assert Path(report["faceset_b"]).name == "d19"  # from the model's own training record
    figures = json.loads(result.summary)["summary"]
    assert figures["identity_retrieval"]["source"] == 0.0  # the footage is A: never nearer B
    assert figures["untouched_changed"]["swap"] == 0.0 and figures["landmark_error"]["source"] == 0.0
    assert figures["seam"]["source"] == pytest.approx(1.0)
    assert "<img" in Path(result.report).read_text()

    texts: list[str] = []
    ui.DEEPFAKE_PT_swap.draw(_Drawing(ui.DEEPFAKE_PT_swap, _Layout([], texts)), bpy.context)  # the Swap sub-panel
    lines = evaluation.summary_lines(result.summary)
    assert lines[0].startswith("Identity B: ") and lines[1].startswith("  source 0%, control ")
    assert lines[3].startswith("  head turn ") and "n/a" not in lines[3]
    assert all(line in texts for line in lines) and "Re-evaluate" in texts
    assert bpy.ops.deepfake.open_report() == {"FINISHED"}

    before = result.summary
    select_only(scene, swapped)
    result.summary = ""
    assert bpy.ops.deepfake.evaluate() == {"FINISHED"}
    assert json.loads(result.summary) == json.loads(before)  # the same frames measure the same


def test_a_failed_evaluation_keeps_the_swap_and_says_why(scene, addon, tiny_model, tmp_path):
    """Evaluation is optional: a model whose training facesets are gone still swaps; the strip
    stays, the panel says "Not evaluated yet", Evaluate then reports the reason as an error."""
    import shutil

    from blender_deepfake import props, vse

    moved = tmp_path / "model"
    shutil.copytree(tiny_model, moved)
    state = json.loads((moved / "state.json").read_text())
    state["facesets_a"], state["facesets_b"] = [str(tmp_path / "gone_a")], [str(tmp_path / "gone_b")]
    (moved / "state.json").write_text(json.dumps(state))
    strip = movie_strip(scene, D18, 30, 3, channel=1, frame_start=1)
    select_only(scene, strip)
    scene.deepfake.model_folder, scene.deepfake.evaluate = str(moved), True
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    result = props.swap_result(scene, strip)
    assert result is not None and result.summary == "" and result.report == ""
    assert len(list(vse.all_strips(scene))) == 2
    with pytest.raises(RuntimeError, match="gone_a"):
        bpy.ops.deepfake.evaluate()
    select_only(scene, None)
    with pytest.raises(RuntimeError, match="make a strip the Swap step added"):
        bpy.ops.deepfake.evaluate()


def test_the_render_of_a_swapped_shot_is_labelled(scene, addon, tiny_model, tmp_path, capfd):
    """Render Animation to PNG frames: the add-on's render handlers have the core label what Blender
    wrote (the swap strip is shown); with the strip muted nothing is labelled; with the preference
    off, one warning line and no label."""
    first, count = 173, 2
    strip = movie_strip(scene, D18, first, count, channel=1, frame_start=1 - first)
    select_only(scene, strip)
    scene.deepfake.model_folder, scene.deepfake.swap_mode, scene.deepfake.evaluate = str(tiny_model), "composite", False
    assert bpy.ops.deepfake.swap() == {"FINISHED"}
    swapped = next(s for s in vse_strips(scene) if s.name.endswith("composite"))
    assert run_cli("verify", bpy.path.abspath(swapped.directory)).returncode == 0  # the swap's own frames
    scene.frame_start, scene.frame_end = 1, count
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 480, 100
    if hasattr(scene.render.image_settings, "media_type"):
        scene.render.image_settings.media_type = "IMAGE"
    scene.render.image_settings.file_format = "PNG"

    def render(folder: Path) -> list[Path]:
        scene.render.filepath = str(folder / "shot_")
        bpy.ops.render.render(animation=True)
        return sorted(folder.glob("shot_*.png"))

    from blender_deepfake import ui

    from test_addon import _Drawing, _Layout

    def panel_texts() -> list[str]:
        texts: list[str] = []
        ui.DEEPFAKE_PT_swap.draw(_Drawing(ui.DEEPFAKE_PT_swap, _Layout([], texts)), bpy.context)
        return texts

    assert "Swaps and this render are labelled AI-modified (C2PA)" in panel_texts()
    frames = render(tmp_path / "labelled")
    assert [p.name for p in frames] == ["shot_0001.png", "shot_0002.png"]
    done = run_cli("verify", tmp_path / "labelled")
    assert done.returncode == 0 and "c2pa.edited" in done.stdout and "2 labelled" in done.stdout, done.stdout
    assert scene.deepfake.render_label_status.startswith("labelled the render (2 files)")

    swapped.mute = True  # the render no longer shows a swap: Blender's frames as they are
    plain = render(tmp_path / "plain")
    assert run_cli("verify", plain[0]).returncode == 1
    swapped.mute = False

    capfd.readouterr()
    addon.label_outputs = False
    try:
        assert "Labelling off: outputs do not say a face was replaced" in panel_texts()
        off = render(tmp_path / "off")
    finally:
        addon.label_outputs = True
    assert run_cli("verify", off[0]).returncode == 1
    warnings = [line for line in capfd.readouterr().out.splitlines() if "labelling is off" in line]
    assert warnings == ["deepfake: WARNING: labelling is off (add-on preference Label AI Output): the render shows "
                        "a swapped face and does not say so"]


def vse_strips(scene) -> list:
    editor = scene.sequence_editor
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)


def test_a_script_gets_a_finished_swap_whether_it_invokes_or_executes(scene, addon, tiny_model, capfd):
    """`bpy.ops.deepfake.swap('INVOKE_DEFAULT')` from a script in background mode has no event
    loop to run modal in: it blocks as the executed operator does, and both return FINISHED with
    the strip placed and no job left running (a script never races a job it cannot see). The
    core's log lines reach the user as reports, not only its progress."""
    from blender_deepfake import jobs, vse

    strip = movie_strip(scene, D18, 40, 3, channel=1, frame_start=1)
    select_only(scene, strip)
    scene.deepfake.model_folder, scene.deepfake.evaluate = str(tiny_model), False
    capfd.readouterr()
    assert bpy.ops.deepfake.swap("INVOKE_DEFAULT") == {"FINISHED"}
    assert not jobs.running_jobs() and jobs.last_job().state.status == "done"
    placed = [s for s in vse.all_strips(scene) if s.channel == 2]
    assert [(s.type, s.frame_final_start, s.frame_final_duration) for s in placed] == \
        [("IMAGE", strip.frame_final_start, 3)]
    assert "Info: aligner: dlib" in capfd.readouterr().out  # the core's log line, as an INFO report
    scene.deepfake.swap_existing = "replace"
    assert bpy.ops.deepfake.swap("EXEC_DEFAULT") == {"FINISHED"}
    assert not jobs.running_jobs()
    assert [s.channel for s in vse.all_strips(scene) if s.type == "IMAGE"] == [2, 3]


# Last in the module: it loads a file and factory settings, which leaves the module's `addon`
# preferences fixture pointing at freed memory (a test after it segfaults in the fixture).
def test_headless_one_liner_swaps_a_named_strip_and_renders_an_mp4(scene, addon, tiny_model, tmp_path):
    """Last in this module: it opens another file and resets to factory settings, which frees the
    module's enabled add-on (its preferences object) that the tests above share."""
    first, count = 173, 6
    strip = movie_strip(scene, D18, first, count, channel=1, frame_start=1 - first)  # visible from frame 1
    strip.name = "shot 1"
    shot = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(shot), copy=True)
    out, saved = tmp_path / "render" / "shot.mp4", tmp_path / "swapped.blend"
    command = [sys.executable, str(ROOT / "scripts" / "deepfake_batch.py"), str(shot), "--core-python", CORE_PYTHON,
               "--aligner", "dlib", "swap", "--strip", "shot 1", "--model", str(tiny_model), "--render", str(out),
               "--save", str(saved)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert out.is_file() and saved.is_file()
    assert "append frame" not in (done.stdout + done.stderr).lower()  # the steps and results, not a line per frame
    assert f"rendered {out}" in done.stdout and not out.with_name("shot.mp4.render.log").exists()
    # The render shows the swap: Content Credentials and the plain label, added by the add-on's handler.
    verified = run_cli("verify", out)
    assert verified.returncode == 0 and "c2pa.edited" in verified.stdout, verified.stdout + verified.stderr
    assert "plain label: AI-modified: face replaced" in verified.stdout

    # open the results in this Blender: the movie has the shot's frames and size, the .blend the swap strip
    from blender_deepfake import vse

    bpy.ops.wm.open_mainfile(filepath=str(saved))
    opened = bpy.context.scene
    strips = {s.name: s for s in vse.all_strips(opened)}
    assert set(strips) == {"shot 1", "shot 1 composite"}
    assert (strips["shot 1 composite"].channel, strips["shot 1 composite"].frame_final_duration) == (2, count)
    rendered = vse.add_movie_strip(opened, out, channel=5, frame_start=1)
    assert rendered.frame_final_duration == count
    assert (rendered.elements[0].orig_width, rendered.elements[0].orig_height) == (480, 480)
    bpy.ops.wm.read_factory_settings(use_empty=True)

    refused = subprocess.run([*command[:command.index("--strip") + 1], "no such strip", "--model", str(tiny_model)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert refused.returncode == 1 and "no strip named 'no such strip'" in refused.stderr

