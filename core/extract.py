"""The Extract step: a video or image sequence in, an aligned faceset out.

Resumable: frames already recorded in the faceset are skipped, and the alignments are saved
every few seconds and on interruption. A different source (or other settings) in the same
folder is refused unless `force`, so two clips never mix in one faceset by accident.
"""
from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import faceset as fs
from core.color_management import to_display_uint8
from core.errors import DeepfakeError, FacesetError
from core.events import Events
from core.faces.align import alignment_matrix, blur_measure, warp_face
from core.faces.base import Face, FaceAligner
from core.media import open_source, source_fingerprint
from core import model_folder, swap_output
from core.outputs import disk_full, ensure_free_space, folder_lock, is_disk_full, remove_stale_temps

# How often the alignments are saved while extracting: what a kill -9 can lose at most. Tests
# set DEEPFAKE_SAVE_INTERVAL_S=0 (every batch) to kill right after a save on any machine.
SAVE_INTERVAL_S = float(os.environ.get("DEEPFAKE_SAVE_INTERVAL_S", "5"))


@dataclass
class ExtractSettings:
    size: int = 256
    aligner: Literal["auto", "fan", "dlib"] = "auto"
    device: str = "auto"
    detector: Literal["hog", "cnn"] = "hog"
    face: Literal["largest", "all"] = "largest"
    start: int = 0
    count: int | None = None
    batch: int = 8
    force: bool = False


def prepare_output(out: Path, source_path: Path) -> None:
    """Refuse to write into the source, and find out now (not after an hour) that we can write."""
    out_r, src_r = out.resolve(), source_path.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise DeepfakeError(f"output {out} is inside the source {source_path}: choose another folder")
    if model_folder.is_model(out) or model_folder.has_config(out):
        raise DeepfakeError(f"output {out} holds a model: choose another folder for the faceset")
    if swap_output.has_record(out):
        raise DeepfakeError(f"output {out} holds a swap's output: choose another folder for the faceset")
    try:
        (out / fs.CROPS).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise DeepfakeError(f"cannot write to output folder {out}: {exc.strerror or exc}") from exc


def open_faceset(out: Path, source: dict[str, Any], start: int, count: int, settings: dict[str, Any],
                 force: bool, events: Events) -> fs.Faceset:
    fresh = fs.Faceset(folder=out, source=source, start=start, count=count, settings=settings)
    if not (out / fs.ALIGNMENTS).exists():
        return fresh
    if force:
        events.log(f"--force: replacing the faceset in {out}")
        fs.clear(out)
        (out / fs.CROPS).mkdir()
        return fresh
    old = fs.Faceset.load(out)
    same_source = (old.source.get("path"), old.source.get("size"), old.source.get("mtime")) == \
                  (source["path"], source["size"], source["mtime"])
    if not same_source:
        raise FacesetError(f"{out} holds a faceset of another source ({old.source.get('path')}); "
                           "choose another folder or pass --force to replace it")
    if (old.start, old.count, old.settings) != (start, count, settings):
        raise FacesetError(f"{out} holds a faceset of the same source with other settings "
                           f"(range {old.start}+{old.count}, {old.settings}); choose another folder or pass --force")
    done = sum(1 for f in old.frames if start <= f < start + count)
    if done:
        events.log(f"resuming: {done} of {count} frames already extracted")
    return old


def choose_faces(faces: list[Face], mode: str) -> list[Face]:
    """Largest first; `largest` keeps one face per frame (the one to train on)."""
    faces = sorted(faces, key=lambda f: f.area, reverse=True)
    return faces[:1] if mode == "largest" else faces


def extract(input_path: str | Path, out: str | Path, settings: ExtractSettings, events: Events) -> dict[str, Any]:
    from core.faces.select import make_aligner

    input_path, out = Path(input_path), Path(out)
    with open_source(input_path, start=settings.start, count=settings.count) as probe:
        info = probe.info
    prepare_output(out, input_path)
    with folder_lock(out, f"the faceset {out}"):
        remove_stale_temps(out)
        remove_stale_temps(out / fs.CROPS)
        saved = {"size": settings.size, "face": settings.face}
        faceset = open_faceset(out, source_fingerprint(info), info.start, info.count, saved, settings.force, events)
        todo = [f for f in range(info.start, info.start + info.count) if f not in faceset.frames]
        # A crop PNG takes about a byte a pixel; the alignments about 4 KB a face.
        ensure_free_space(out, len(todo) * (settings.size ** 2 + 4096), f"{len(todo)} frames' face crops")
        aligner = make_aligner(settings.aligner, settings.device, log=events.log, detector=settings.detector)
        faceset.complete = False
        t0 = time.monotonic()
        try:
            if todo:
                _run(faceset, input_path, todo, aligner, settings, events, info.count)
            faceset.complete = True
        except BaseException as exc:
            try:
                faceset.save()  # keep what was done (Ctrl-C, a bad frame) for the rerun to resume
            except OSError:
                pass  # the alignments saved last stay whole (atomic); the error below is the one to report
            if is_disk_full(exc):
                raise disk_full(exc, str(out), "the frames recorded in its alignments so far are kept: free some "
                                "space and rerun to resume") from None
            raise
        faceset.save()
        return summarise(faceset, aligner.name, time.monotonic() - t0, len(todo), events)


def _run(faceset: fs.Faceset, input_path: Path, todo: list[int], aligner: FaceAligner,
         settings: ExtractSettings, events: Events, total: int) -> None:
    """Decode batch k+1 while batch k is detected and cropped: on two cores, decoding 1080p
    in series with detection cost a fifth of the throughput. At most two batches are in
    memory, however long the clip. Results are recorded in this thread, in frame order."""
    wanted = set(todo)
    done = total - len(todo)
    last_save = time.monotonic()
    crop_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    batch_worker = ThreadPoolExecutor(max_workers=1)
    pending: Future | None = None

    def process(batch: list[tuple[int, np.ndarray]]) -> list[tuple[int, list[fs.FaceRecord]]]:
        found = aligner.detect([frame for _, frame in batch])
        records = crop_pool.map(lambda args: _crop_faces(faceset, *args, settings),
                                [(index, frame, choose_faces(faces, settings.face))
                                 for (index, frame), faces in zip(batch, found)])
        return list(zip([index for index, _ in batch], records))

    def record(future: Future) -> None:
        nonlocal done, last_save
        results = future.result()
        for index, faces in results:
            faceset.frames[index] = faces
            if not faces:
                events.flag(index, "no_face")
        done += len(results)
        events.progress("extract", done, total, faces=sum(len(v) for v in faceset.frames.values()))
        if time.monotonic() - last_save > SAVE_INTERVAL_S:
            faceset.save()
            last_save = time.monotonic()

    def submit(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal pending
        if pending is not None:
            record(pending)
        pending = batch_worker.submit(process, batch)

    try:
        batch: list[tuple[int, np.ndarray]] = []
        with open_source(input_path, start=todo[0], count=todo[-1] - todo[0] + 1) as source:
            for index, frame in source:
                if index in wanted:
                    batch.append((index, to_display_uint8(frame)))
                    if len(batch) >= settings.batch:
                        submit(batch)
                        batch = []
        if batch:
            submit(batch)
        if pending is not None:
            record(pending)
            pending = None
    finally:
        if pending is not None:  # interrupted or failed: keep the batch in flight if it finishes cleanly
            try:
                record(pending)
            except Exception:
                pass
        batch_worker.shutdown()
        crop_pool.shutdown()


def _crop_faces(faceset: fs.Faceset, index: int, frame: np.ndarray, faces: list[Face],
                settings: ExtractSettings) -> list[fs.FaceRecord]:
    records = []
    for i, face in enumerate(faces):
        matrix = alignment_matrix(face.landmarks, settings.size)
        crop = warp_face(frame, matrix, settings.size)
        name = faceset.crop_name(index, i)
        fs.write_crop(faceset.folder / name, crop)
        records.append(fs.FaceRecord(index=i, file=name, box=list(face.box), score=face.score,
                                     landmarks=face.landmarks, matrix=matrix, blur=blur_measure(crop)))
    return records


def summarise(faceset: fs.Faceset, aligner: str, seconds: float, processed: int, events: Events) -> dict[str, Any]:
    in_range = {f: v for f, v in faceset.frames.items() if faceset.start <= f < faceset.start + faceset.count}
    no_face = sorted(f for f, v in in_range.items() if not v)
    summary = {
        "faceset": str(faceset.folder),
        "aligner": aligner,
        "frames": len(in_range),
        "frames_with_face": len(in_range) - len(no_face),
        "faces": sum(len(v) for v in in_range.values()),
        "no_face_frames": len(no_face),
        "frames_processed": processed,
        "seconds": round(seconds, 2),
        "fps": round(processed / seconds, 2) if seconds > 0 else None,
    }
    events.result([str(faceset.alignments_path)], **summary)
    return summary
