"""Add-on preferences: which Python runs the core, on which device, and where work goes.

They are per-user (not per-.blend) because the core interpreter and the GPU belong to the
machine, not to the shot. When the add-on is not enabled through Blender's preferences (the bpy
module calling register() directly), `settings()` falls back to the same defaults.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import core_record, jobs, vse

ADDON_ID = __package__
DEFAULT_WORK_FOLDER = "//deepfake/"
DEVICES = [("auto", "Auto", "An NVIDIA GPU (CUDA), else an Apple GPU (Metal), else the CPU: the log says which"),
           ("cuda", "CUDA", "An NVIDIA GPU"),
           ("mps", "Apple GPU (Metal)", "Apple Silicon's GPU through PyTorch's MPS backend"),
           ("cpu", "CPU", "The processor (slow for training)")]


class SettingsError(ValueError):
    """A preference that cannot work (unsaved file with a relative folder, no core): reported as is."""


@dataclass(frozen=True)
class CoreChoice:
    """Which interpreter runs the core, where that choice came from, and the command that repairs
    it (said by Check Core and by every refusal of a broken core)."""
    python: str
    source: str
    fix: str


@dataclass(frozen=True)
class CoreSettings:
    python: str
    core_path: str
    device: str
    work_folder: Path
    offline: bool = False
    fix: str = ""
    label: bool = True        # provenance labels on swaps and renders (core/provenance)
    c2pa_key: str = ""        # the user's signing key and certificate chain; empty: the core's local chain
    c2pa_cert: str = ""
    visible_label: bool = False

    def env(self) -> dict[str, str]:
        return jobs.core_env(self.core_path, offline=self.offline)

    def label_args(self, visible: bool = True) -> list[str]:
        """The core's labelling options for these preferences (`visible`: a swap's, which can burn
        the label in; a render's labelling cannot)."""
        if not self.label:
            return ["--no-label"]
        args = ["--c2pa-key", self.c2pa_key, "--c2pa-cert", self.c2pa_cert] if self.c2pa_key or self.c2pa_cert else []
        return args + (["--visible-label"] if visible and self.visible_label else [])


def online_access() -> bool:
    """Blender's "Allow Online Access" (4.2+): when off, the core downloads nothing."""
    return bool(getattr(bpy.app, "online_access", True))


class DEEPFAKE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python: StringProperty(
        name="Core Python", subtype="FILE_PATH", default="",
        description="The python of an environment where `core` imports; empty: the core that "
                    "scripts/setup.sh recorded, else Blender's own Python")
    core_path: StringProperty(
        name="Core Folder", subtype="DIR_PATH", default="",
        description="Optional: the folder that holds the `core` package, put on PYTHONPATH for the core")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    work_folder: StringProperty(
        name="Work Folder", subtype="DIR_PATH", default=DEFAULT_WORK_FOLDER,
        options=vse.blend_relative_path_options(),
        description="Facesets, models and swapped frames go here; // is beside the saved .blend")
    check_result: StringProperty(name="Check", default="", options={"SKIP_SAVE"})
    label_outputs: BoolProperty(
        name="Label AI Output", default=True,
        description="Swapped frames and movies, and sequencer renders that show a swapped strip, say that a face in "
                    "them was replaced: signed Content Credentials (C2PA) and plain metadata labels. Turning this off "
                    "is logged with a warning on every swap and render")
    c2pa_key: StringProperty(
        name="Signing Key", subtype="FILE_PATH", default="",
        description="Your PEM private key for trusted Content Credentials (with the certificate below); empty: a "
                    "local certificate made once for you, which verifiers show as valid but not trusted")
    c2pa_cert: StringProperty(
        name="Signing Certificate", subtype="FILE_PATH", default="",
        description="The PEM certificate chain of the signing key, its own certificate first")
    visible_label: BoolProperty(
        name="Visible Label", default=False,
        description="Also burn a small 'AI-modified' into a corner of every swapped frame: for review copies, since "
                    "a video platform's re-encode strips all metadata")

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.prop(self, "python")
        layout.prop(self, "core_path")
        row = layout.row()
        row.operator("deepfake.check_core", icon="CHECKMARK")
        if self.check_result:
            row.label(text=self.check_result)
        layout.prop(self, "device")
        layout.prop(self, "work_folder")
        box = layout.box()
        box.label(text="Provenance", icon="LOCKED")
        box.prop(self, "label_outputs")
        col = box.column()
        col.active = self.label_outputs
        col.prop(self, "c2pa_key")
        col.prop(self, "c2pa_cert")
        col.prop(self, "visible_label")
        if not self.label_outputs:
            box.label(text="Swaps and renders will not say that a face was replaced", icon="ERROR")


def addon_prefs(context: Any = None) -> Any:
    """The preferences object, or None when the add-on was registered without being enabled."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def resolve_python(prefs: Any) -> CoreChoice:
    """The preference when set; else the core `scripts/setup.sh` recorded (core_record); else
    Blender's own Python (the bpy module in the core's environment)."""
    generic_fix = f"`{core_record.SETUP_COMMAND}` in the blender-deepfake folder"
    path = getattr(prefs, "python", "") if prefs is not None else ""
    if path:
        return CoreChoice(bpy.path.abspath(path), "the Core Python preference",
                          f"{generic_fix}, then clear Core Python (or name a python where core imports)")
    try:
        record = core_record.read_record()
    except core_record.RecordError as exc:
        raise SettingsError(str(exc)) from None
    if record is not None:
        return CoreChoice(record.python, f"the setup record {core_record.record_path()}", f"`{record.setup_command()}`")
    return CoreChoice(jobs.default_python(), "Blender's own Python (no setup record at "
                      f"{core_record.record_path()})", generic_fix)


def resolve_work_folder(raw: str) -> Path:
    """An absolute work folder; a relative one needs a saved .blend (else it would land in
    Blender's working directory, a surprising place)."""
    raw = raw or DEFAULT_WORK_FOLDER
    if raw.startswith("//") or not os.path.isabs(raw):
        if not bpy.data.filepath:
            raise SettingsError(f"the work folder '{raw}' is relative: save the .blend first or set an absolute "
                                "work folder in the add-on preferences")
        return Path(bpy.path.abspath(raw if raw.startswith("//") else "//" + raw))
    return Path(raw)


def settings(context: Any = None) -> CoreSettings:
    """The effective settings (preferences, or defaults); raises SettingsError with a user message."""
    prefs = addon_prefs(context)
    core_path = bpy.path.abspath(prefs.core_path) if prefs is not None and prefs.core_path else ""
    choice = resolve_python(prefs)
    label = {} if prefs is None else {
        "label": prefs.label_outputs, "visible_label": prefs.visible_label,
        "c2pa_key": bpy.path.abspath(prefs.c2pa_key) if prefs.c2pa_key else "",
        "c2pa_cert": bpy.path.abspath(prefs.c2pa_cert) if prefs.c2pa_cert else ""}
    return CoreSettings(python=choice.python, core_path=core_path,
                        device=prefs.device if prefs is not None else "auto",
                        work_folder=resolve_work_folder(prefs.work_folder if prefs is not None else DEFAULT_WORK_FOLDER),
                        offline=not online_access(), fix=choice.fix, **label)


_checked: dict[tuple[str, str], tuple[bool, str]] = {}


def check_core(python: str, core_path: str, refresh: bool = False) -> tuple[bool, str]:
    """`check_interpreter`, remembered per (python, folder) once it passed (each check costs a
    process start); failures are rechecked every time so a fixed install is seen at once."""
    key = (python, core_path)
    if refresh or not _checked.get(key, (False, ""))[0]:
        _checked[key] = jobs.check_interpreter(python, core_path)
    return _checked[key]


class DEEPFAKE_OT_check_core(bpy.types.Operator):
    """Run the core interpreter and say whether core and its dependencies import"""
    bl_idname = "deepfake.check_core"
    bl_label = "Check Core"

    def execute(self, context: Any) -> set[str]:
        prefs = addon_prefs(context)
        core_path = bpy.path.abspath(prefs.core_path) if prefs is not None and prefs.core_path else ""
        try:
            choice = resolve_python(prefs)
        except SettingsError as exc:
            ok, message = False, str(exc)
        else:
            ok, message = check_core(choice.python, core_path, refresh=True)
            message = (f"{message} (from {choice.source})" if ok
                       else f"{message}; fix: run {choice.fix}")
        if prefs is not None:
            prefs.check_result = ("OK: " if ok else "Missing: ") + message
        self.report({"INFO"} if ok else {"ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}


classes: tuple[type, ...] = (DEEPFAKE_AP_preferences, DEEPFAKE_OT_check_core)
