"""Per-scene settings (`scene.deepfake`) and the strip -> faceset links.

Why the strip links live on the scene, keyed by strip name, rather than as a PointerProperty on
strips: the strip RNA class is `Sequence` in 4.2 and `Strip` from 4.4, and a property registered
on strips is copied by Shift+D onto a duplicate whose range may differ, silently pointing it at
the wrong alignments. A scene collection is version-independent, saved with the .blend, visible in
one place, and a duplicate (new name) starts unlinked. A renamed strip finds its link again: a
link whose strip no longer exists under its name, made from the same source file, is taken over
by the new name (`strip_link`); the link's alignments are only reused while the source matches.
"""
from __future__ import annotations

from typing import Any

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from . import vse


class DEEPFAKE_PG_path(bpy.types.PropertyGroup):
    path: StringProperty(name="Faceset", subtype="DIR_PATH", default="")


class DEEPFAKE_PG_strip_link(bpy.types.PropertyGroup):
    """`name` (built in) is the strip's name."""
    faceset: StringProperty(name="Faceset", subtype="DIR_PATH", default="")
    source: StringProperty(name="Source", default="")
    first: IntProperty(name="First Source Frame", default=0)
    count: IntProperty(name="Frames", default=0)


class DEEPFAKE_PG_swap_result(bpy.types.PropertyGroup):
    """A strip the Swap step added (`name` is its name): where it came from, for Evaluate, and the
    evaluation's summary figures for the panel. Kept on the scene, like the strip links."""
    source_strip: StringProperty(name="Source Strip", default="")
    source: StringProperty(name="Source", default="")
    first: IntProperty(name="First Source Frame", default=0)
    count: IntProperty(name="Frames", default=0)
    out: StringProperty(name="Swapped Frames", subtype="DIR_PATH", default="")
    report: StringProperty(name="Report", subtype="FILE_PATH", default="")
    summary: StringProperty(name="Summary", default="",
                            description="The evaluation's figures as JSON (core.evaluate's summary, target, counts)")


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
    init_model: StringProperty(name="Start From", subtype="DIR_PATH", default="",
                               description="A pretrained model (deepfake pretrain) a new model starts from: hours "
                                           "of training saved. A model folder that already holds a model resumes; "
                                           "it must have started from this one (or leave it empty)")
    layout: EnumProperty(name="Layout", default="auto", items=[
        ("auto", "Default", "Two decoders for a new model, or the layout of the model it starts from"),
        ("liae", "Shared Decoder (LIAE)", "One decoder for both people (DeepFaceLab's LIAE)"),
        ("df", "Two Decoders (DF)", "A decoder per person: the layout of every model made before layouts were offered")])
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
    # core.color_transfers.COLOR_TRANSFERS, repeated (the add-on cannot import core; a test holds them equal)
    color: EnumProperty(name="Color", default="mean-std", items=[
        ("mean-std", "Mean / Std", "Match mean and spread in Lab inside the mask"),
        ("histogram", "Histogram", "Match histograms"),
        ("seamless", "Seamless", "Poisson blending (8-bit only)"),
        ("none", "None", "No colour matching")])
    swap_existing: EnumProperty(name="Earlier Result", default="replace", items=[
        ("replace", "Replace", "When the strip was swapped before with another model, iteration or settings, "
                               "replace that result (a rerun of the same swap always resumes)"),
        ("new", "Keep", "Keep an earlier, different result and write the new one beside it (a new strip)")])
    farm_chunk_size: IntProperty(name="Chunk", default=50, min=1, soft_max=1000,
                                 description="Frames per render-farm task; each task also reads a short pre-roll "
                                             "before its frames (about 1.5 s of footage) so the chunks join without a seam")
    markers: BoolProperty(name="Flag Markers", default=True,
                          description="Add a timeline marker where the core flags frames (one per run of frames flagged for the same reasons)")
    evaluate: BoolProperty(name="Evaluate", default=True,
                           description="After the swap, measure identity, expression, stability and seam against the "
                                       "source and write a report (on a CPU about as long again as the swap)")
    strip_links: CollectionProperty(type=DEEPFAKE_PG_strip_link)
    swap_results: CollectionProperty(type=DEEPFAKE_PG_swap_result)

    # state of the running or last job, drawn by the panel
    job_running: BoolProperty(default=False, options={"SKIP_SAVE"})
    job_progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    job_status: StringProperty(default="", options={"SKIP_SAVE"})
    render_label_status: StringProperty(default="", options={"SKIP_SAVE"},
                                        description="How the last render that showed a swap was labelled")


def link_strip(scene: Any, strip_name: str, faceset: str, source: str, first: int, count: int) -> None:
    links = scene.deepfake.strip_links
    link = links.get(strip_name) or links.add()
    link.name, link.faceset, link.source, link.first, link.count = strip_name, faceset, source, first, count


def strip_link(scene: Any, strip: Any, rekey: bool = True) -> Any:
    """The strip's faceset link: by its name, else (the strip was renamed) the one orphaned link
    from the same source file, which `rekey` renames to the strip's new name so that it sticks.
    A copy made while its original still has the old name finds nothing; either way a link only
    ever goes to a strip of the file it was extracted from, whose alignments are numbered by that
    file's frames. The panel's draw() passes rekey=False (Blender forbids writing while drawing)."""
    links = scene.deepfake.strip_links
    link = links.get(strip.name)
    if link is not None or strip.type not in vse.MEDIA_TYPES:
        return link
    names = {s.name for s in vse.all_strips(scene)}
    source = str(vse.strip_source(strip))
    orphans = [l for l in links if l.name not in names and l.source == source]
    if len(orphans) > 1:  # several renamed strips of one file: the one of the same range, if any
        try:
            _, first, count = vse.visible_range(strip)
        except vse.StripError:
            return None
        orphans = [l for l in orphans if (l.first, l.count) == (first, count)]
    if len(orphans) != 1:
        return None
    if rekey:
        orphans[0].name = strip.name
    return orphans[0]


def record_swap(scene: Any, strip_name: str, source_strip: str, source: str, first: int, count: int, out: str) -> None:
    results = scene.deepfake.swap_results
    result = results.get(strip_name) or results.add()
    result.name, result.source_strip, result.source = strip_name, source_strip, source
    result.first, result.count, result.out, result.report, result.summary = first, count, out, "", ""


def swap_result(scene: Any, strip: Any) -> Any:
    """The swap shown for a strip: its own record when it is a swapped strip, else the latest
    swap of it when it is a source (right after Swap the source is still the active strip)."""
    if strip is None:
        return None
    results = scene.deepfake.swap_results
    own = results.get(strip.name)
    if own is not None:
        return own
    of_source = [r for r in results if r.source_strip == strip.name]
    return of_source[-1] if of_source else None


classes: tuple[type, ...] = (DEEPFAKE_PG_path, DEEPFAKE_PG_strip_link, DEEPFAKE_PG_swap_result, DEEPFAKE_PG_scene)


def register_props() -> None:
    bpy.types.Scene.deepfake = PointerProperty(type=DEEPFAKE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.deepfake
