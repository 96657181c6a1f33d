"""The Blender add-on: thin operators and a VSE panel that run `core` as a subprocess.

It never imports torch, cv2 or core (DESIGN.md: the core runs in its own interpreter). Classes
are registered from explicit tuples in dependency order (property groups before the groups that
point at them), and unregistered in reverse, so register/unregister can run repeatedly.
"""
from __future__ import annotations

from . import jobs, ops, prefs, props, render_label, ui, vse  # noqa: F401  (vse and jobs: imported for reloads)

classes: tuple[type, ...] = (*props.classes, *prefs.classes, *ops.classes, *ui.classes)


def register() -> None:
    import bpy

    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_props()
    ops.register_handlers()
    render_label.register_handlers()


def unregister() -> None:
    import bpy

    jobs.kill_all()
    ops.unregister_handlers()
    render_label.unregister_handlers()
    props.unregister_props()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
