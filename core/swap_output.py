"""A swap's output on disk: the frames (or the movie), `swap.json` (what made them) and
`flags.json` (frames worth a look). The one module that reads and writes these records.

Why a record at all: frames already in an output folder are reused by a rerun (resume), which is
right only when the rerun would write the same frames. The record holds everything that decides
a frame's pixels: the source's fingerprint, the model's identity and iteration, and the settings.
A rerun that differs in any of them is refused with what differs, unless the caller asked to
replace the old result or to keep it and write a new one beside it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Literal

from core.atomic import write_atomic
from core.errors import DeepfakeError
from core.provenance import sequence

FORMAT = "blender-deepfake-swap"
VERSION = 1
RECORD = "swap.json"
FLAGS = "flags.json"
FRAME_PREFIX = "frame_"
FRAME_NAME = re.compile(r"^frame_(\d{6,})\.(png|exr)$")
Existing = Literal["refuse", "replace", "new"]
EXISTING: tuple[str, ...] = ("refuse", "replace", "new")
# What decides the pixels of a written frame, with the words a message uses for each.
_DECISIVE = {"source": "source", "model": "model folder", "model_id": "model", "iteration": "model iteration",
             "direction": "direction", "mode": "mode", "format": "format", "bit_depth": "bit depth",
             "color": "colour transfer", "smooth": "smoothing", "erode": "mask erosion", "blur": "mask feather",
             "face": "face choice", "yuv": "YUV conversion", "colorspace": "colourspace",
             "range": "frame range (start, count)", "labels": "labels"}


def frame_name(index: int, fmt: str) -> str:
    return f"{FRAME_PREFIX}{index:06d}.{fmt}"


def record_path(out: Path, fmt: str) -> Path:
    return Path(out) / RECORD if fmt != "mp4" else Path(out).with_suffix(".swap.json")


def flags_path(out: Path, fmt: str) -> Path:
    return Path(out) / FLAGS if fmt != "mp4" else Path(out).with_suffix(".flags.json")


def read_json(path: Path) -> dict[str, Any]:
    """A record or flags file as a dict; {} when absent, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_record(out: Path) -> dict[str, Any]:
    """The record beside a swap's output (a frame folder or a movie); {} when there is none."""
    out = Path(out)
    return read_json(out / RECORD if out.is_dir() else out.with_suffix(".swap.json"))


def make_record(source: dict[str, Any], model: Path, model_state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {"record": FORMAT, "record_version": VERSION,
            "source": {k: source.get(k) for k in ("path", "size", "mtime")}, "fps": source.get("fps"),
            "model": str(Path(model).resolve()), "model_id": model_state.get("model_id"),
            "iteration": model_state.get("iteration"), **settings}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between an existing output's record and this run's, in words."""
    if old.get("record") != FORMAT:
        return ["it was written by an earlier version that did not record its source and model iteration"]
    found = []
    for key, words in _DECISIVE.items():
        if key == "model" and old.get("model_id") and old.get("model_id") == new.get("model_id"):
            continue  # the same model, moved or reached by another path
        if old.get(key) != new.get(key):
            same_path = key == "source" and (old.get(key) or {}).get("path") == (new.get(key) or {}).get("path")
            found.append(f"source {new[key]['path']} changed since" if same_path else
                         f"{words} {_show(old.get(key), key)} -> {_show(new.get(key), key)}")
    return found


def _show(value: Any, key: str = "") -> str:
    if key == "labels" and value is None:
        return "none (an earlier version wrote no labels)"
    if isinstance(value, dict) and "path" in value:
        return str(value["path"])
    return json.dumps(value) if not isinstance(value, str) else value


def describe(out: Path, fmt: str) -> dict[str, Any]:
    """What `deepfake inspect` says of a swap's output."""
    record = read_record(out)
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    return {"kind": "swap", "format": record.get("format", fmt), "mode": record.get("mode"),
            "model": record.get("model"), "model_iteration": record.get("iteration"), "source": source.get("path"),
            "ranges": _valid_ranges(record.get("ranges", [])), "flagged_frames": len(read_flags(out, fmt))}


def placed(out: Path, fmt: str, start: int, count: int, flags: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """What a caller needs to show frames start .. start + count - 1 of an output (the add-on's
    image strip and its markers), for a swap's or a farm result's `result` event: the frame files
    in order (none for a movie) and the flagged frames among them with their reasons."""
    flags = read_flags(out, fmt) if flags is None else flags  # the caller's, when it read them already
    files = [frame_name(n, fmt) for n in range(start, start + count)] if fmt != "mp4" else []
    return {"files": files, "first": start, "count": count,
            "flagged": [[f, flags[f]] for f in sorted(flags) if start <= f < start + count]}


def has_record(folder: Path) -> bool:
    """Whether a folder holds a frame-folder swap's record (what extract refuses to write into)."""
    return (Path(folder) / RECORD).is_file()


def holds_output(out: Path, fmt: str) -> bool:
    """Whether `out` already holds a swap's frames (or movie). A record alone, left by a run that
    failed before its first frame, holds nothing to protect: the next run starts afresh."""
    out = Path(out)
    if fmt == "mp4":
        return out.is_file()
    return out.is_dir() and any(FRAME_NAME.match(p.name) for p in out.iterdir())


def clear(out: Path, fmt: str) -> None:
    """Remove a swap's own files (frames, movie, record, flags, the frames' provenance sidecar),
    nothing else in the folder."""
    out = Path(out)
    if fmt == "mp4":
        out.unlink(missing_ok=True)
    elif out.is_dir():
        for p in out.iterdir():
            if FRAME_NAME.match(p.name) or p.name == sequence.NAME:
                p.unlink()
    record_path(out, fmt).unlink(missing_ok=True)
    flags_path(out, fmt).unlink(missing_ok=True)


def numbered(out: Path, n: int) -> Path:
    """The n-th sibling of an output: shot/ -> shot_2/, shot.mp4 -> shot_2.mp4."""
    out = Path(out)
    return out.with_name(f"{out.stem}_{n}{out.suffix}") if out.suffix else out.with_name(f"{out.name}_{n}")


def resolve(out: Path, fmt: str, record: dict[str, Any], existing: Existing) -> tuple[Path, str]:
    """Where this run writes and what it does there: ("resume" | "fresh" | "replace", path).

    The same work resumes whatever `existing` says; other work is refused, replaced, or (for
    "new") left alone while this run takes the first numbered sibling that is free or holds this
    very work (so a rerun of a "new" swap resumes it rather than making a third copy).
    """
    out = Path(out)
    if not holds_output(out, fmt):
        return out, "fresh"
    differ = differences(read_json(record_path(out, fmt)), record)
    if not differ:
        return out, "resume"
    if existing == "replace":
        return out, "replace"
    if existing == "new":
        n = 2
        while True:
            candidate = numbered(out, n)
            if not holds_output(candidate, fmt):
                return candidate, "fresh"
            if not differences(read_json(record_path(candidate, fmt)), record):
                return candidate, "resume"
            n += 1
    raise DeepfakeError(f"{out} holds another swap ({'; '.join(differ)}): pass --existing replace to replace it, "
                        "--existing new to keep it and write beside it, or choose another --out")


def write_record(out: Path, fmt: str, record: dict[str, Any]) -> None:
    """Write this run's record; the ranges that earlier runs of the same work completed are kept
    (call it under the output's lock)."""
    old = read_json(record_path(out, fmt))
    ranges = old.get("ranges", []) if old and not differences(old, record) else []
    write_atomic(record_path(out, fmt), (json.dumps({**record, "ranges": _valid_ranges(ranges)}, indent=1) + "\n").encode())


def add_range(out: Path, fmt: str, start: int, count: int) -> list[list[int]]:
    """Record that frames start .. start + count - 1 are complete: the shot's record holds the
    union of what every run (a local one, a resumed one, each chunk of a farm job) completed, as
    sorted, merged [start, count] pairs. Call it under the output's lock."""
    record = read_json(record_path(out, fmt))
    spans = sorted([*_valid_ranges(record.get("ranges", [])), [start, count]])
    merged: list[list[int]] = []
    for first, n in spans:
        if merged and first <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], first + n - merged[-1][0])
        else:
            merged.append([first, n])
    record["ranges"] = merged
    write_atomic(record_path(out, fmt), (json.dumps(record, indent=1) + "\n").encode())
    return merged


def _valid_ranges(ranges: Any) -> list[list[int]]:
    if not isinstance(ranges, list):
        return []
    return [[int(a), int(b)] for a, b in (r for r in ranges if isinstance(r, list) and len(r) == 2)
            if isinstance(a, int) and isinstance(b, int) and a >= 0 and b > 0]


def read_flags(out: Path, fmt: str) -> dict[int, list[str]]:
    """Frame -> reasons from an output's flags.json ({} when absent or malformed)."""
    flags: dict[int, list[str]] = {}
    entries = read_json(flags_path(out, fmt)).get("flags", [])
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("frame"), int) and isinstance(entry.get("reasons"), list):
            flags[entry["frame"]] = [str(r) for r in entry["reasons"]]
    return flags


def merge_flags(out: Path, fmt: str, frames: Iterable[int], flags: dict[int, list[str]]) -> Path:
    """Replace what flags.json says of `frames` (the frames this run writes) by `flags`, leaving
    every other frame's entry as it is: the chunks of one shot, each writing its own frames,
    combine into the shot's flags. Call it under the output's lock."""
    merged = read_flags(out, fmt)
    for frame in frames:
        merged.pop(frame, None)
    merged.update(flags)
    return write_flags(out, fmt, merged)


def write_flags(out: Path, fmt: str, flags: dict[int, list[str]]) -> Path:
    path = flags_path(out, fmt)
    write_atomic(path, (json.dumps({"flags": [{"frame": f, "reasons": r} for f, r in sorted(flags.items())]},
                                   indent=1) + "\n").encode())
    return path
