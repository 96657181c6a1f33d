"""Screenshot the add-on's "Deepfake" tab in a real Blender UI, headless, into docs/panel.png.

Run from the project root (Debian 12: `apt-get install -y --no-install-recommends blender xvfb xauth`):

    xvfb-run -a -s "-screen 0 1600x1200x24" blender --factory-startup --enable-event-simulate \
        --python scripts/screenshot_panel.py
    .venv/bin/python scripts/screenshot_panel.py --crop      # recompress / shrink docs/panel.png (OpenCV)

It opens the Video Editing workspace, adds a movie strip, opens the timeline's sidebar on the
"Deepfake" tab with a training job shown as running, and saves a full-window screenshot at the
template's default split (the three step buttons are at the top of the panel, so they show there;
PANEL_GROW drags the timeline's top edge up to show more of the settings). About 20 s on 2 CPU cores.

Environment: PANEL_PNG (output, default docs/panel.png), PANEL_MEDIA (the movie to put in the VSE,
default ../shared/faces/video/liveportrait_d18.mp4, used in place, never copied), PANEL_GROW
(pixels to drag the timeline's top edge up, default 0: the template's split),
PANEL_CROP (for --crop: x,y,w,h to keep), PANEL_REPORT (a `deepfake evaluate --json` report: then
the panel shows the last job as a finished swap and that report's figures under Swap, instead of a
running training job).

Why Blender 3.4 (Debian bookworm's `blender`) although the add-on needs 4.2+: the bpy wheel in .venv
is Blender built as a Python module, which always runs in background mode: it has a window
manager and one window of size 0 x 0, but no GHOST window system and no GPU drawing
(`bpy.ops.screen.screenshot` / `wm.window_new` fail their poll, `gpu` says "GPU functions for
drawing are not available in background mode"), so it cannot draw a panel. Debian's 3.4 binary is
the only full Blender installable here, and it draws under Xvfb with Mesa's software OpenGL.

3.4-only stand-ins set up here, before register(), none of them in the add-on:
- `UILayout.progress` (added in 4.0) is missing; the panel then skips its progress bar
  (`hasattr(box, "progress")`). A stand-in draws a slider of a script-owned percentage property so
  the screenshot shows roughly what 4.x draws (4.x: a filled bar with "40%" in it).
- `Region.active_panel_category` (4.1+) is missing, so the sidebar cannot be switched to the
  "Deepfake" tab by the API: the script presses Ctrl+Tab over the sidebar through
  `Window.event_simulate` (hence --enable-event-simulate) until the panel is drawn, which it
  detects by wrapping the panel's draw() in this process only.
- A running job is a subprocess the panel reaches through `ops.current_job()`; the script sets
  `ops._current` to a stand-in holding a real `jobs.JobState` (train, 4000/10000 iterations) and
  writes `scene.deepfake.job_status` / `job_progress` from it, as the modal operator would.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("PANEL_PNG", ROOT / "docs" / "panel.png"))
MEDIA = Path(os.environ.get("PANEL_MEDIA", ROOT.parent / "shared" / "faces" / "video" / "liveportrait_d18.mp4"))
MAX_BYTES = 300_000


# -- crop (plain Python with OpenCV, after Blender wrote the full-window shot) -----------------------
def crop(path: Path = OUT) -> None:
    """Keep the timeline and preview beside the sidebar; shrink until the PNG is under MAX_BYTES."""
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        sys.exit(f"error: cannot read {path}")
    box = os.environ.get("PANEL_CROP")  # x,y,w,h in pixels of the full shot
    if box:
        x, y, w, h = (int(v) for v in box.split(","))
        image = image[y:y + h, x:x + w]
    scale = 1.0
    while True:
        out = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if ok and (len(data) <= MAX_BYTES or scale < 0.5):
            break
        scale -= 0.05
    path.write_bytes(data.tobytes())
    print(f"{path}: {out.shape[1]}x{out.shape[0]}, {len(data) // 1024} KB (scale {scale:.2f})")


if __name__ == "__main__" and "--crop" in sys.argv:
    crop()
    sys.exit(0)

# -- inside Blender ---------------------------------------------------------------------------------
import bpy
from bpy.props import FloatProperty

sys.path.insert(0, str(ROOT))
import blender_deepfake
from blender_deepfake import evaluation, jobs, ops, props, ui

_drawn = [0.0]  # when DEEPFAKE_PT_panel.draw last ran: only when its tab is the active one


def _shims() -> None:
    if not hasattr(bpy.types.UILayout, "progress"):  # 3.4 stand-in for 4.0's layout.progress()
        bpy.types.Scene.deepfake_progress_shim = FloatProperty(
            name="Progress", subtype="PERCENTAGE", min=0.0, max=100.0, precision=0)

        def progress(self, factor=0.0, type="BAR", text=""):
            self.prop(bpy.context.scene, "deepfake_progress_shim", slider=True, text="")

        bpy.types.UILayout.progress = progress

    draw = ui.DEEPFAKE_PT_panel.draw

    def traced_draw(self, context):
        _drawn[0] = time.monotonic()
        draw(self, context)

    ui.DEEPFAKE_PT_panel.draw = traced_draw


def _window():
    return bpy.context.window_manager.windows[0]


def _timeline(window):
    """The sequencer timeline area of the Video Editing workspace (the one whose N panel users open)."""
    areas = [a for a in window.screen.areas if a.type == "SEQUENCE_EDITOR"]
    timeline = [a for a in areas if a.spaces.active.view_type == "SEQUENCER"]
    return (timeline or areas)[0]


def _sidebar(area):
    return next(r for r in area.regions if r.type == "UI")


def step_workspace():
    window = _window()
    template = bpy.utils.system_resource("SCRIPTS", path="startup/bl_app_templates_system/Video_Editing/startup.blend")
    if not template:  # Debian keeps it under /usr/share/blender/scripts
        template = "/usr/share/blender/scripts/startup/bl_app_templates_system/Video_Editing/startup.blend"
    with bpy.context.temp_override(window=window, screen=window.screen, area=window.screen.areas[0]):
        bpy.ops.workspace.append_activate(idname="Video Editing", filepath=template)
    bpy.app.timers.register(step_scene, first_interval=1.0)


def step_scene():
    window = _window()
    scene = window.scene
    if not MEDIA.is_file():
        print(f"error: {MEDIA} does not exist", file=sys.stderr)
        bpy.ops.wm.quit_blender()
        return
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    strip = strips.new_movie("liveportrait_d18", str(MEDIA), channel=1, frame_start=1)
    strip.select = True
    editor.active_strip = strip
    scene.frame_start, scene.frame_end = 1, strip.frame_final_end - 1
    scene.frame_current = 24
    element = strip.elements[0] if len(strip.elements) else None
    if element is not None and element.orig_width:
        scene.render.resolution_x, scene.render.resolution_y = element.orig_width, element.orig_height
    scene.render.resolution_percentage = 100

    s = scene.deepfake
    faceset = "//deepfake/facesets/liveportrait_d18/"
    props.link_strip(scene, strip.name, faceset, str(MEDIA), 0, strip.frame_final_duration)
    s.facesets_a.add().path = faceset
    s.facesets_b.add().path = "/home/ana/faces/target_interview/"
    s.facesets_b.add().path = "/home/ana/faces/target_vlog/"
    s.model_folder = "//deepfake/models/d18_to_target/"
    s.iterations = 10000
    s.preset = "small"
    s.color = "mean-std"
    report = os.environ.get("PANEL_REPORT")
    if report:  # a finished swap with its evaluation (a real report's figures)
        state = jobs.JobState(step="evaluate", status="done", done=12, total=12)
        props.record_swap(scene, f"{strip.name} composite", strip.name, str(MEDIA), 0,
                          strip.frame_final_duration, "//deepfake/swaps/liveportrait_d18_composite_png/")
        result = s.swap_results[-1]
        result.summary = evaluation.compact_summary(Path(report))
        result.report = str(Path(report).with_suffix(".html"))
        s.job_running, s.job_progress, s.job_status = False, 1.0, state.text()
    else:
        state = jobs.JobState(step="train", status="running", done=4000, total=10000, eta_s=754.0,
                              rate=5.3, loss_a=0.0213, loss_b=0.0241)
        ops._current = SimpleNamespace(state=state)  # stand-in for a jobs.Job: no subprocess
        s.job_running, s.job_progress, s.job_status = True, state.fraction, state.text()
    if hasattr(scene, "deepfake_progress_shim"):
        scene.deepfake_progress_shim = state.fraction * 100.0

    area = _timeline(window)
    space = area.spaces.active
    space.show_region_ui = True
    grow = int(os.environ.get("PANEL_GROW", "0"))  # drag the timeline's top edge up: room for the panel
    if grow:
        with bpy.context.temp_override(window=window, screen=window.screen, area=area):
            bpy.ops.screen.area_move(x=area.x + area.width // 2, y=area.y + area.height, delta=grow)
    with bpy.context.temp_override(window=window, screen=window.screen, area=area,
                                   region=next(r for r in area.regions if r.type == "WINDOW")):
        bpy.ops.sequencer.view_all()
    for a in window.screen.areas:
        a.tag_redraw()
    _tab["tries"] = 0
    bpy.app.timers.register(step_tab, first_interval=1.0)
    return


_tab = {"tries": 0, "sent_at": 0.0}


def step_tab():
    """Ctrl+Tab over the sidebar until the Deepfake panel is the one being drawn."""
    window = _window()
    area = _timeline(window)
    region = _sidebar(area)
    if _tab["sent_at"] and _drawn[0] > _tab["sent_at"]:
        print(f"Deepfake tab active after {_tab['tries']} Ctrl+Tab")
        bpy.app.timers.register(step_shot, first_interval=1.5)
        return None
    if _tab["tries"] >= 20:
        print("error: the Deepfake tab never became active", file=sys.stderr)
        bpy.app.timers.register(step_shot, first_interval=0.5)
        return None
    x, y = region.x + region.width // 2, region.y + region.height // 2
    window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
    _tab["sent_at"] = time.monotonic()
    if _tab["tries"] or _drawn[0] == 0.0:
        window.event_simulate(type="TAB", value="PRESS", ctrl=True, x=x, y=y)
        window.event_simulate(type="TAB", value="RELEASE", ctrl=True, x=x, y=y)
    _tab["tries"] += 1
    region.tag_redraw()
    return 0.5


def step_shot():
    window = _window()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    area = _timeline(window)
    region = _sidebar(area)
    print(f"window {window.width}x{window.height}; timeline area x={area.x} y={area.y} {area.width}x{area.height}; "
          f"sidebar x={region.x} y={region.y} {region.width}x{region.height}")
    with bpy.context.temp_override(window=window, screen=window.screen, area=area):
        bpy.ops.screen.screenshot(filepath=str(OUT), check_existing=False)
    print(f"wrote {OUT}")
    bpy.app.timers.register(lambda: bpy.ops.wm.quit_blender() and None, first_interval=0.5)


def main() -> None:
    _shims()
    blender_deepfake.register()
    bpy.app.timers.register(step_workspace, first_interval=1.0)


if __name__ == "__main__":
    main()
