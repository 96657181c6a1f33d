"""Strip helpers and the Blender 4.2 / 4.5 / 5.0 API differences, in one place.

Every other module goes through these functions instead of touching `editor.strips`,
`new_effect` or `workspace.sequencer_scene` directly, so a new Blender release changes one file.
Differences handled here:
- 4.4 renamed `editor.sequences` / `sequences_all` to `strips` / `strips_all` (and the RNA
  classes `*Sequence` to `*Strip`); the `type` enum names ('MOVIE', 'IMAGE', ...) did not change.
- 5.0 lets a workspace show another scene in the sequencer (`workspace.sequencer_scene`); it is
  None in a fresh session and some operators and `strip.modifiers.new()` crash while it is unset.
- `new_effect(..., length=, input1=, input2=)` (5.0) replaced 4.2's `frame_end=, seq1=, seq2=`
  (`frame_end` exclusive); the names are read from the RNA function.
- 5.0 video output needs `image_settings.media_type = 'VIDEO'` before `ffmpeg` settings apply.
- 5.0 path properties may declare PATH_SUPPORTS_BLEND_RELATIVE (else '//' values warn); 4.2
  refuses the unknown option, so it is only passed where the running version knows it.
- `new_movie()` on a missing file silently makes a 1-frame strip: insertion checks files first.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bpy

MEDIA_TYPES = frozenset({"MOVIE", "IMAGE"})
MAX_CHANNEL = 128


class StripError(ValueError):
    """A strip the core cannot read: the operators report the message and change nothing."""


# -- editor access ---------------------------------------------------------------------------------
def ensure_editor(scene: bpy.types.Scene, context: Any = None) -> Any:
    """The scene's sequence editor, created if missing; on 5.0 also points the workspace's
    sequencer at this scene when it is unset (a None `sequencer_scene` crashes some calls)."""
    if scene.sequence_editor is None:
        scene.sequence_editor_create()
    ensure_sequencer_scene(context or bpy.context, scene)
    return scene.sequence_editor


def ensure_sequencer_scene(context: Any, scene: bpy.types.Scene) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None and hasattr(workspace, "sequencer_scene") and workspace.sequencer_scene is None:
        workspace.sequencer_scene = scene


def top_strips(scene: bpy.types.Scene) -> Any:
    """The top-level strip collection (where new strips go): `strips` (4.4+) or `sequences`."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(scene: bpy.types.Scene) -> list[Any]:
    """Every strip, inside metas too: `strips_all` (4.4+) or `sequences_all`."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)


def selected_strips(scene: bpy.types.Scene) -> list[Any]:
    return [s for s in all_strips(scene) if s.select]


def active_strip(scene: bpy.types.Scene) -> Any:
    editor = scene.sequence_editor
    return None if editor is None else editor.active_strip


# -- reading a strip ---------------------------------------------------------------------------------
def strip_source(strip: Any) -> Path:
    """The absolute path of a movie strip's file or an image strip's folder."""
    # .absolute(): a path without '//' is relative to Blender's working directory, as Blender
    # reads it; the core runs in the work folder, so it must get the absolute path.
    if strip.type == "MOVIE":
        return Path(bpy.path.abspath(strip.filepath)).absolute()
    if strip.type == "IMAGE":
        return Path(bpy.path.abspath(strip.directory)).absolute()
    raise StripError(f"strip '{strip.name}' is a {strip.type.lower()} strip: only movie and image strips have faces")


def check_media_strip(strip: Any) -> None:
    """Raise StripError unless the strip is a movie or image strip whose media exist."""
    if strip.type not in MEDIA_TYPES:
        raise StripError(f"strip '{strip.name}' is a {strip.type.lower()} strip: only movie and image strips have faces")
    source = strip_source(strip)
    if strip.type == "MOVIE" and not source.is_file():
        raise StripError(f"strip '{strip.name}': its movie is missing: {source}")
    if strip.type == "IMAGE":
        visible = list(strip.elements)[_offset(strip):_offset(strip) + int(strip.frame_final_duration)]
        missing = [e.filename for e in visible
                   if not (source / e.filename).is_file()]
        if missing:
            raise StripError(f"strip '{strip.name}': {len(missing)} image(s) missing in {source}, e.g. {missing[0]}")


def check_timing(strip: Any) -> None:
    """Refuse a strip whose timeline frames are not its source frames one for one, in order.

    Extract reads, and Swap writes, source frames `first .. first + count - 1` for timeline frames
    `frame_final_start ..`; whatever makes Blender show other source frames would make the swap
    strip run out of step with the footage without a word. Each case is refused with what to do,
    rather than mapped: mapping needs the core to read an arbitrary frame list (repeats, gaps,
    reversed order), which it does not. A movie whose fps differs from the scene's is fine as
    long as Blender plays it frame for frame (a strip made from Python); added through the UI
    ("Adjust Playback Rate", on by default) Blender resamples it, which shows as a timeline length
    other than its frame count.
    """
    name, scene = strip.name, strip.id_data
    retimed = "; swap the strip as it is, then retime the swapped strip (it lines up frame for frame)"
    if len(getattr(strip, "retiming_keys", ())):
        raise StripError(f"strip '{name}' has retiming keys, so its timeline frames are not its source frames: "
                         f"reset them (Strip > Retiming > Reset Retiming){retimed}")
    for other in all_strips(scene):
        if other.type == "SPEED" and not other.mute and getattr(other, "input_1", None) == strip:
            raise StripError(f"strip '{name}' is retimed by the speed effect '{other.name}': Extract and Swap follow "
                             f"its own frames, not the effect's; mute or delete '{other.name}'{retimed}")
    if getattr(strip, "use_reverse_frames", False):
        raise StripError(f"strip '{name}' plays its frames in reverse: turn off Reverse Frames (Strip > Time){retimed}")
    if getattr(strip, "strobe", 1.0) > 1.0 + 1e-6:
        raise StripError(f"strip '{name}' has Strobe {strip.strobe:g} (shows every n-th frame): set it to 1{retimed}")
    if strip.type == "MOVIE":
        scene_fps = scene.render.fps / scene.render.fps_base
        shown = round(strip.frame_final_duration + strip.frame_offset_start + strip.frame_offset_end)
        if abs(strip.fps - scene_fps) > 1e-3 and shown != strip.frame_duration:
            raise StripError(f"strip '{name}' is a {strip.fps:g} fps movie that Blender plays at its own rate in this "
                             f"{scene_fps:g} fps scene ({strip.frame_duration} frames shown over {shown} timeline "
                             f"frames): set the scene's Frame Rate to {strip.fps:g} fps (Output Properties) and add "
                             f"the movie again, or convert it to {scene_fps:g} fps first")


def _offset(strip: Any) -> int:
    """Source frames hidden before the visible part: the handle offset plus the animation offset
    (hold/trim applied to the media itself, present in all supported versions)."""
    return round(strip.frame_offset_start + getattr(strip, "animation_offset_start", 0))


def visible_range(strip: Any, frame_files: Callable[[Path], list[str]] | None = None) -> tuple[Path, int, int]:
    """(source path, first source frame, frame count) of what the strip shows on the timeline.

    Movie: source frames (0-based, the movie's own numbering) from the start offset, for
    `frame_final_duration` frames. Image strip: the folder, and the index of the first visible
    element among the folder's frames in the core's order, which `frame_files` gives (the core
    numbers an image sequence: `deepfake inspect`; a strip may list only part of its folder);
    without it an image strip is refused. A strip that Blender retimes is refused (`check_timing`).
    """
    check_timing(strip)
    path = strip_source(strip)
    first, count = _offset(strip), int(strip.frame_final_duration)
    if strip.type == "IMAGE":
        elements = list(strip.elements)
        if not elements:
            raise StripError(f"strip '{strip.name}' has no images")
        if frame_files is None:
            raise StripError(f"strip '{strip.name}': the core's frame order of {path} is not known here")
        name = elements[min(first, len(elements) - 1)].filename
        folder = frame_files(path)
        if name not in folder:
            raise StripError(f"strip '{strip.name}': {name} is missing in {path}")
        first = folder.index(name)
    return path, first, count


def strip_colorspace(strip: Any) -> str:
    """The OCIO colourspace the strip's pixels are in (the core converts from and back to it)."""
    settings = getattr(strip, "colorspace_settings", None)
    return settings.name if settings is not None else "sRGB"


ACCURATE_YUV_SINCE = (4, 4, 0)
"""The first release whose movie reader converts YUV with point sampling, full chroma
interpolation and accurate rounding: measured by rendering a frame with bpy 4.2, 4.3 (swscale's
bilinear default) and 4.4, 4.5, 5.0 (accurate) and matching it with av 15.1 bit for bit."""


def movie_yuv_conversion() -> str:
    """The core's `--yuv` that reproduces this Blender's movie decoding, so the pixels a swap
    leaves alone equal the strip below it bit for bit."""
    return "accurate" if bpy.app.version >= ACCURATE_YUV_SINCE else "fast"


def blender_ocio_config() -> Path | None:
    """Blender's own OCIO config, so the core converts with the same definitions the VSE uses."""
    for kind in ("LOCAL", "SYSTEM"):
        base = bpy.utils.resource_path(kind)
        path = Path(base) / "datafiles" / "colormanagement" / "config.ocio" if base else None
        if path and path.is_file():
            return path
    return None


# -- timeline space ----------------------------------------------------------------------------------
def first_free_channel_above(scene: bpy.types.Scene, strip: Any, start: int, end: int) -> int:
    """The lowest channel above `strip` with no strip overlapping [start, end) among the strip's
    siblings (the top level; strips inside metas live in their own channel space)."""
    for channel in range(strip.channel + 1, MAX_CHANNEL + 1):
        if not any(s.channel == channel and s.frame_final_start < end and start < s.frame_final_end
                   for s in top_strips(scene)):
            return channel
    raise StripError(f"no free channel above '{strip.name}' between frames {start} and {end}")


# -- inserting strips --------------------------------------------------------------------------------
def add_movie_strip(scene: bpy.types.Scene, path: str | os.PathLike, channel: int, frame_start: int,
                    name: str | None = None) -> Any:
    """A movie strip, after checking the file exists (new_movie would make a 1-frame strip)."""
    path = Path(path).absolute()
    if not path.is_file():
        raise StripError(f"movie not found: {path}")
    ensure_editor(scene)
    return top_strips(scene).new_movie(name=name or path.stem, filepath=str(path), channel=channel,
                                       frame_start=frame_start)


def add_image_strip(scene: bpy.types.Scene, folder: str | os.PathLike, files: Iterable[str], channel: int,
                    frame_start: int, name: str | None = None) -> Any:
    """An image-sequence strip of `files` (in this order) from `folder`, all checked first."""
    folder, files = Path(folder), list(files)
    if not files:
        raise StripError(f"no images to add from {folder}")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise StripError(f"{len(missing)} image(s) missing in {folder}, e.g. {missing[0]}")
    ensure_editor(scene)
    strip = top_strips(scene).new_image(name=name or folder.name, filepath=str(folder / files[0]),
                                        channel=channel, frame_start=frame_start)
    for file in files[1:]:
        strip.elements.append(file)
    return strip


def new_effect(scene: bpy.types.Scene, name: str, effect_type: str, channel: int, frame_start: int,
               length: int = 1, inputs: tuple[Any, ...] = ()) -> Any:
    """An effect strip with the arguments of the running version (5.0: length/input1; 4.2:
    frame_end/seq1), read from the RNA function's parameter names rather than from its version."""
    ensure_editor(scene)
    strips = top_strips(scene)
    params = set(_new_effect_parameters(scene))
    kwargs: dict[str, Any] = {"name": name, "type": effect_type, "channel": channel, "frame_start": frame_start}
    if "length" in params:
        kwargs["length"] = length
    else:
        kwargs["frame_end"] = frame_start + length  # exclusive: a strip of `length` frames
    prefix = "input" if "input1" in params else "seq"
    for i, strip in enumerate(inputs, 1):
        kwargs[f"{prefix}{i}"] = strip
    return strips.new_effect(**kwargs)


def _new_effect_parameters(scene: bpy.types.Scene) -> list[str]:
    """Parameter names of `new_effect` on the top-level strip collection (`StripsTopLevel` from
    4.4, `SequencesTopLevel` before)."""
    editor = scene.sequence_editor
    name = "strips" if hasattr(editor, "strips") else "sequences"
    return list(editor.bl_rna.properties[name].srna.functions["new_effect"].parameters.keys())


def set_video_output(scene: bpy.types.Scene) -> None:
    """Render to an FFmpeg movie: 5.0 first needs the media type set to VIDEO."""
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"


def blend_relative_path_options() -> set[str]:
    """Property options for a path that may start with '//' outside ID data (add-on preferences).

    Recent versions (5.0) warn on such a value unless the property declares
    PATH_SUPPORTS_BLEND_RELATIVE; 4.2 lacks the flag and refuses a class that names it. The flag
    came with its read-back, `Property.is_path_supports_blend_relative`, so that RNA property
    tells (bpy.props does not validate options until registration, and a failed trial
    registration prints a traceback on 4.2).
    """
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties:
        return {"PATH_SUPPORTS_BLEND_RELATIVE"}
    return set()
