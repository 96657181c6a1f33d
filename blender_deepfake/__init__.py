"""The Blender add-on: thin operators and a VSE panel that run `core` as a subprocess.

It never imports torch, cv2 or core (DESIGN.md: the core runs in its own interpreter). Classes
are registered from explicit tuples in dependency order (property groups before the groups that
point at them), and unregistered in reverse, so register/unregister can run repeatedly.
"""
from __future__ import annotations

# The bpy modules are imported by register(), not here: `blender_deepfake.jobs`, `.evaluation` and
# `.core_record` need no bpy and import (and are tested) without it.


def _classes() -> tuple[type, ...]:
    from . import ops, prefs, props, ui

    return (*props.classes, *prefs.classes, *ops.classes, *ui.classes)


def register() -> None:
    import bpy

    from . import ops, props, render_label

    for cls in _classes():
        bpy.utils.register_class(cls)
    props.register_props()
    ops.register_handlers()
    render_label.register_handlers()


def unregister() -> None:
    import bpy

    from . import jobs, ops, props, render_label

    jobs.kill_all()
    ops.unregister_handlers()
    render_label.unregister_handlers()
    props.unregister_props()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
