"""Operators: Extract, Train, Swap, Evaluate, Cancel (and small faceset-list and report helpers).

Each step operator is a thin command builder: `plan()` checks the input and returns the core
commands to run plus what to do with each result; `runner.JobOperator` runs them (blocking or
modal, see runner.py). What the add-on needs to know about the core's files comes from the
core: the `result` events of its commands and `deepfake inspect`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import bpy
from bpy.props import EnumProperty, IntProperty

from . import evaluation, jobs, prefs, props, runner, vse
from .runner import Command, JobOperator, Plan, UserError


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "strip"


def _core(context: Any) -> prefs.CoreSettings:
    settings = prefs.settings(context)
    ok, message = prefs.check_core(settings.python, settings.core_path)
    if not ok:
        raise UserError(f"{message}; fix: run {settings.fix}")
    return settings


def _visible_range(core: prefs.CoreSettings, strip: Any) -> tuple[Path, int, int]:
    """vse.visible_range with the core's frame order of an image strip's folder (inspect)."""
    def frame_files(folder: Path) -> list[str]:
        return list(runner.inspect(core, folder).get("files", []))
    return vse.visible_range(strip, frame_files)


# -- Extract --------------------------------------------------------------------------------------------
class DEEPFAKE_OT_extract(JobOperator, bpy.types.Operator):
    """Find and align the faces in each selected movie or image strip's visible range, into a faceset per strip"""
    bl_idname = "deepfake.extract"
    bl_label = "Extract Faces"
    bl_options = {"REGISTER"}

    def plan(self, context: Any) -> Plan:
        scene = context.scene
        strips = vse.selected_strips(scene)
        if not strips:
            raise UserError("select one or more movie or image strips to extract")
        for strip in strips:
            vse.check_media_strip(strip)
        core = _core(context)
        settings = scene.deepfake
        commands = []
        for strip in strips:
            path, first, count = _visible_range(core, strip)
            out = core.work_folder / "facesets" / _safe_name(strip.name)
            argv = jobs.core_command(core.python, "extract", [path, "--out", out, "--start", first, "--count", count,
                                                              "--aligner", settings.aligner, "--device", core.device])
            commands.append(Command(argv, f"Extract '{strip.name}'",
                                    self._linker(strip.name, out, path, first, count)))
        return Plan("extract", commands, core.env(), str(core.work_folder))

    @staticmethod
    def _linker(name: str, out: Path, path: Path, first: int, count: int) -> Callable[[Any, jobs.JobState], str]:
        def after(context: Any, state: jobs.JobState) -> str:
            props.link_strip(context.scene, name, str(out), str(path), first, count)
            faces = (state.result or {}).get("faces", "?")
            return f"'{name}': {faces} faces from source frames {first}..{first + count - 1} in {out}"
        return after


# -- Train ----------------------------------------------------------------------------------------------
def model_folder(context: Any, work_folder: Path) -> Path:
    raw = context.scene.deepfake.model_folder
    return Path(bpy.path.abspath(raw)) if raw else work_folder / "models" / "model"


def _facesets(items: Any, side: str) -> list[Path]:
    paths = [Path(bpy.path.abspath(item.path)) for item in items if item.path]
    if not paths:
        raise UserError(f"add at least one faceset {side}")
    for path in paths:  # whether it is a faceset, the core's train says
        if not path.is_dir():
            raise UserError(f"faceset {side} is not a folder: {path}")
    return paths


class DEEPFAKE_OT_train(JobOperator, bpy.types.Operator):
    """Train (or resume) a model: A is the face in the footage, B the face to put there"""
    bl_idname = "deepfake.train"
    bl_label = "Train Model"
    bl_options = {"REGISTER"}

    def plan(self, context: Any) -> Plan:
        settings = context.scene.deepfake
        facesets_a, facesets_b = _facesets(settings.facesets_a, "A"), _facesets(settings.facesets_b, "B")
        core = _core(context)
        model = model_folder(context, core.work_folder)
        args: list[Any] = []
        for path in facesets_a:
            args += ["--faceset-a", path]
        for path in facesets_b:
            args += ["--faceset-b", path]
        args += ["--model", model, "--iterations", settings.iterations, "--preset", settings.preset,
                 "--device", core.device, "--preview-every", max(10, min(250, settings.iterations // 20))]
        # A new model starts from these; an existing one resumes as it was made (the core refuses
        # a Start From or Layout that differs from how it was made, and says so).
        if settings.init_model:
            init = Path(bpy.path.abspath(settings.init_model))
            if not init.is_dir():  # whether it holds a model, the core says
                raise UserError(f"Start From: {init} is not a model folder (it does not exist)")
            args += ["--init", init]
        if settings.layout != "auto":
            args += ["--layout", settings.layout]
        argv = jobs.core_command(core.python, "train", args)

        def after(context: Any, state: jobs.JobState) -> str:
            result = state.result or {}
            return f"model {model}: iteration {result.get('iteration', '?')}, loss A {result.get('loss_a', '?')}"
        return Plan("train", [Command(argv, "Train", after)], core.env(), str(core.work_folder))


# -- Swap -----------------------------------------------------------------------------------------------
@dataclass
class SwapTarget:
    """What a swap of the active strip reads and writes: the same for a local swap, a farm job
    for it and the farm's result coming back."""

    core: prefs.CoreSettings
    settings: Any
    strip: Any
    path: Path
    first: int
    count: int
    mode: str
    fmt: str
    out: Path
    model: Path
    snapshot: dict[str, Any]
    ocio: Path | None
    alignments: Path | None

    def swap_args(self) -> list[Any]:
        s = self.settings
        args: list[Any] = [self.path, "--model", self.model, "--out", self.out, "--start", self.first,
                           "--count", self.count, "--mode", self.mode, "--format", self.fmt, "--color", s.color,
                           "--colorspace", self.snapshot["colorspace"], "--yuv", vse.movie_yuv_conversion(),
                           "--aligner", s.aligner, "--existing", s.swap_existing, "--device", self.core.device,
                           *self.core.label_args()]
        if self.ocio is not None:
            args += ["--ocio-config", self.ocio]
        if self.alignments is not None:
            args += ["--alignments", self.alignments]
        return args


def swap_target(context: Any) -> SwapTarget:
    scene = context.scene
    strip = vse.active_strip(scene)
    if strip is None:
        raise UserError("make a movie or image strip active to swap its face")
    vse.check_media_strip(strip)
    core = _core(context)
    settings = scene.deepfake
    model = model_folder(context, core.work_folder)  # whether it holds a model, the core's swap says
    path, first, count = _visible_range(core, strip)
    mode, fmt = settings.swap_mode, settings.swap_format
    out = core.work_folder / "swaps" / f"{_safe_name(strip.name)}_{mode}_{fmt}"
    link = props.strip_link(scene, strip)
    alignments = None  # the strip's faceset: the swap reuses its landmarks
    if link is not None and link.source == str(path) and Path(link.faceset).is_dir():
        alignments = Path(link.faceset)
    snapshot = {"name": strip.name, "start": int(strip.frame_final_start),
                "duration": int(strip.frame_final_duration), "colorspace": vse.strip_colorspace(strip)}
    return SwapTarget(core, settings, strip, path, first, count, mode, fmt, out, model, snapshot,
                      vse.blender_ocio_config(), alignments)


class DEEPFAKE_OT_swap(JobOperator, bpy.types.Operator):
    """Swap the face in the active strip with a trained model; the result goes on the first free channel above"""
    bl_idname = "deepfake.swap"
    bl_label = "Swap Face"
    bl_options = {"REGISTER", "UNDO"}

    def plan(self, context: Any) -> Plan:
        t = swap_target(context)
        argv = jobs.core_command(t.core.python, "swap", t.swap_args())
        placed: dict[str, str] = {}  # the placed strip's name (Blender may suffix it), for the evaluation
        commands: list[Command] = []

        def retarget(written: Path) -> None:
            """The core kept an earlier result and wrote beside it: evaluate what it wrote."""
            if len(commands) > 1:
                fresh = evaluate_command(t.core, t.path, written, t.first, t.count, lambda: placed.get("name", ""))
                commands[1].argv[:], commands[1].after = fresh.argv, fresh.after
        after = self._placer(t.snapshot, t.out, t.path, t.first, t.count, t.mode, t.fmt, t.settings.markers,
                             placed, retarget)
        commands.append(Command(argv, f"Swap '{t.strip.name}'", after))
        if t.settings.evaluate:
            commands.append(evaluate_command(t.core, t.path, t.out, t.first, t.count, lambda: placed.get("name", "")))
        return Plan("swap", commands, t.core.env(), str(t.core.work_folder))

    @staticmethod
    def _placer(snap: dict[str, Any], out: Path, path: Path, first: int, count: int, mode: str, fmt: str,
                markers: bool, placed: dict[str, str], retarget: Callable[[Path], None]
                ) -> Callable[[Any, jobs.JobState], str]:
        def after(context: Any, state: jobs.JobState) -> str:
            scene = context.scene
            source = next((s for s in vse.all_strips(scene) if s.name == snap["name"]), None)
            if source is None:
                raise UserError(f"strip '{snap['name']}' was removed while swapping; frames are in {out}")
            # The core may have written beside an earlier result (Keep): its result event says where.
            written = Path((state.result or {}).get("output") or out)
            if written != out:
                retarget(written)
            result = state.result or {}
            files = list(result.get("files") or [])
            if len(files) != count:
                raise UserError(f"the core's result names {len(files)} frames of {count}: frames are in {written}")
            start, end = snap["start"], snap["start"] + snap["duration"]
            channel = vse.first_free_channel_above(scene, source, start, end)
            strip = vse.add_image_strip(scene, written, files, channel, start, name=f"{snap['name']} {mode}")
            if mode == "overlay":
                strip.blend_type = "ALPHA_OVER"
                strip.alpha_mode = "STRAIGHT"
            else:
                strip.blend_type = "REPLACE"
            try:  # the frames' own colourspace (an EXR plate swapped to PNG gives sRGB frames)
                strip.colorspace_settings.name = (state.result or {}).get("output_colorspace") or snap["colorspace"]
            except TypeError:
                pass  # a colourspace name unknown to this config: keep Blender's default
            placed["name"] = strip.name
            props.record_swap(scene, strip.name, snap["name"], str(path), first, count, str(written))
            flagged = sorted((int(f), list(reasons)) for f, reasons in result.get("flagged", []))
            if markers:
                existing = {(m.frame, m.name) for m in scene.timeline_markers}
                for frame, reasons, length in _runs(flagged):
                    at = start + frame - first
                    name = ", ".join(reasons) + (f" ({length} frames)" if length > 1 else "")
                    if (at, name) not in existing:
                        scene.timeline_markers.new(name, frame=at)
            return f"'{strip.name}' on channel {channel}, {len(flagged)} flagged frame(s)"
        return after


def _runs(flagged: list[tuple[int, list[str]]]) -> list[tuple[int, list[str], int]]:
    """Consecutive frames flagged for the same reasons as (first frame, reasons, length): one
    marker per run, so a shot with 200 faceless frames gets one marker, not 200."""
    runs: list[tuple[int, list[str], int]] = []
    for frame, reasons in flagged:
        if runs and runs[-1][1] == reasons and runs[-1][0] + runs[-1][2] == frame:
            runs[-1] = (runs[-1][0], reasons, runs[-1][2] + 1)
        else:
            runs.append((frame, reasons, 1))
    return runs


# -- Farm -----------------------------------------------------------------------------------------------
def _farm_target(context: Any) -> SwapTarget:
    t = swap_target(context)
    if (t.mode, t.fmt) != ("composite", "png"):
        raise UserError("a farm job writes composited PNG frames (joined into a movie at the end): "
                        "set Mode to Composite and Format to PNG")
    return t


class DEEPFAKE_OT_farm_job(JobOperator, bpy.types.Operator):
    """Write a render-farm job (Open Job Description bundle) that swaps the active strip's frames in chunks; load its result with Load Farm Result"""
    bl_idname = "deepfake.farm_job"
    bl_label = "Write Farm Job"
    bl_options = {"REGISTER"}

    def plan(self, context: Any) -> Plan:
        t = _farm_target(context)
        bundle = t.core.work_folder / "farm" / t.out.name
        args: list[Any] = [t.path, "--model", t.model, "--out", t.out, "--start", t.first, "--count", t.count,
                           "--chunk-size", t.settings.farm_chunk_size, "--aligner", t.settings.aligner,
                           "--device", t.core.device, "--color", t.settings.color,
                           "--colorspace", t.snapshot["colorspace"], "--yuv", vse.movie_yuv_conversion(),
                           "--core-python", t.core.python, "--name", t.strip.name, "--bundle", bundle,
                           # Keep (write beside) cannot be split across chunks sharing one folder
                           "--existing", "replace" if t.settings.swap_existing == "replace" else "refuse"]
        if t.ocio is not None:
            args += ["--ocio-config", t.ocio]

        # The bundle runs the core's defaults on the workers: always labelled, never burned in.
        unlike = [w for w, on in (("Label AI Output is off", not t.core.label),
                                  ("Visible Label is on", t.core.visible_label)) if on]
        note = f"; the farm labels its output as always ({' and '.join(unlike)} here)" if unlike else ""

        def after(context: Any, state: jobs.JobState) -> str:
            result = state.result or {}
            return (f"farm job for '{t.strip.name}' (frames {result.get('frame_start')}..{result.get('frame_end')}, "
                    f"{result.get('chunks')} tasks) in {bundle}{note}")
        return Plan("farm", [Command(jobs.core_command(t.core.python, "farm-job", args), "Write Farm Job", after)],
                    t.core.env(), str(t.core.work_folder))


class DEEPFAKE_OT_farm_result(JobOperator, bpy.types.Operator):
    """Place what the farm swapped for the active strip on the first free channel above, as a local swap does"""
    bl_idname = "deepfake.farm_result"
    bl_label = "Load Farm Result"
    bl_options = {"REGISTER", "UNDO"}

    def plan(self, context: Any) -> Plan:
        t = _farm_target(context)
        argv = jobs.core_command(t.core.python, "farm-result", [t.out, "--start", t.first, "--count", t.count])
        after = DEEPFAKE_OT_swap._placer(t.snapshot, t.out, t.path, t.first, t.count, t.mode, t.fmt,
                                         t.settings.markers, {}, lambda written: None)
        return Plan("farm", [Command(argv, f"Load farm result of '{t.strip.name}'", after)], t.core.env(),
                    str(t.core.work_folder))


# -- Evaluate -------------------------------------------------------------------------------------------
def evaluate_command(core: prefs.CoreSettings, source: Path, out: Path, first: int, count: int,
                     strip_name: Callable[[], str]) -> Command:
    """`deepfake evaluate` of one swap; on success the figures go to the swapped strip's record.
    Optional: a swap whose evaluation fails or is cancelled keeps its strip."""
    reports = evaluation.report_folder(core.work_folder, out)
    argv = jobs.core_command(core.python, "evaluate", evaluation.evaluate_args(source, out, first, count, reports))

    def after(context: Any, state: jobs.JobState) -> str:
        result = context.scene.deepfake.swap_results.get(strip_name())
        if result is None:
            raise UserError(f"the swapped strip '{strip_name()}' is gone; the report is in {reports}")
        result.summary = evaluation.compact_summary(state.result or {})
        result.report = str((state.result or {}).get("html") or "")
        lines = evaluation.summary_lines(result.summary)
        return f"'{result.name}': " + (lines[0] if lines else "evaluated") + f"; report {result.report}"
    return Command(argv, "Evaluate", after, optional=True, step="evaluate")


def _active_swap(context: Any) -> Any:
    strip = vse.active_strip(context.scene)
    result = props.swap_result(context.scene, strip)
    if result is None:
        raise UserError("make a strip the Swap step added (or its source) active")
    return result


class DEEPFAKE_OT_evaluate(JobOperator, bpy.types.Operator):
    """Measure the active swap against its source: identity, expression, stability, seam; writes a report"""
    bl_idname = "deepfake.evaluate"
    bl_label = "Evaluate Swap"
    bl_options = {"REGISTER", "UNDO"}  # it writes the figures onto the scene

    def plan(self, context: Any) -> Plan:
        result = _active_swap(context)
        out = Path(result.out)
        if not out.exists():
            raise UserError(f"the swapped frames are gone ({out}): swap again")
        core = _core(context)
        name = result.name
        command = evaluate_command(core, Path(result.source), out, result.first, result.count, lambda: name)
        command.optional = False  # evaluating is all this operator does: a failure is its error
        return Plan("evaluate", [command], core.env(), str(core.work_folder))


class DEEPFAKE_OT_open_report(bpy.types.Operator):
    """Open the active swap's evaluation report (HTML: plots and the worst frames) in the system's browser"""
    bl_idname = "deepfake.open_report"
    bl_label = "Open Report"

    def execute(self, context: Any) -> set[str]:
        try:
            result = _active_swap(context)
        except UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        path = Path(result.report) if result.report else None
        if path is None or not path.is_file():
            self.report({"ERROR"}, f"'{result.name}' has no evaluation report yet: press Evaluate")
            return {"CANCELLED"}
        if bpy.app.background:  # no desktop to open it on: say where it is
            self.report({"INFO"}, f"report: {path}")
            return {"FINISHED"}
        return bpy.ops.wm.path_open(filepath=str(path))


# -- Cancel and faceset lists ---------------------------------------------------------------------------
class DEEPFAKE_OT_cancel(bpy.types.Operator):
    """Stop the running deepfake job (the core saves what it has; a rerun resumes)"""
    bl_idname = "deepfake.cancel"
    bl_label = "Cancel Job"

    def execute(self, context: Any) -> set[str]:
        running = jobs.running_jobs()
        if not running:
            self.report({"INFO"}, "no deepfake job is running")
            return {"CANCELLED"}
        for job in running:
            job.cancel()
        return {"FINISHED"}


SIDES = [("A", "A", "The face in the footage"), ("B", "B", "The face to put there")]


class DEEPFAKE_OT_faceset_add(bpy.types.Operator):
    """Add the facesets of the selected (extracted) strips, or an empty slot to fill in"""
    bl_idname = "deepfake.faceset_add"
    bl_label = "Add Faceset"
    bl_options = {"REGISTER", "UNDO"}
    side: EnumProperty(items=SIDES)

    def execute(self, context: Any) -> set[str]:
        scene = context.scene
        items = scene.deepfake.facesets_a if self.side == "A" else scene.deepfake.facesets_b
        known = {item.path for item in items}
        linked = [props.strip_link(scene, s) for s in vse.selected_strips(scene)]
        paths = [link.faceset for link in linked if link is not None and link.faceset not in known]
        for path in paths or [""]:
            items.add().path = path
        return {"FINISHED"}


class DEEPFAKE_OT_faceset_remove(bpy.types.Operator):
    bl_idname = "deepfake.faceset_remove"
    bl_label = "Remove Faceset"
    bl_options = {"REGISTER", "UNDO"}
    side: EnumProperty(items=SIDES)
    index: IntProperty()

    def execute(self, context: Any) -> set[str]:
        items = context.scene.deepfake.facesets_a if self.side == "A" else context.scene.deepfake.facesets_b
        if 0 <= self.index < len(items):
            items.remove(self.index)
        return {"FINISHED"}


@bpy.app.handlers.persistent
def _stop_jobs_on_load(*_args: Any) -> None:
    """Opening another file ends the modal operator; its core must not run on unattended."""
    jobs.kill_all()


classes: tuple[type, ...] = (DEEPFAKE_OT_extract, DEEPFAKE_OT_train, DEEPFAKE_OT_swap, DEEPFAKE_OT_farm_job,
                             DEEPFAKE_OT_farm_result, DEEPFAKE_OT_evaluate,
                             DEEPFAKE_OT_open_report, DEEPFAKE_OT_cancel, DEEPFAKE_OT_faceset_add,
                             DEEPFAKE_OT_faceset_remove)


def register_handlers() -> None:
    if _stop_jobs_on_load not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_stop_jobs_on_load)


def unregister_handlers() -> None:
    if _stop_jobs_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_jobs_on_load)
