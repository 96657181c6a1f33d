"""The Encode step: a swap's frame folder (written whole, resumed, or in chunks by a farm) made
into one movie of the shot, with the source's frame rate and sound.

Why a step of its own: a movie cannot be written in pieces, so a shot split across machines is
swapped to PNG frames (each chunk its range, all into one folder), and this last step joins them.
It reads the frames the swap wrote, nothing else; they go into the same H.264 sink a `deepfake swap
--format mp4` uses, so the movie is the one a single local swap to mp4 would have written. It
refuses a range with missing or torn frames rather than making a shorter movie.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import outputs, swap_output
from core.errors import DeepfakeError
from core.events import Events
from core.media import open_source
from core.provenance import LabelSettings, Labeller
from core.sinks import AudioSpan, ImageSequenceSink, MovieSink


def encode(folder: str | Path, out: str | Path, events: Events, start: int | None = None,
           count: int | None = None, label: LabelSettings | None = None) -> dict[str, Any]:
    """`label`: the movie's provenance labels (default on), stating the swap's source and model."""
    folder, out = Path(folder), Path(out)
    record = swap_output.read_record(folder) if folder.is_dir() else {}
    if record.get("record") != swap_output.FORMAT:
        raise DeepfakeError(f"{folder} is not a swap's frame folder (it has no {swap_output.RECORD}): "
                            "encode takes the --out folder of a `deepfake swap`")
    if record.get("format") != "png" or record.get("mode") != "composite":
        raise DeepfakeError(f"{folder} holds {record.get('mode')} {record.get('format')} frames; encode makes a movie "
                            "of composited PNG frames (EXR frames are scene-linear: render them through Blender)")
    if out.suffix.lower() != ".mp4":
        raise DeepfakeError(f"--out should end in .mp4, not {out.name}")
    if folder.resolve() in (out.resolve(), *out.resolve().parents):
        raise DeepfakeError(f"write the movie beside the frame folder, not inside it: {out}")
    first, n = _range(record, folder, start, count)
    sink_in = ImageSequenceSink(folder, "png")
    missing = [i for i in range(first, first + n) if not sink_in.done(i)]
    if missing:
        raise DeepfakeError(f"{folder}: {len(missing)} of frames {first}..{first + n - 1} are missing or torn "
                            f"(first {_spans(missing)}): run the swap for them first")
    fps, audio = _source_timing(record, first, n, events)
    source = (record.get("source") or {}).get("path")
    labeller = Labeller.start(label or LabelSettings(), Path(source) if source else None, record.get("model_id"), events)
    probe = cv2.imread(str(sink_in.path(first)), cv2.IMREAD_UNCHANGED)
    height, width = probe.shape[:2]
    outputs.ensure_writable(out.parent)
    with outputs.file_lock(out, f"the movie {out}"):
        outputs.remove_stale_temps(out.parent, stem=out.name)
        sink = MovieSink(out, fps, width, height, audio, labeller)
        try:
            for k, i in enumerate(range(first, first + n)):
                frame = cv2.imread(str(sink_in.path(i)), cv2.IMREAD_UNCHANGED)
                if frame is None or frame.shape[:2] != (height, width):
                    raise DeepfakeError(f"{sink_in.path(i)} is not a {width}x{height} frame like the others")
                sink.write(i, _rgb(frame))
                events.progress("encode", k + 1, n)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        movie_record = {k: v for k, v in record.items() if k != "ranges"}
        movie_record.update(format="mp4", range=[first, n], encoded_from=str(folder.resolve()))
        swap_output.write_record(out, "mp4", movie_record)
        flags = {f: r for f, r in swap_output.read_flags(folder, "png").items() if first <= f < first + n}
        flags_file = swap_output.write_flags(out, "mp4", flags)
    summary = {"output": str(out), "frames": n, "start": first, "fps": fps, "audio": audio is not None,
               "flagged_frames": len(flags)}
    events.result([str(out), str(flags_file)], **summary)
    return summary


def _range(record: dict[str, Any], folder: Path, start: int | None, count: int | None) -> tuple[int, int]:
    """The frames to encode: those asked for, else the one stretch the swaps completed."""
    if start is not None and count is not None:
        return start, count
    ranges = record.get("ranges") or []
    if len(ranges) != 1:
        done = ", ".join(f"{a}..{a + b - 1}" for a, b in ranges) or "none"
        raise DeepfakeError(f"{folder}: the swaps completed {'several stretches' if ranges else 'no stretch'} "
                            f"of frames ({done}): pass --start and --count")
    first, n = ranges[0]
    if start is not None:
        n, first = first + n - start, start
    if count is not None:
        n = count
    if n <= 0:
        raise DeepfakeError(f"{folder}: nothing to encode from frame {first}")
    return first, n


def _source_timing(record: dict[str, Any], first: int, n: int, events: Events) -> tuple[float, AudioSpan | None]:
    """The source's frame rate, and its sound for these frames when it is a movie that is still
    the one swapped (same size and time stamp)."""
    source = record.get("source") or {}
    path = Path(str(source.get("path")))
    fps = record.get("fps")
    try:
        with open_source(path, 0, 1) as media:
            info = media.info
    except Exception:  # noqa: BLE001 - gone, moved, unreadable: encode still can, without sound
        info = None
    if info is None or not path.exists():
        if not isinstance(fps, (int, float)):
            raise DeepfakeError(f"the source {path} is gone and the swap did not record its frame rate")
        events.warning(f"the source {path} is gone: the movie gets no sound")
        return float(fps), None
    fps = info.fps if not isinstance(fps, (int, float)) else float(fps)
    stat = path.stat()
    if info.kind != "movie":
        return fps, None
    if (stat.st_size, stat.st_mtime) != (source.get("size"), source.get("mtime")):
        events.warning(f"the source {path} changed since the swap: the movie gets no sound")
        return fps, None
    return fps, AudioSpan(path, first / fps, n / fps)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame[..., :3], cv2.COLOR_BGR2RGB)


def _spans(frames: list[int]) -> str:
    spans, begin = [], frames[0]
    for a, b in zip(frames, frames[1:] + [None]):
        if b != a + 1:
            spans.append(f"{begin}..{a}" if a != begin else str(a))
            if b is not None:
                begin = b
        if len(spans) == 3:
            break
    return ", ".join(spans)
