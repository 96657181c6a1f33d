"""How a step operator runs its core commands: blocking or modal, one `jobs.Job` at a time.

The pattern is Blender's own extensions add-on's (bl_pkg's command handle): the handle lives on
the operator instance, and the operator runs modal with a timer only when it was invoked from
the UI with a window to draw in; executed (a script's `bpy.ops.deepfake.swap()`), or invoked in
background mode (`'INVOKE_DEFAULT'` from a `blender -b` script), it blocks until the commands are
done and returns FINISHED or CANCELLED, so a script never races a job it cannot see. Nothing in
the .blend changes before a command succeeded, so bad input, a failure or a cancel leaves the
timeline as it was. The core's log lines reach the user as INFO reports and the status line,
its warnings as WARNING reports, in both modes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import bpy

from . import jobs, prefs, vse


class UserError(ValueError):
    """Bad input: reported as an error, nothing changed."""


@dataclass
class Command:
    argv: list[str]
    label: str
    after: Callable[[Any, jobs.JobState], str | None] | None = None
    """Applied on success, in Blender's main thread; returns an info message or None."""
    optional: bool = False
    """A failure or cancel is a warning and keeps what earlier commands did (the evaluation
    after a swap: the swapped strip is placed and stays)."""
    step: str = ""
    """The step the status line names (default: the plan's)."""


@dataclass
class Plan:
    step: str
    commands: list[Command]
    env: dict[str, str]
    cwd: str
    messages: list[str] = field(default_factory=list)


PREVIEW_IMAGE = "Deepfake Preview"


def busy() -> bool:
    """Whether a core job started by the add-on is running (one at a time)."""
    return bool(jobs.running_jobs())


def set_status(scene: Any, state: jobs.JobState | None, running: bool) -> None:
    s = scene.deepfake
    s.job_running = running
    if state is not None:
        s.job_progress = state.fraction
        s.job_status = state.text()
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def show_image(path: str | None, name: str = PREVIEW_IMAGE) -> None:
    """Load or reload an image the core announced (the training preview) so an Image Editor
    shows it as training goes."""
    if not path or not Path(path).is_file():
        return
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    elif bpy.path.abspath(image.filepath) != path:
        image.filepath = path
    image.reload()


class JobOperator:
    """Mixin of the step operators: `plan()` builds the commands; invoke/execute run them."""
    _timer: Any = None
    _plan: Plan | None = None
    _queue: list[Command]
    _job: jobs.Job | None = None
    _scene_name: str = ""
    _image_serial: int = 0

    def plan(self, context: Any) -> Plan:
        raise NotImplementedError

    def invoke(self, context: Any, event: Any) -> set[str]:
        # Invoked with a window (a button, F3): modal. Background mode has no event loop to run a
        # modal operator or a timer, so an invoked operator blocks there as an executed one does.
        return self._start(context, modal=not bpy.app.background and context.window is not None)

    def execute(self, context: Any) -> set[str]:
        return self._start(context, modal=False)

    def _start(self, context: Any, modal: bool) -> set[str]:
        if busy():
            self.report({"ERROR"}, "a deepfake job is running: wait or cancel it first")
            return {"CANCELLED"}
        try:
            plan = self.plan(context)
        except (UserError, vse.StripError, prefs.SettingsError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._plan, self._queue, self._scene_name = plan, list(plan.commands), context.scene.name
        Path(plan.cwd).mkdir(parents=True, exist_ok=True)
        if not modal:
            return self._run_blocking(context)
        self._start_next(context)
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _new_job(self, command: Command) -> jobs.Job:
        assert self._plan is not None
        self._job = jobs.Job(command.argv, command.step or self._plan.step, env=self._plan.env, cwd=self._plan.cwd)
        return self._job

    # -- blocking -----------------------------------------------------------------------------------
    def _run_blocking(self, context: Any) -> set[str]:
        scene = context.scene
        for command in self._queue:
            job = self._new_job(command)
            while not job.poll(timeout=0.1).finished:
                self._relay(job.state)
            self._relay(job.state)
            set_status(scene, job.state, running=False)
            if not self._finish_command(context, command, job.state):
                return {"CANCELLED"}
        return {"FINISHED"}

    # -- modal --------------------------------------------------------------------------------------
    def _start_next(self, context: Any) -> None:
        job = self._new_job(self._queue[0])
        set_status(context.scene, job.state, running=True)

    def modal(self, context: Any, event: Any) -> set[str]:
        job = self._job
        if job is None:
            return self._end(context, {"CANCELLED"})
        if event.type == "ESC":
            job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = job.poll()
        scene = bpy.data.scenes.get(self._scene_name) or context.scene
        set_status(scene, state, running=not state.finished)
        self._relay(state)
        if not state.finished:
            return {"PASS_THROUGH"}
        command = self._queue.pop(0)
        if not self._finish_command(context, command, state):
            return self._end(context, {"CANCELLED"})
        if self._queue:
            self._start_next(context)
            return {"PASS_THROUGH"}
        return self._end(context, {"FINISHED"})

    def _end(self, context: Any, result: set[str]) -> set[str]:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        return result

    def cancel(self, context: Any) -> None:
        """Blender cancels modal operators when it closes the window or loads a file."""
        if self._job is not None:
            self._job.kill()
        self._end(context, {"CANCELLED"})

    # -- shared ---------------------------------------------------------------------------------------
    def _relay(self, state: jobs.JobState) -> None:
        """The core's words to the user as they come: log lines as INFO, warnings as WARNING,
        and a changed preview image reloaded."""
        while state.logs:
            self.report({"INFO"}, state.logs.pop(0))
        while state.warnings:
            self.report({"WARNING"}, state.warnings.pop(0))
        if state.image_serial != self._image_serial:
            self._image_serial = state.image_serial
            show_image(state.images.get("preview"))

    def _finish_command(self, context: Any, command: Command, state: jobs.JobState) -> bool:
        if state.status != "done":
            level = {"WARNING"} if state.status == "cancelled" or command.optional else {"ERROR"}
            self.report(level, f"{command.label}: {state.error or state.status}")
            return command.optional
        try:
            message = command.after(context, state) if command.after else None
        except (UserError, vse.StripError) as exc:
            self.report({"WARNING"} if command.optional else {"ERROR"}, f"{command.label}: {exc}")
            return command.optional
        self.report({"INFO"}, message or f"{command.label}: done")
        return True


def inspect(core: prefs.CoreSettings, path: Path, timeout: float = 60.0) -> dict[str, Any]:
    """`deepfake inspect PATH`: what the core says a file or folder is (see core/inspection.py);
    run to completion before a plan is made, so the add-on keeps no copy of the core's rules."""
    job = jobs.Job(jobs.core_command(core.python, "inspect", [path]), "inspect", env=core.env())
    state = job.wait(timeout=timeout)
    if state.status != "done" or state.result is None:
        raise UserError(state.error or f"the core could not inspect {path}")
    return state.result
