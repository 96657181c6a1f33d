"""Per-scene settings (`scene.deepfake`) and the strip -> faceset links.

Why the strip links live on the scene, keyed by strip name, rather than as a PointerProperty on
strips: the strip RNA class is `Sequence` in 4.2 and `Strip` from 4.4, and a property registered
on strips is copied by Shift+D onto a duplicate whose range may differ, silently pointing it at
the wrong alignments. A scene collection is version-independent, saved with the .blend, visible in
one place, and a duplicate (new name) starts unlinked. The cost: renaming a strip forgets its
faceset, and Swap then detects faces again: slower, never wrong (the link also records the source
file and range, and is only reused when they still match).
"""
from __future__ import annotations

from typing import Any

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)


class DEEPFAKE_PG_path(bpy.types.PropertyGroup):
    path: StringProperty(name="Faceset", subtype="DIR_PATH", default="")


class DEEPFAKE_PG_strip_link(bpy.types.PropertyGroup):
    """`name` (built in) is the strip's name."""
    faceset: StringProperty(name="Faceset", subtype="DIR_PATH", default="")
    source: StringProperty(name="Source", default="")
    first: IntProperty(name="First Source Frame", default=0)
    count: IntProperty(name="Frames", default=0)


class DEEPFAKE_PG_scene(bpy.types.PropertyGroup):
    facesets_a: CollectionProperty(type=DEEPFAKE_PG_path, name="Faceset A",
                                   description="Faces of the person in the footage (one or more facesets)")
    facesets_b: CollectionProperty(type=DEEPFAKE_PG_path, name="Faceset B",
                                   description="Faces of the person to put there (one or more facesets)")
    model_folder: StringProperty(name="Model", subtype="DIR_PATH", default="",
                                 description="Model folder (created by Train, resumed if it exists); "
                                             "empty: models/model in the work folder")
    iterations: IntProperty(name="Iterations", default=1000, min=1, soft_max=200000,
                            description="Train until this iteration (a resumed model continues)")
    preset: EnumProperty(name="Resolution", default="small", items=[
        ("small", "64 px (small)", "Quick looks and CPU training"),
        ("standard", "128 px (standard)", "Needs a GPU"),
        ("large", "256 px (large)", "Needs a large GPU")])
    aligner: EnumProperty(name="Aligner", default="auto", items=[
        ("auto", "Auto", "face-alignment when its weights are available, else dlib"),
        ("fan", "FAN", "face-alignment (S3FD + 2DFAN4)"),
        ("dlib", "dlib", "dlib's 68-point model (offline)")])
    swap_mode: EnumProperty(name="Mode", default="composite", items=[
        ("composite", "Composite", "Full frames with the new face"),
        ("overlay", "Overlay", "An RGBA face layer, Alpha Over above the untouched source")])
    swap_format: EnumProperty(name="Format", default="png", items=[
        ("png", "PNG", "8-bit PNG frames"),
        ("exr", "EXR", "Float frames (for float / linear sources)")])
    color: EnumProperty(name="Color", default="mean-std", items=[
        ("mean-std", "Mean / Std", "Match mean and spread in Lab inside the mask"),
        ("histogram", "Histogram", "Match histograms"),
        ("seamless", "Seamless", "Poisson blending (8-bit only)"),
        ("none", "None", "No colour matching")])
    markers: BoolProperty(name="Flag Markers", default=True,
                          description="Add a timeline marker where the core flags frames (one per run of frames flagged for the same reasons)")
    strip_links: CollectionProperty(type=DEEPFAKE_PG_strip_link)

    # state of the running or last job, drawn by the panel
    job_running: BoolProperty(default=False, options={"SKIP_SAVE"})
    job_progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    job_status: StringProperty(default="", options={"SKIP_SAVE"})


def link_strip(scene: Any, strip_name: str, faceset: str, source: str, first: int, count: int) -> None:
    links = scene.deepfake.strip_links
    link = links.get(strip_name) or links.add()
    link.name, link.faceset, link.source, link.first, link.count = strip_name, faceset, source, first, count


def strip_link(scene: Any, strip_name: str) -> Any:
    return scene.deepfake.strip_links.get(strip_name)


classes: tuple[type, ...] = (DEEPFAKE_PG_path, DEEPFAKE_PG_strip_link, DEEPFAKE_PG_scene)


def register_props() -> None:
    bpy.types.Scene.deepfake = PointerProperty(type=DEEPFAKE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.deepfake
