"""The event stream between core and whoever runs it (DESIGN.md, "The seam").

With `--events jsonl` every event is one JSON object per line on stdout, for the add-on to read;
otherwise progress is a single self-rewriting line on stderr and logs/warnings are plain lines.
Progress is throttled so a fast loop does not drown the pipe.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

PROGRESS_INTERVAL_S = 0.25


class Events:
    def __init__(self, jsonl: bool = False, out: TextIO | None = None, err: TextIO | None = None):
        self.jsonl = jsonl
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._last_progress = 0.0
        self._bar_open = False
        self._started: dict[str, tuple[float, int]] = {}

    def emit(self, event: str, **fields: Any) -> None:
        if self.jsonl:
            self.out.write(json.dumps({"event": event, **fields}) + "\n")
            self.out.flush()

    def progress(self, step: str, done: int, total: int, **extra: Any) -> None:
        now = time.monotonic()
        t0, done0 = self._started.setdefault(step, (now, done))
        if done < total and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        rate = (done - done0) / (now - t0) if now > t0 and done > done0 else 0.0
        eta_s = round((total - done) / rate) if rate > 0 else None
        if self.jsonl:
            self.emit("progress", step=step, done=done, total=total, rate=round(rate, 2), eta_s=eta_s, **extra)
            return
        width = 30
        filled = int(width * done / total) if total else width
        extras = "".join(f" {k}={v}" for k, v in extra.items())
        eta = f" ETA {eta_s}s" if eta_s is not None else ""
        self.err.write(f"\r{step} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.1f}/s{eta}{extras}\x1b[K")
        self.err.flush()
        self._bar_open = done < total
        if not self._bar_open:
            self.err.write("\n")

    def _line(self, text: str) -> None:
        if self._bar_open:
            self.err.write("\n")
            self._bar_open = False
        self.err.write(text + "\n")
        self.err.flush()

    def log(self, message: str) -> None:
        if self.jsonl:
            self.emit("log", message=message)
        else:
            self._line(message)

    def warning(self, message: str) -> None:
        if self.jsonl:
            self.emit("warning", message=message)
        else:
            self._line(f"warning: {message}")

    def flag(self, frame: int, reason: str, **extra: Any) -> None:
        """A frame worth the user's look. Only the JSON stream lists each one; the terminal
        gets the counts in the summary instead of hundreds of lines."""
        self.emit("flag", frame=frame, reason=reason, **extra)

    def image(self, kind: str, path: str) -> None:
        """An image the caller may show as it changes (the training preview): the add-on reloads
        it when this arrives instead of knowing where the core keeps it."""
        self.emit("image", kind=kind, path=path)

    def result(self, outputs: list[str], **summary: Any) -> None:
        if self.jsonl:
            self.emit("result", outputs=outputs, **summary)

    def error(self, message: str) -> None:
        self.emit("error", message=message)
        self._line(f"error: {message}")
