"""One job runner for every core step: `<python> -m core STEP ... --events jsonl` as a subprocess.

Why a subprocess (DESIGN.md): torch must not live in Blender's process, a crash or out-of-memory
in the core must not take Blender down, and cancel is a signal. Reader threads move the child's
stdout lines into a queue so the UI thread only ever drains a queue (never blocks on a pipe);
stderr is drained too, or a chatty child would fill the pipe and hang. The same `Job` serves the
modal operator (poll() from a timer) and background mode (wait() blocks).

This module does not import bpy, so it can be used and tested on its own.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

CANCEL_GRACE_S = 10.0
"""SIGINT lets the core save (a training checkpoint takes a few seconds); then SIGTERM, then kill."""

_live: set["Job"] = set()
_live_lock = threading.Lock()
_started: list["Job"] = []  # the last job started, for tests and diagnostics (the handle is the operator's)


def core_command(python: str, step: str, args: Sequence[str | os.PathLike]) -> list[str]:
    return [python, "-m", "core", step, *map(str, args), "--events", "jsonl"]


OFFLINE_ENV = "DEEPFAKE_OFFLINE"
"""core.network's switch (the add-on knows core only as a command line, so the name is repeated)."""


def core_env(core_path: str = "", offline: bool = False) -> dict[str, str]:
    """The child's environment: `core_path` (a folder holding the `core` package) goes first on
    PYTHONPATH; Blender's own PYTHONHOME/PYTHONPATH must not leak into another interpreter;
    `offline` (Blender's online access is off) keeps the core and what it starts off the network."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    if core_path:
        env["PYTHONPATH"] = core_path
    if offline:
        env[OFFLINE_ENV] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_interpreter(python: str, core_path: str = "", timeout: float = 60.0) -> tuple[bool, str]:
    """Run `<python> -m core doctor` (the core's own list of what it imports) and say what is missing.

    The check runs from the filesystem root so a `core` folder in Blender's working directory
    cannot make it pass by accident.
    """
    if not python:
        return False, "no core interpreter set"
    if not Path(python).is_file():
        return False, f"core interpreter not found: {python}"
    try:
        done = subprocess.run(core_command(python, "doctor", []), capture_output=True, text=True, timeout=timeout,
                              env=core_env(core_path), cwd=os.path.abspath(os.sep))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"core interpreter {python} did not run: {exc}"
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "result":
            return bool(event.get("ok")), str(event.get("message", ""))
    tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return False, f"{python} cannot import core: {tail}"


@dataclass
class JobState:
    """What the UI shows: updated only from poll() / wait(), on the caller's thread."""
    step: str
    status: str = "starting"  # starting, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    rate: float | None = None
    loss_a: float | None = None
    loss_b: float | None = None
    message: str = ""
    logs: list[str] = field(default_factory=list)
    """Log lines not yet shown (the runner drains them into reports)."""
    warnings: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    """The latest path of each image the core announced (kind -> path: "preview")."""
    image_serial: int = 0
    flags: list[tuple[int, str]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    returncode: int | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def text(self) -> str:
        """One line for the status bar / panel: step, progress, ETA, last loss."""
        parts = [f"{self.step}: {self.status}"]
        if self.total:
            parts.append(f"{self.done}/{self.total}")
        if self.eta_s is not None and not self.finished:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        if self.loss_a is not None:
            parts.append(f"loss A {self.loss_a:.4f}" + (f" B {self.loss_b:.4f}" if self.loss_b is not None else ""))
        if self.error:
            parts.append(self.error)
        elif self.message and not self.finished:
            parts.append(self.message)
        return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Job:
    """A running core command. Use poll() from a timer or wait() to block."""

    def __init__(self, argv: Sequence[str], step: str, env: dict[str, str] | None = None, cwd: str | None = None):
        self.argv = list(argv)
        self.state = JobState(step=step)
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._cancel_at: float | None = None
        self._terminated_at: float | None = None
        self._stream_ended = False
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1, env=env, cwd=cwd)
        with _live_lock:
            _live.add(self)
            _started[:] = [self]
        self.state.status = "running"
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- reader threads ---------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "log", "message": line}  # a stray print in the core: keep, don't die
            self._events.put(event if isinstance(event, dict) else {"event": "log", "message": line})
        self._events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-50]

    # -- driving ------------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> JobState:
        """Apply queued events; escalate a pending cancel; settle the state when the child ended."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=remaining) if remaining > 0 else self._events.get_nowait()
            except queue.Empty:
                break
            if event is None:
                self._stream_ended = True
                break
            self._apply(event)
        self._escalate_cancel()
        if self.proc.poll() is not None and self._stream_ended and not self.state.finished:
            self._settle()
        return self.state

    def wait(self, tick: float = 0.1, timeout: float | None = None) -> JobState:
        """Block until the job ends (background mode); Ctrl-C cancels the child and still waits.
        Past `timeout` seconds the child is killed and the job fails saying so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.poll(timeout=tick).finished:
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    self.poll(timeout=tick)
                    self.state.status, self.state.error = "failed", f"core {self.state.step} took over {timeout:g} s"
                    break
        except KeyboardInterrupt:
            self.cancel()
            while not self.poll(timeout=tick).finished:
                pass
        return self.state

    def cancel(self) -> None:
        """SIGINT now (the core saves and exits 130); SIGTERM after CANCEL_GRACE_S; kill after twice that."""
        if self.proc.poll() is None and self._cancel_at is None:
            self._cancel_at = time.monotonic()
            self.state.message = "cancelling"
            self._signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)

    def kill(self) -> None:
        """Stop now (Blender quits or loads another file): terminate, then kill."""
        if self.proc.poll() is None:
            self._cancel_at = self._cancel_at or time.monotonic()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with _live_lock:
            _live.discard(self)

    def _signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def _escalate_cancel(self) -> None:
        if self._cancel_at is None or self.proc.poll() is not None:
            return
        waited = time.monotonic() - self._cancel_at
        if waited > 2 * CANCEL_GRACE_S:
            self.proc.kill()
        elif waited > CANCEL_GRACE_S and self._terminated_at is None:
            self._terminated_at = time.monotonic()
            self.proc.terminate()

    def _apply(self, event: dict[str, Any]) -> None:
        kind, s = event.get("event"), self.state
        if kind == "progress":
            s.done, s.total = int(event.get("done", s.done)), int(event.get("total", s.total))
            s.eta_s, s.rate = event.get("eta_s", s.eta_s), event.get("rate", s.rate)
            s.loss_a, s.loss_b = event.get("loss_a", s.loss_a), event.get("loss_b", s.loss_b)
        elif kind == "log":
            s.message = str(event.get("message", ""))
            s.logs.append(s.message)
            del s.logs[:-50]
        elif kind == "warning":
            s.warnings.append(str(event.get("message", "")))
        elif kind == "image":
            s.images[str(event.get("kind", "image"))] = str(event.get("path", ""))
            s.image_serial += 1
        elif kind == "flag":
            s.flags.append((int(event["frame"]), str(event.get("reason", "flagged"))))
        elif kind == "result":
            s.result = event
        elif kind == "error":
            s.error = str(event.get("message", "error"))

    def _settle(self) -> None:
        s = self.state
        s.returncode = self.proc.wait()
        with _live_lock:
            _live.discard(self)
        if s.returncode == 0 and s.result is not None:
            s.status = "done"
        elif self._cancel_at is not None or s.returncode in (130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL):
            s.status, s.error = "cancelled", "cancelled"
        else:
            s.status = "failed"
            if not s.error:
                tail = [line for line in self._stderr if line.strip()][-1:] or [f"exit status {s.returncode}"]
                s.error = f"core {s.step} failed: {tail[0]}"


def running_jobs() -> list[Job]:
    with _live_lock:
        return [job for job in _live if job.proc.poll() is None]


def last_job() -> Job | None:
    with _live_lock:
        return _started[0] if _started else None


def kill_all() -> None:
    """Stop every child: registered with atexit (Blender quitting) and on load_pre (another file)."""
    for job in running_jobs():
        job.kill()


atexit.register(kill_all)


def default_python() -> str:
    """The interpreter Blender itself runs (the bpy module's venv, or Blender's bundled Python)."""
    return sys.executable
