"""Headless jobs for render farms and shell scripts: the same operators the panel runs, driven
from the command line, then Blender's own sequencer render.

    blender -b shot.blend --python scripts/deepfake_batch.py -- swap --strip "A" --model DIR --render out.mp4
    .venv/bin/python scripts/deepfake_batch.py shot.blend swap --strip "A" --model DIR --render out.mp4
    .venv/bin/python scripts/deepfake_batch.py demo CLIP_A CLIP_B --out out --iterations 300

Why operators and not the core directly: a batch job must leave the same .blend an editor would
(strip links, the swap strip on the first free channel above, markers), and the operators already
block until the core ends when Blender runs in the background. Errors print one `error:` line and
exit with status 1; nothing is saved unless every step succeeded.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import bpy

from . import evaluation, props, render_label, vse


class BatchError(RuntimeError):
    """A step failed or the input is wrong: printed as one line."""


# -- the add-on and its settings ---------------------------------------------------------------------------
def enable_addon(core_python: str | None = None, work_folder: str | None = None, device: str | None = None) -> Any:
    """Enable the add-on the way Blender does (so its preferences exist) and apply overrides."""
    import addon_utils

    name = __package__
    if name not in bpy.context.preferences.addons:
        # The batch script imported the package already, so addon_utils prints "module changed on
        # disk ... reloading" for it: noise among the batch's steps.
        with contextlib.redirect_stdout(io.StringIO()):
            addon_utils.enable(name, default_set=True)
    prefs = bpy.context.preferences.addons[name].preferences
    if core_python:
        prefs.python = str(Path(core_python).absolute())
    if work_folder:
        prefs.work_folder = str(Path(work_folder).absolute())
    if device:
        prefs.device = device
    return prefs


def run_operator(operator: Any, **kwargs: Any) -> None:
    """Call an operator; its ERROR report arrives as RuntimeError in background mode."""
    try:
        result = operator(**kwargs)
    except RuntimeError as exc:
        raise BatchError(str(exc).replace("Error: ", "").strip()) from None
    if result != {"FINISHED"}:
        raise BatchError(f"{operator.idname_py()} did not finish ({', '.join(sorted(result))})")


def find_strip(scene: Any, name: str) -> Any:
    strip = next((s for s in vse.all_strips(scene) if s.name == name), None)
    if strip is None:
        names = ", ".join(sorted(s.name for s in vse.all_strips(scene))) or "none"
        raise BatchError(f"no strip named '{name}' in scene '{scene.name}' (strips: {names})")
    return strip


def select_only(scene: Any, strips: Sequence[Any], active: Any = None) -> None:
    for strip in vse.all_strips(scene):
        strip.select = strip in strips
    scene.sequence_editor.active_strip = active if active is not None else (strips[0] if strips else None)


# -- rendering -------------------------------------------------------------------------------------------------
def match_scene_to_strip(scene: Any, strip: Any) -> None:
    """Frame range, size and rate of the shot, so the render holds exactly the strip's frames."""
    scene.frame_start, scene.frame_end = int(strip.frame_final_start), int(strip.frame_final_end) - 1
    if strip.type == "MOVIE" and strip.fps > 0:
        whole = round(strip.fps)
        scene.render.fps, scene.render.fps_base = whole, whole / strip.fps
    first = strip.elements[0] if len(strip.elements) else None
    if first is not None and first.orig_width and first.orig_height:
        scene.render.resolution_x, scene.render.resolution_y = first.orig_width, first.orig_height
        scene.render.resolution_percentage = 100
    # Standard: the view transform that leaves sRGB pixels as they are (AgX / Filmic would not).
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0


@contextlib.contextmanager
def blender_log_to(log: Path) -> Iterator[None]:
    """Send what Blender's C code prints (a line per rendered frame: "Video append frame N" on
    5.0, "Append frame N" / "Fra:" before) to `log` instead of the terminal, where it buried the
    demo's steps and results; Python's own prints before and after are untouched."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def render_movie(scene: Any, path: Path) -> Path:
    """Render the sequencer to an H.264 .mp4 (high quality, the scene's rate). Blender's per-frame
    lines go to `<path>.render.log`, whose last lines a failed render quotes."""
    path = Path(path).absolute()
    try:  # find out now, not after the render: Blender only logs a failed write
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".deepfake-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"cannot write the render to {path.parent}: {exc.strerror or exc}") from None
    vse.set_video_output(scene)
    ffmpeg = scene.render.ffmpeg
    ffmpeg.format, ffmpeg.codec = "MPEG4", "H264"
    ffmpeg.constant_rate_factor = "HIGH"
    ffmpeg.audio_codec = "NONE"
    scene.render.use_sequencer = True
    scene.render.use_file_extension = False
    scene.render.filepath = str(path)
    log = path.with_name(path.name + ".render.log")
    with blender_log_to(log):
        bpy.ops.render.render(animation=True, scene=scene.name)
    if not path.is_file():
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise BatchError(f"the render wrote nothing at {path} (Blender: {tail or 'no message'}; log {log})")
    log.unlink()
    # The add-on's render handler labelled it (or said why not) while Blender's output went to the log.
    outcome = dict(render_label.last_outcome)
    if outcome:
        print(f"deepfake: {outcome['text']}")
        if not outcome["ok"] and not outcome["off"]:
            raise BatchError(f"{path} was rendered but not labelled: {outcome['text']}")
    return path


def print_evaluation(scene: Any, strip: Any) -> None:
    """The panel's evaluation lines on stdout, and where the report is."""
    result = props.swap_result(scene, strip)
    if result is None or not result.summary:
        return
    for line in evaluation.summary_lines(result.summary):
        print(f"evaluation: {line}")
    print(f"report {result.report}")


# -- the two jobs --------------------------------------------------------------------------------------------
def swap(args: argparse.Namespace) -> None:
    scene = bpy.context.scene
    vse.ensure_editor(scene)
    strip = find_strip(scene, args.strip)
    settings = scene.deepfake
    settings.model_folder = str(Path(args.model).absolute())
    settings.swap_mode, settings.color = args.mode, args.color
    settings.swap_existing = args.existing
    if args.aligner:
        settings.aligner = args.aligner
    if args.evaluate is not None:
        settings.evaluate = args.evaluate
    select_only(scene, [strip])
    run_operator(bpy.ops.deepfake.swap)
    print_evaluation(scene, strip)
    if args.render:
        match_scene_to_strip(scene, strip)
        print(f"rendered {render_movie(scene, Path(args.render))}")
    if args.save:
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save).absolute()))
        print(f"saved {args.save}")


def demo(args: argparse.Namespace) -> None:
    """The whole workflow on two clips, as an editor would click it: a new .blend with clip A
    (the footage) on channel 1 and clip B (the new face) muted on channel 4; Extract both, Train,
    Swap A; save out/demo.blend and render out/demo.mp4."""
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon(args.core_python, None, args.device)  # factory settings reset the preferences
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # the work folder // is beside it
    scene = bpy.context.scene
    clip_a = vse.add_movie_strip(scene, args.clip_a, channel=1, frame_start=1, name="A footage")
    clip_b = vse.add_movie_strip(scene, args.clip_b, channel=4, frame_start=1, name="B new face")
    clip_b.mute = True
    settings = scene.deepfake
    if args.aligner:
        settings.aligner = args.aligner

    print("== extract both clips", flush=True)
    select_only(scene, [clip_a, clip_b])
    run_operator(bpy.ops.deepfake.extract)
    select_only(scene, [clip_a])
    run_operator(bpy.ops.deepfake.faceset_add, side="A")
    select_only(scene, [clip_b])
    run_operator(bpy.ops.deepfake.faceset_add, side="B")

    print(f"== train {args.iterations} iterations", flush=True)
    settings.iterations, settings.preset = args.iterations, "small"
    run_operator(bpy.ops.deepfake.train)

    print("== swap A", flush=True)
    settings.swap_mode = "composite"
    settings.evaluate = True
    select_only(scene, [clip_a])
    run_operator(bpy.ops.deepfake.swap)
    print_evaluation(scene, clip_a)
    match_scene_to_strip(scene, clip_a)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print(f"saved {blend}")
    print(f"rendered {render_movie(scene, out / 'demo.mp4')}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfake_batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--core-python", help="the python that runs core (default: the add-on preference)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--aligner", choices=("auto", "fan", "dlib"))
    steps = p.add_subparsers(dest="step", required=True)
    sw = steps.add_parser("swap", help="swap a named strip of the open .blend, then render and/or save")
    sw.add_argument("--strip", required=True, help="the strip's name")
    sw.add_argument("--model", required=True, help="a model folder made by Train")
    sw.add_argument("--mode", choices=("composite", "overlay"), default="composite")
    sw.add_argument("--color", choices=("mean-std", "histogram", "seamless", "none"), default="mean-std",
                    help="colour transfer (core.color_transfers; a test holds the two lists equal)")
    sw.add_argument("--existing", choices=("replace", "new"), default="replace",
                    help="when the strip was swapped before with another model, iteration or settings: replace "
                         "that result (default) or keep it and write a new one")
    sw.add_argument("--render", help="render the sequencer over the strip's frames to this .mp4")
    sw.add_argument("--save", help="save the .blend here (default: leave the file as it is on disk)")
    sw.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=None,
                    help="measure the swap against its source and write a report (default: the .blend's "
                         "Evaluate setting, on in a new file)")
    dm = steps.add_parser("demo", help="a new .blend: extract two clips, train, swap, save, render")
    dm.add_argument("clip_a", help="the footage (the face to replace)")
    dm.add_argument("clip_b", help="the new face")
    dm.add_argument("--out", default="out", help="folder for demo.blend, demo.mp4 and the work folder")
    dm.add_argument("--iterations", type=int, default=300)
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        if args.step == "swap":
            enable_addon(args.core_python, None, args.device)
            swap(args)
        else:
            demo(args)
    except (BatchError, vse.StripError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
