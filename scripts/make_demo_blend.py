"""Write a .blend whose Video Sequence Editor holds the source clip and the swapped clip above it,
frame for frame. Run with the project's Python (the `bpy` module):
    .venv/bin/python scripts/make_demo_blend.py SOURCE.mp4 SWAPPED.mp4 OUT.blend
(The add-on does this from inside Blender; this script is the demo's stand-in until it exists.)
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import bpy


def main() -> None:
    source, swapped, out = (Path(p).resolve() for p in sys.argv[1:4])
    for clip in (source, swapped):
        if not clip.is_file():  # new_movie on a missing file silently makes a 1-frame strip
            sys.exit(f"error: {clip} does not exist")
    with av.open(str(source)) as container:
        rate = Fraction(container.streams.video[0].average_rate).limit_denominator(1001)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = rate.numerator, 1.0
    if rate.denominator != 1:
        scene.render.fps, scene.render.fps_base = round(rate.numerator / rate.denominator * 1.001), 1.001
    scene.view_settings.view_transform = "Standard"  # AgX would change the pixels we made
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # renamed in 5.0
    base = strips.new_movie("source", str(source), channel=1, frame_start=1)
    top = strips.new_movie("swapped", str(swapped), channel=2, frame_start=1)
    scene.frame_start, scene.frame_end = 1, base.frame_final_end - 1
    if top.frame_final_duration != base.frame_final_duration:
        sys.exit(f"error: {swapped} has {top.frame_final_duration} frames, the source {base.frame_final_duration}")
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    print(f"{out}: source on channel 1, swap on channel 2, frames 1-{scene.frame_end} at {rate} fps")


if __name__ == "__main__":
    main()
