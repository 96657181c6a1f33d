"""Labels on the sequencer render of a shot that shows a swapped strip.

The swap's own frames are labelled by the core; what an editor delivers is Blender's render of
the edit, written by Blender, which knows nothing of provenance. So the add-on watches renders:
`render_write` collects each file Blender writes (a frame, or the movie), and `render_complete`
(or `render_cancel`: what a cancelled render wrote stays) hands them to the core's `deepfake label`, naming the swaps the render shows (the core reads
their records for the source and model). Any render counts, from the UI (Render Animation), from
`blender -b file.blend -a` or from the batch script, as long as the add-on is enabled and a
swapped strip is unmuted in the rendered range. A still (F12) is not written to disk by the
render and so is not labelled; saving it from the Image editor is Blender's own and unlabelled.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import bpy

from . import jobs, prefs, props, vse

_written: list[str] = []
last_outcome: dict[str, Any] = {}
"""The last labelling of a render: {"ok": bool, "off": bool, "text": str}; the batch script reads
it after its render (Blender's log of the render, where the handler prints, is a file there)."""


def shown_swaps(scene: Any) -> list[Any]:
    """The swap results whose strips are unmuted in the scene's frame range."""
    strips = {s.name: s for s in vse.all_strips(scene)}
    shown = []
    for result in scene.deepfake.swap_results:
        strip = strips.get(result.name)
        if strip is None or strip.mute:
            continue
        if strip.frame_final_end > scene.frame_start and strip.frame_final_start <= scene.frame_end:
            shown.append(result)
    return shown


def status_line(scene: Any) -> str:
    """What the Swap panel says about labelling (read from the preferences: drawn often)."""
    addon = prefs.addon_prefs()
    if addon is not None and not addon.label_outputs:
        return "Labelling off: outputs do not say a face was replaced"
    visible = " + visible" if addon is not None and addon.visible_label else ""
    where = "Swaps and this render" if shown_swaps(scene) else "Swaps and their renders"
    return f"{where} are labelled AI-modified (C2PA{visible})"


@bpy.app.handlers.persistent
def _on_render_init(*_args: Any) -> None:
    _written.clear()
    last_outcome.clear()


@bpy.app.handlers.persistent
def _on_render_write(scene: Any, *_args: Any) -> None:
    path = bpy.path.abspath(scene.render.frame_path(frame=scene.frame_current))
    if path not in _written:
        _written.append(path)


@bpy.app.handlers.persistent
def _on_render_complete(scene: Any, *_args: Any) -> None:
    files = [f for f in _written if Path(f).is_file()]
    _written.clear()
    if files:
        label_render(scene, files)


@bpy.app.handlers.persistent
def _on_render_cancel(scene: Any, *_args: Any) -> None:
    """A cancelled render keeps what it wrote (Blender closes the movie): that is labelled too."""
    _on_render_complete(scene)


def label_render(scene: Any, files: list[str]) -> bool:
    """Label what a render wrote when it shows a swap; the outcome is printed (the render's log)
    and kept for the panel. Returns whether the files were labelled."""
    swaps = shown_swaps(scene)
    if not swaps:
        return False
    try:
        core = prefs.settings()
    except prefs.SettingsError as exc:
        return _status(scene, f"the render shows a swap but was not labelled: {exc}")
    if not core.label:
        return _status(scene, "WARNING: labelling is off (add-on preference Label AI Output): the render shows a "
                              "swapped face and does not say so", off=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="deepfake-render-", delete=False) as listing:
        listing.write("".join(f"{f}\n" for f in files))
    try:
        args = [f"@{listing.name}", *[a for r in swaps for a in ("--swap", bpy.path.abspath(r.out))],
                *core.label_args(visible=False)]
        job = jobs.Job(jobs.core_command(core.python, "label", args), "label", env=core.env())
        state = job.wait()
    finally:
        Path(listing.name).unlink(missing_ok=True)
    if state.status != "done":
        return _status(scene, f"the render was not labelled: {state.error or state.status}")
    return _status(scene, f"labelled the render ({len(files)} file{'s' if len(files) != 1 else ''}): AI-modified, "
                          "Content Credentials", ok=True)


def _status(scene: Any, text: str, ok: bool = False, off: bool = False) -> bool:
    print(f"deepfake: {text}", flush=True)
    last_outcome.clear()
    last_outcome.update(ok=ok, off=off, text=text)
    if bpy.app.background:
        scene.deepfake.render_label_status = text
    else:  # the UI's render handlers run on the render job's thread: Blender data is written on the main one
        name = scene.name
        bpy.app.timers.register(lambda: _set_status(name, text), first_interval=0.0)
    return ok


def _set_status(scene_name: str, text: str) -> None:
    scene = bpy.data.scenes.get(scene_name)
    if scene is not None:
        scene.deepfake.render_label_status = text


_HANDLERS = (("render_init", _on_render_init), ("render_write", _on_render_write),
             ("render_complete", _on_render_complete), ("render_cancel", _on_render_cancel))


def register_handlers() -> None:
    for name, handler in _HANDLERS:
        if handler not in getattr(bpy.app.handlers, name):
            getattr(bpy.app.handlers, name).append(handler)


def unregister_handlers() -> None:
    for name, handler in _HANDLERS:
        if handler in getattr(bpy.app.handlers, name):
            getattr(bpy.app.handlers, name).remove(handler)
