"""What the panel shows of a swap's evaluation (`deepfake evaluate`): the report's few figures an
editor acts on, each beside its control, in lines that fit the ~300 px sidebar. No bpy here.

Why these figures and not all fifteen: identity retrieval (did the face become the new person?),
landmark error and head turn (did it keep the performance and the pose?), jitter and flicker (will it shimmer?), seam and
pixels changed outside the face (will the composite show?). Each is printed beside the source's
(or the mean-face control's, for identity) because a bare number means nothing (DESIGN.md,
"Metrics need controls"); the HTML report has the rest, the plots and the worst frames.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

KEPT = ("identity_retrieval", "landmark_error", "head_turn", "jitter", "flicker", "seam", "untouched_changed")


def report_folder(work_folder: Path, swap_out: Path) -> Path:
    """Beside the swapped frames, not among them: a rerun of the swap checks its own folder."""
    return work_folder / "reports" / swap_out.name


def evaluate_args(source: Path, swapped: Path, first: int, count: int, reports: Path) -> list[Any]:
    """Arguments of `deepfake evaluate` for one swap. Facesets A and B default to those the
    swap's model was trained on, the YUV decode to the swap's; the core names the report files
    in `reports` and says where they are in its result."""
    return ["--source", source, "--swapped", swapped, "--start", first, "--count", count, "--report", reports]


def compact_summary(result: dict[str, Any]) -> str:
    """The part of the evaluation's `result` event the panel draws, as a JSON string for a
    StringProperty."""
    summary = result.get("summary") or {}
    return json.dumps({"target": result.get("target") or "b", "counts": result.get("counts") or {},
                       "summary": {k: summary[k] for k in KEPT if k in summary}})


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def summary_lines(compact: str) -> list[str]:
    """The panel's lines; [] when there is nothing (not evaluated, or unreadable)."""
    try:
        data = json.loads(compact) if compact else None
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    s, counts = data.get("summary", {}), data.get("counts", {})
    target = str(data.get("target", "b")).upper()

    def fig(name: str, view: str) -> Any:
        return s.get(name, {}).get(view)

    lines = [
        f"Identity {target}: {_fmt(fig('identity_retrieval', 'swap'), '.0%')} of frames",
        f"  source {_fmt(fig('identity_retrieval', 'source'), '.0%')}, "
        f"control {_fmt(fig('identity_retrieval', 'control'), '.0%')}",
        f"Landmarks off: {_fmt(fig('landmark_error', 'swap'), '.1%')} of eye distance",
        # A swap that keeps B's own head turn is off by a constant amount (docs/TRAINING.md).
        f"  head turn {_fmt(fig('head_turn', 'swap'), '+.2f')} (source {_fmt(fig('head_turn', 'source'), '+.2f')})",
        f"Jitter: {_fmt(fig('jitter', 'swap'), '.1%')} (source {_fmt(fig('jitter', 'source'), '.1%')})",
        f"Flicker: {_fmt(fig('flicker', 'swap'), '.3f')} (source {_fmt(fig('flicker', 'source'), '.3f')})",
        f"Seam: {_fmt(fig('seam', 'swap'), '.2f')}x (1 = none)",
        f"Changed outside face: {_fmt(fig('untouched_changed', 'swap'), '.1%')}",
    ]
    missing = int(counts.get("no_face", 0) or 0)
    if missing:
        lines.append(f"No face re-found: {missing} of {counts.get('frames', '?')} frames")
    return lines
