"""The Blender add-on: thin operators and a VSE panel that run `core` as a subprocess.

Only the package frame exists so far; the operators, panel and job runner follow DESIGN.md's
layout (prefs.py, props.py, ops.py, jobs.py, ui.py, vse.py). It never imports torch, cv2 or core.
"""

classes: tuple[type, ...] = ()


def register() -> None:
    import bpy

    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
