"""Strips whose timeline frames are not their source frames, checked against Blender's own render.

For each case, what Blender renders at a few timeline frames is compared with the frame the core
decodes (through the core interpreter, as the add-on runs it) for the source frame our mapping
(`vse.visible_range`) names: where they agree the strip is swapped; where Blender shows other
frames (speed effect, retiming keys, a resampled movie) Extract and Swap refuse with one message.
Runs under bpy 5.0 (.venv) and bpy 4.2 (.venv-bpy42), like the other add-on tests.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import CORE_PYTHON, VIDEO
from test_addon import _refused, addon, movie_strip, scene, select_only  # noqa: F401  (fixtures)

D18 = VIDEO / "liveportrait_d18.mp4"  # 216 frames, 30 fps, 480x480

DECODE = """
import sys, numpy as np, av
path, out, *frames = sys.argv[1:]
want = {int(f) for f in frames}
with av.open(path) as c:
    for i, f in enumerate(c.decode(video=0)):
        if i in want:
            np.save(f"{out}/{i}.npy", f.to_ndarray(format="rgb24"))
        if i >= max(want):
            break
"""


def source_frames(frames: list[int]) -> dict[int, np.ndarray]:
    """The source frames as the core decodes them (PyAV in the core's interpreter)."""
    out = Path(tempfile.mkdtemp(prefix="bd-frames-"))
    subprocess.run([CORE_PYTHON, "-c", DECODE, str(D18), str(out), *map(str, frames)], check=True, timeout=120)
    return {f: np.load(out / f"{f}.npy").astype(np.float32) for f in frames}


def render(scene, frame: int, folder: Path) -> np.ndarray:
    """Blender's render of the sequencer at a timeline frame, as 8-bit RGB."""
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 480, 100
    scene.view_settings.view_transform = "Standard"  # pixel-faithful (AgX changes pixels)
    scene.render.dither_intensity = 0.0  # no noise added to the 8-bit render
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0: an earlier test may have left it on VIDEO
        settings.media_type = "IMAGE"
    settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
    scene.frame_set(frame)
    path = folder / f"render_{frame:04d}.png"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    try:
        pixels = np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], image.channels)
    finally:
        bpy.data.images.remove(image)
    return np.flipud(pixels[..., :3]) * 255.0  # Blender's rows run bottom-up


def shown_source(scene, frames: list[int], candidates: dict[int, np.ndarray], folder: Path) -> list[int]:
    """For each timeline frame, the candidate source frame Blender's render is (-1: none).

    Blender's and PyAV's YUV -> RGB conversions differ by a level or two everywhere, and
    neighbouring frames of a talking head differ only around the eyes and mouth, so a mean
    difference cannot tell them apart; the share of pixels more than 6 levels off can (0 for the
    frame itself, >= 0.3 % for its neighbours on d18)."""
    found = []
    for frame in frames:
        image = render(scene, frame, folder)
        off = {k: float((np.abs(image - v) > 6).mean()) for k, v in candidates.items()}
        best = min(off, key=off.get)
        found.append(best if off[best] < 0.0005 else -1)
    return found


def sequencer_override(scene):
    """A Sequencer area for operators that need one (retiming, adding a movie as the UI does)."""
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    area.type = "SEQUENCE_EDITOR"
    region = next(r for r in area.regions if r.type == "WINDOW")
    return bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region, scene=scene)


def extract_and_swap_refuse(scene, addon, strip, model, match: str) -> None:
    """Both steps refuse the strip with the message `match`, changing nothing."""
    select_only(scene, strip)
    scene.deepfake.model_folder = str(model)  # so Swap gets as far as the strip
    for operator in (bpy.ops.deepfake.extract, bpy.ops.deepfake.swap):
        _refused(scene, addon, operator, match)


def set_fps(scene, fps: int) -> None:
    scene.render.fps, scene.render.fps_base = fps, 1.0


def test_a_30_fps_movie_played_frame_for_frame_in_a_25_fps_scene_is_mapped(scene, addon, tmp_path):
    """Made from Python (no playback-rate adjustment), Blender shows source frame first + i at
    timeline frame start + i: the mapping the swap uses, so it is not refused."""
    from blender_deepfake import vse

    set_fps(scene, 25)
    strip = movie_strip(scene, D18, 40, 30, frame_start=1)  # source 40..69 at timeline 41..70
    assert vse.visible_range(strip) == (D18, 40, 30)
    timeline = [41, 42, 55, 70]
    candidates = source_frames(list(range(38, 72)))
    assert shown_source(scene, timeline, candidates, tmp_path) == [40, 41, 54, 69]


def test_a_strip_under_a_speed_effect_is_refused(scene, addon, tmp_path, tiny_model):
    from blender_deepfake import vse

    set_fps(scene, 30)
    strip = movie_strip(scene, D18, 0, 100, frame_start=1)
    speed = vse.new_effect(scene, "Speed", "SPEED", 2, 1, length=100, inputs=(strip,))
    speed.speed_control = "MULTIPLY"
    speed.speed_factor = 2.0
    # What Blender shows: source frame 2i at timeline frame 1 + i, not i.
    candidates = source_frames(list(range(0, 24)))
    assert shown_source(scene, [2, 5, 11], candidates, tmp_path) == [2, 8, 20]
    extract_and_swap_refuse(scene, addon, strip, tiny_model, "is retimed by the speed effect 'Speed'")
    speed.mute = True  # a muted effect retimes nothing: the strip's own frames show
    assert shown_source(scene, [5], candidates, tmp_path) == [4]
    assert vse.visible_range(strip) == (D18, 0, 100)


def test_a_strip_with_retiming_keys_is_refused(scene, addon, tmp_path, tiny_model):
    set_fps(scene, 30)
    strip = movie_strip(scene, D18, 0, 216, frame_start=1)
    with sequencer_override(scene):
        scene.frame_current = 11
        assert bpy.ops.sequencer.retiming_key_add() == {"FINISHED"}
        assert bpy.ops.sequencer.retiming_segment_speed_set(speed=200) == {"FINISHED"}
    assert len(strip.retiming_keys) >= 2
    candidates = source_frames(list(range(0, 40)))
    # Timeline frames 1..10 still show source 0..9; after the key at 11, two source frames a frame.
    assert shown_source(scene, [5, 11, 16], candidates, tmp_path) == [4, 10, 20]
    extract_and_swap_refuse(scene, addon, strip, tiny_model, "has retiming keys.*Reset Retiming")


def test_a_resampled_30_fps_movie_in_a_25_fps_scene_is_refused(scene, addon, tmp_path, tiny_model):
    """Added the way the UI adds a movie (Adjust Playback Rate on): Blender plays it at 30 fps in
    the 25 fps scene, so timeline frame 1 + i shows source frame floor(i * 30 / 25)."""
    if bpy.app.version >= (5, 0, 0):
        pytest.skip("bpy 5.0's sequencer.movie_strip_add crashes without a real window (segfault, checked on "
                    "5.0.1); the same add-on code is run by this test under bpy 4.2 (.venv-bpy42)")
    set_fps(scene, 25)
    with sequencer_override(scene):
        assert bpy.ops.sequencer.movie_strip_add(filepath=str(D18), frame_start=1, channel=1, fit_method="ORIGINAL",
                                                 adjust_playback_rate=True, use_framerate=False,
                                                 sound=False) == {"FINISHED"}
    from blender_deepfake import vse

    strip = vse.all_strips(scene)[0]
    assert (scene.render.fps, strip.fps) == (25, 30.0)
    candidates = source_frames(list(range(0, 30)))
    assert shown_source(scene, [1, 6, 11, 21], candidates, tmp_path) == [0, 6, 12, 24]
    extract_and_swap_refuse(scene, addon, strip, tiny_model,
                            "is a 30 fps movie that Blender plays at its own rate in this 25 fps scene")


def test_reversed_and_strobed_strips_are_refused(scene, addon, tiny_model):
    strip = movie_strip(scene, D18, 0, 20)
    scene.deepfake.model_folder = str(tiny_model)
    strip.use_reverse_frames = True
    _refused(scene, addon, bpy.ops.deepfake.extract, "plays its frames in reverse")
    strip.use_reverse_frames = False
    strip.strobe = 3.0
    _refused(scene, addon, bpy.ops.deepfake.swap, "has Strobe 3")
