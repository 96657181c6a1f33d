"""`deepfake inspect PATH`: what a file or folder is and holds, asked of the module that owns it.

Why a command: the add-on knows the core only as a command line (DESIGN.md), so where it needs to
know something about the core's files (the order of an image sequence's frames, whether a model
folder holds a model) it asks here instead of keeping its own copy of the rule. Each kind is
recognised and described by its owner (faceset, swap_output, model_folder and model, report,
media); nothing here parses a file itself. Heavy modules (torch, PyAV) are imported only for the
kind that needs them, so the common questions answer in well under a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core import model_folder, swap_output
from core.errors import DeepfakeError


def inspect_path(path: str | Path) -> dict[str, Any]:
    """{"kind": ..., "path": ..., and what that kind holds}. Kinds: faceset, model, swap (a frame
    folder or a movie with its record), report (a folder `evaluate --report` wrote), images (an
    image sequence), movie, empty, other. A folder holding frames also lists them, in the core's
    frame order, as "files"."""
    path = Path(path)
    if not path.exists():
        raise DeepfakeError(f"{path} does not exist")
    if not path.is_dir():
        return {"path": str(path.absolute()), **_file(path)}
    from core.media import image_files

    # Any folder of frames (a swap's output too) lists them: what an image strip of it shows.
    files = [f.name for f in image_files(path)]
    return {"path": str(path.absolute()), **_folder(path, files), **({"files": files} if files else {})}


def _folder(path: Path, files: list[str]) -> dict[str, Any]:
    from core import faceset, report

    if faceset.is_faceset(path):
        return faceset.describe(path)
    if swap_output.has_record(path):
        return swap_output.describe(path, "png")
    if model_folder.is_model(path) or model_folder.has_config(path):
        return model_folder.describe(path)
    if report.is_report_folder(path):
        json_path, html_path = report.report_paths(path)
        return {"kind": "report", "json": str(json_path), "html": str(html_path) if html_path.is_file() else None}
    if files:
        return {"kind": "images", "frames": len(files)}
    if not any(not p.name.startswith(".") for p in path.iterdir()):
        return {"kind": "empty"}
    return {"kind": "other"}


def _file(path: Path) -> dict[str, Any]:
    from core.media import MediaError, open_source

    try:
        with open_source(path) as source:
            info = source.info
    except (MediaError, DeepfakeError) as exc:
        return {"kind": "other", "problem": str(exc)}
    described = {"kind": "movie", "frames": info.frame_count, "fps": info.fps, "size": [info.width, info.height]}
    if info.kind == "movie" and swap_output.record_path(path, "mp4").is_file():
        return {**described, **swap_output.describe(path, "mp4")}
    return described


def summary_line(described: dict[str, Any]) -> str:
    """One line for a person at a shell."""
    kind, path, d = described["kind"], described["path"], described
    if kind == "faceset":
        return (f"{path}: a faceset of {d['faces']} faces of {d['size']} px from frames {d['start']}.."
                f"{d['start'] + d['count'] - 1} of {d['source']} ({d['frames_done']} done, {d['no_face_frames']} "
                f"without a face{'' if d['complete'] else ', incomplete: rerun extract to resume'}), "
                f"median sharpness {d['median_blur']}")
    if kind == "model":
        return (f"{path}: a {described['layout'].upper()} model, {described['resolution']} px, iteration "
                f"{described['iteration']}" + (" (pretrained)" if described["pretrain"] else ""))
    if kind == "swap":
        return (f"{path}: a swap ({described['format']}, {described['mode']}) of {described['source']} by the model "
                f"{described['model']}, {described['flagged_frames']} flagged frame(s)")
    if kind == "images":
        return f"{path}: an image sequence of {described['frames']} frames ({described['files'][0]} first)"
    if kind == "movie":
        return f"{path}: a movie of {described['frames']} frames at {described['fps']:g} fps"
    if kind == "report":
        return f"{path}: an evaluation report"
    if kind == "empty":
        return f"{path}: an empty folder"
    return f"{path}: nothing the core made or reads" + (f" ({described['problem']})" if described.get("problem") else "")
