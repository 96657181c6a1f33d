"""The Swap step: every frame of a range, the trained person's face replaced, written out.

Per frame: find the faces (or reuse an extraction's alignments), pick the trained person by face
descriptor, follow it as a track whose landmarks are smoothed over time, align, encode, decode
with the other identity's decoder, match colour to the original face (statistics smoothed per
track), warp back in float, and composite through a feathered mask in the source's own colour
space. Only the crop's footprint is converted and recomposited: every pixel where the final mask
is 0 is the source's, bit for bit. Frames without a face are written unchanged and flagged.
Image-sequence outputs resume: frames already written are skipped. A range (a farm chunk, a
resumed run) is preceded by a pre-roll: the frames before it are tracked and measured, not
written, so its frames equal those of a swap of the whole shot (docs/FARM.md).
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from core import color_match, face_paste, masks, model_folder, outputs, swap_output, temporal
from core.color_management import ColorConverter, frame_to_network, get_converter, to_display_uint8
from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR
from core.device import resolve_device
from core.errors import DeepfakeError
from core.events import Events
from core.faces.align import CROP, transform_points
from core.faces.base import Face
from core.faces.identity import SAME_PERSON, FaceDescriber, distance
from core.faceset import ALIGNMENTS, Faceset, cached_descriptor, is_faceset
from core.media import open_source, source_fingerprint
from core.model import load_model
from core.provenance import LabelSettings, Labeller, sequence
from core.sinks import AudioSpan, open_sink
from core.temporal import FaceTracker, StatsSmoother, TrackedFace

LOW_SCORE = 0.5
DESCRIBE_EVERY = 10  # frames between identity checks of a lone face
RECORDS_WAIT = 60.0  # seconds a chunk waits for another to finish updating the shot's records


@dataclass
class SwapSettings:
    start: int = 0
    count: int | None = None
    alignments: Path | None = None
    direction: Literal["a2b", "b2a"] = "a2b"
    mode: Literal["composite", "overlay"] = "composite"
    format: Literal["png", "exr", "mp4"] = "png"
    bit_depth: int = 8
    color: str = DEFAULT_COLOR  # a name of core.color_transfers.COLOR_TRANSFERS
    smooth: float = 1.0
    erode: float = 0.03
    blur: float = 0.08
    face: Literal["identity", "largest"] = "identity"
    colorspace: str | None = None
    ocio_config: str | None = None
    yuv: str = "accurate"  # media.YUV_CONVERSIONS: match the Blender that shows the result
    aligner: str = "auto"
    device: str = "auto"
    batch: int = 8
    force: bool = False  # the same as existing="replace"
    existing: swap_output.Existing = "refuse"
    preroll: int | None = None  # frames read before each written stretch; None: temporal.preroll_frames
    label: LabelSettings = field(default_factory=LabelSettings)  # provenance labels (core.provenance)


@dataclass
class Pending:
    """A frame on its way through the model."""

    index: int
    frame: np.ndarray
    tracked: TrackedFace | None = None
    aligned: face_paste.AlignedFace | None = None


def check_output(out: Path, source: Path, settings: SwapSettings) -> None:
    out_r, src_r = out.resolve(), source.resolve()
    if out_r == src_r or src_r in out_r.parents or (source.is_dir() and out_r in src_r.parents):
        raise DeepfakeError(f"output {out} is the source {source} or inside it: choose another path")
    if settings.format == "mp4" and out.suffix.lower() != ".mp4":
        raise DeepfakeError(f"--format mp4 writes a file: --out should end in .mp4, not {out.name}")
    if settings.format == "mp4" and settings.mode == "overlay":
        raise DeepfakeError("overlay needs an alpha channel: use --format png or exr")
    if settings.color not in COLOR_TRANSFERS:
        raise DeepfakeError(f"unknown colour transfer {settings.color!r}: one of {', '.join(COLOR_TRANSFERS)}")
    if COLOR_TRANSFERS[settings.color].poisson and settings.format == "exr":
        raise DeepfakeError("--color seamless works on 8-bit frames only: use mean-std for EXR")
    if settings.format == "mp4" and settings.bit_depth != 8:
        raise DeepfakeError("--bit-depth applies to PNG frames; an H.264 movie is 8-bit")
    # Never into what a user keeps: a model folder (shared, read-only to swap) or a faceset.
    for folder in (out_r, *out_r.parents):
        if model_folder.is_model(folder):
            raise DeepfakeError(f"output {out} is inside the model folder {folder}: choose another path")
        if is_faceset(folder):
            raise DeepfakeError(f"output {out} is inside the faceset {folder}: choose another path")


class Swapper:
    def __init__(self, input_path: Path, model_dir: Path, out: Path, settings: SwapSettings, events: Events):
        self.input_path, self.model_dir, self.out, self.settings, self.events = input_path, model_dir, out, settings, events
        self.device = resolve_device(settings.device, log=events.log)
        self.model, self.config, _, metadata = load_model(model_dir, device=str(self.device))
        self.model.eval()
        try:
            self.state = json.loads(metadata.get("state", "{}"))
        except (ValueError, RecursionError):
            self.state = None
        if not isinstance(self.state, dict):
            raise DeepfakeError(f"{model_dir}: the model's training record is unreadable; retrain it")
        self.own, self.other = ("a", "b") if settings.direction == "a2b" else ("b", "a")
        # Before anything is written: a bad signing key is refused here, not at the first frame.
        self.labeller = Labeller.start(settings.label, input_path, self.state.get("model_id"), events)
        self.flags: dict[int, list[str]] = {}  # this batch's, of the frames this run writes
        self.writing: set[int] = set()
        self.tracker = FaceTracker(fps=30.0)
        self.stats = StatsSmoother(fps=30.0)
        self.identity: np.ndarray | None = None
        self.describer: FaceDescriber | None = None
        self.track_distance: dict[int, float] = {}
        self.track_described: dict[int, int] = {}
        self.converter: ColorConverter | None = None
        self.encode_display = False

    # -- set-up ---------------------------------------------------------------------------------
    def _identity(self) -> None:
        """The footage person's mean descriptor, from the facesets the model was trained on
        (cached in the user's cache folder: the model folder is read-only to swap)."""
        if self.settings.face != "identity":
            return
        self.describer = FaceDescriber()
        folders = [Path(p) for p in self.state.get(f"facesets_{self.own}", []) if is_faceset(Path(p))]
        if not folders:
            self.events.warning("the facesets this model was trained on are gone; picking the largest face instead")
            self.describer = None
            return
        self.identity = np.mean([cached_descriptor(f, self.describer) for f in folders], axis=0)

    def _alignments(self, info: Any) -> Faceset | None:
        if self.settings.alignments is None:
            return None
        path = self.settings.alignments
        if path.is_file() and path.name != ALIGNMENTS:
            raise DeepfakeError(f"--alignments takes a faceset folder or its alignments.json, not {path}")
        faceset = Faceset.load(path.parent if path.name == ALIGNMENTS else path, check_crops=False)
        mine = source_fingerprint(info)
        theirs = faceset.source
        if (theirs.get("path"), theirs.get("size"), theirs.get("mtime")) != (mine["path"], mine["size"], mine["mtime"]):
            raise DeepfakeError(f"{path} was extracted from {theirs.get('path')}, not from {mine['path']} "
                                "(or the file changed since)")
        return faceset

    def _settings_record(self, colorspace: str, info: Any) -> dict[str, Any]:
        s = self.settings
        # A movie is written whole: another range is another movie. Frame folders take any range.
        movie = {"range": [info.start, info.count]} if s.format == "mp4" else {}
        # Labelled or not, burned in or not: a folder never mixes the two. An output of an earlier
        # version (no labels recorded, no labels written) is not resumed by a labelling swap either.
        labels = ("on" if s.label.enabled else "off") + (", visible" if s.label.visible else "")
        return {**movie, "direction": s.direction, "mode": s.mode, "format": s.format, "bit_depth": s.bit_depth,
                "color": s.color, "smooth": s.smooth, "erode": s.erode, "blur": s.blur, "face": s.face,
                "yuv": s.yuv, "colorspace": colorspace, "labels": labels}

    # -- per frame --------------------------------------------------------------------------------
    def flag(self, index: int, reason: str, **extra: Any) -> None:
        if index not in self.writing:  # a pre-roll frame: another run (or chunk) writes and flags it
            return
        reasons = self.flags.setdefault(index, [])
        if reason not in reasons:
            reasons.append(reason)
        self.events.flag(index, reason, **extra)

    def _choose(self, index: int, display: np.ndarray, tracked: list[TrackedFace]) -> TrackedFace | None:
        if not tracked:
            return None
        if self.identity is None or self.describer is None:
            return max(tracked, key=lambda t: t.face.area)
        for t in tracked:
            # On frame numbers, not on time since the track began: a chunk checks the frames a
            # whole-shot run checks.
            due = len(tracked) > 1 or t.track_id not in self.track_described or index % DESCRIBE_EVERY == 0
            if due:
                d = distance(self.describer.describe(display, t.face.landmarks), self.identity)
                old = self.track_distance.get(t.track_id)
                self.track_distance[t.track_id] = d if old is None else 0.5 * old + 0.5 * d
                self.track_described[t.track_id] = index
        chosen = min(tracked, key=lambda t: self.track_distance.get(t.track_id, 9.0))
        if self.track_distance.get(chosen.track_id, 0.0) > SAME_PERSON:
            self.flag(index, "identity_mismatch", distance=round(self.track_distance[chosen.track_id], 3))
        return chosen

    def _prepare(self, item: Pending, converter: ColorConverter) -> bool:
        """Align the frame's face; False when its landmarks cannot make a face crop."""
        item.aligned = face_paste.align(item.frame, item.tracked.landmarks, converter, CROP)
        return item.aligned is not None

    @torch.no_grad()
    def _infer(self, items: list[Pending]) -> tuple[np.ndarray, np.ndarray]:
        res = self.config.resolution
        batch = np.stack([cv2.resize(it.aligned.crop, (res, res), interpolation=cv2.INTER_AREA) for it in items])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        rgb, mask = self.model(x, self.other)
        return (rgb.float().permute(0, 2, 3, 1).cpu().numpy(), mask.float()[:, 0].cpu().numpy())

    def _mask(self, item: Pending, learned: np.ndarray) -> np.ndarray:
        s = self.settings
        hull = transform_points(item.tracked.landmarks, item.aligned.matrix)
        return masks.face_mask(hull, CROP, learned=learned, erode=s.erode, blur=s.blur)

    def _warm(self, item: Pending, learned: np.ndarray, stats: StatsSmoother) -> None:
        """A pre-roll frame: the colour smoother sees its statistics as in a whole-shot run."""
        mask = self._mask(item, learned)
        if mask.any():
            stats(item.tracked.track_id, item.index, color_match.lab_stats(item.aligned.crop, mask))

    def _finish(self, item: Pending, rgb: np.ndarray, learned: np.ndarray, converter: ColorConverter,
                stats: StatsSmoother) -> np.ndarray:
        s = self.settings
        face = np.clip(cv2.resize(rgb, (CROP, CROP), interpolation=cv2.INTER_CUBIC), 0, 1)
        mask = self._mask(item, learned)
        if not mask.any():  # eroded away (a large --erode / --blur, a tiny face): nothing to paint
            self.flag(item.index, "empty_mask")
            return self._unchanged(item.frame)
        transfer = COLOR_TRANSFERS[s.color]
        target = None
        if transfer.crop == "mean-std":  # against the track's time-smoothed statistics
            target = stats(item.tracked.track_id, item.index, color_match.lab_stats(item.aligned.crop, mask))
        layer_dtype = item.frame.dtype if s.format == "png" else np.float32
        return face_paste.paste(item.frame, item.aligned, face, mask, transfer, converter, mode=s.mode,
                                layer_dtype=layer_dtype, stats=target, encode_display=self.encode_display)

    def _encoded(self, frame: np.ndarray) -> np.ndarray:
        """The composited frame as the sink stores it: display sRGB (float, the PNG sink sets the
        bit depth) for a float source's PNG."""
        return frame_to_network(frame[..., :3], self.converter) if self.encode_display else frame

    def _unchanged(self, frame: np.ndarray) -> np.ndarray:
        if self.settings.mode == "overlay":
            dtype = frame.dtype if self.settings.format == "png" else np.float32
            return np.zeros((*frame.shape[:2], 4), dtype)
        return self._encoded(frame)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s = self.settings
        with open_source(self.input_path, start=s.start, count=s.count, yuv=s.yuv) as probe:
            info = probe.info
            poisson = s.color in COLOR_TRANSFERS and COLOR_TRANSFERS[s.color].poisson
            dtype = next(iter(probe))[1].dtype if poisson else np.dtype(np.uint8)
        check_output(self.out, self.input_path, s)
        if dtype != np.uint8:  # before anything is written
            raise DeepfakeError(f"--color seamless works on 8-bit frames only; these are {dtype} "
                                "(16-bit PNG or EXR): use mean-std")
        colorspace = s.colorspace or default_colorspace(info)
        record = swap_output.make_record(source_fingerprint(info), self.model_dir, self.state,
                                         self._settings_record(colorspace, info))
        if s.format == "mp4":  # a movie is one job's, whole: its lock is held for the run
            outputs.ensure_writable(self.out.parent)
            with outputs.file_lock(self.out, f"the swap output {self.out}"):
                original = self.out
                action = self._claim(record)
                if self.out == original:
                    return self._run_claimed(info, colorspace, action)
                # The first stays held too: a second "new" job cannot pick the same sibling.
                with outputs.file_lock(self.out, f"the swap output {self.out}"):
                    return self._run_claimed(info, colorspace, self._claim(record))
        # A frame folder is shared by the chunks of a shot (a farm's nodes, each a range): its
        # lock is taken only for the records, in turn; each run holds a lock of its own range.
        action = self._claim(record)
        with outputs.exclusive(self.out / f".deepfake.{info.start}-{info.start + info.count - 1}.lock",
                               f"frames {info.start}..{info.start + info.count - 1} of {self.out}"):
            return self._run_claimed(info, colorspace, action)

    def _records_lock(self):
        if self.settings.format == "mp4":
            return nullcontext()  # the movie's own lock is held already
        outputs.ensure_writable(self.out)
        return outputs.folder_lock(self.out, f"the swap output {self.out}", wait=RECORDS_WAIT)

    def _claim(self, record: dict[str, Any]) -> str:
        """Decide, under the output's lock, whether this run resumes, replaces or starts afresh
        (moving to a numbered sibling for --existing new), clear what it replaces and write its
        record."""
        s = self.settings
        with self._records_lock():
            out, action = swap_output.resolve(self.out, s.format, record, "replace" if s.force else s.existing)
            if out != self.out:
                self.events.log(f"{self.out} holds another swap: keeping it and writing to {out}")
                self.out = out
                check_output(self.out, self.input_path, s)
                if s.format == "mp4":
                    return action  # the caller takes the sibling's lock and claims it
                return self._claim(record)  # under the sibling's own lock: it resumes or starts afresh
            if s.format == "mp4":
                outputs.remove_stale_temps(self.out.parent, stem=self.out.name)
            else:
                outputs.remove_stale_temps(self.out, targets=(swap_output.RECORD, swap_output.FLAGS, sequence.NAME))
            if action == "replace":
                self.events.log(f"replacing the earlier swap in {self.out}")
                swap_output.clear(self.out, s.format)
            swap_output.write_record(self.out, s.format, record)
            return action

    def _run_claimed(self, info: Any, colorspace: str, action: str) -> dict[str, Any]:
        from core.faces.select import make_aligner

        s = self.settings
        folder = self.out.parent if s.format == "mp4" else self.out
        alignments = self._alignments(info)
        converter = get_converter(colorspace, s.ocio_config)
        # A float source (EXR) written to PNG: composited in its own linear space as always, then
        # encoded for the display-referred PNG (an 8/16-bit PNG holds sRGB, as Blender reads it).
        self.converter = converter
        self.encode_display = s.format == "png" and is_exr(Path(info.path))
        sink = open_sink(self.out, s.format, info.fps, info.width, info.height, s.bit_depth,
                         audio=AudioSpan(Path(info.path), info.start / info.fps, info.count / info.fps)
                         if info.kind == "movie" else None, labeller=self.labeller)
        if s.format != "mp4":  # what a killed run of this range left half-written
            outputs.remove_stale_temps(folder, targets={swap_output.frame_name(i, s.format)
                                                        for i in range(info.start, info.start + info.count)})
        todo = [i for i in range(info.start, info.start + info.count) if not sink.done(i)]
        self.writing = set(todo)
        preroll = temporal.preroll_frames(info.fps, s.smooth) if s.preroll is None else s.preroll
        warm = warm_frames(todo, preroll, s.batch, info.frame_count)
        outputs.ensure_free_space(folder, estimated_bytes(s.format, info.width, info.height, len(todo)),
                                  f"{len(todo)} swapped frames")
        self._identity()
        needs_detection = alignments is None or any(f not in alignments.frames for f in warm | self.writing)
        aligner = make_aligner(s.aligner, s.device, log=self.events.log) if needs_detection and todo else None
        end = info.start + info.count
        before = sum(f < todo[0] for f in warm) if todo else 0
        if before:
            self.events.log(f"pre-roll: {before} frames before frame {todo[0]} are read to warm the smoothing, "
                            "not written")
        first, stop = (min(warm | self.writing), max(warm | self.writing) + 1) if todo else (end, end)
        t0, done, written, last = time.monotonic(), 0, 0, None
        batch: list[tuple[int, np.ndarray]] = []
        try:
            with (open_source(self.input_path, start=first, count=stop - first, yuv=s.yuv)
                  if todo else nullcontext(iter(()))) as source:
                for index, frame in source:
                    if index not in warm and index not in self.writing:
                        done += 1  # written by an earlier run
                        continue
                    if last is not None and index != last + 1:  # a gap: the next frames start cold, as a chunk does
                        written += self._flush(batch, alignments, aligner, converter, sink)
                        batch = []
                        self._restart(info.fps)
                    if last is None:
                        self._restart(info.fps)
                    last = index
                    batch.append((index, frame))
                    # Batches end on multiples of the batch size in frame numbers, not counted from
                    # where this run began: a chunk feeds the model the batches a whole-shot run does
                    # (a batch of other frames rounds differently by a level here and there).
                    if (index + 1) % s.batch == 0:
                        done += sum(info.start <= i < end for i, _ in batch)
                        written += self._flush(batch, alignments, aligner, converter, sink)
                        batch = []
                        self.events.progress("swap", done, info.count)
                done += sum(info.start <= i < end for i, _ in batch) if todo else info.count
                written += self._flush(batch, alignments, aligner, converter, sink)
                self.events.progress("swap", done, info.count)
            sink.close()
            # Every frame of the range, resumed ones too, hashed before the lock is taken.
            hashed = sequence.digests(sink.path(i) for i in range(info.start, end)) \
                if s.format != "mp4" and self.labeller.enabled else None
            with self._records_lock():
                ranges = swap_output.add_range(self.out, s.format, info.start, info.count)
                if hashed is not None:
                    sequence.update(self.out, hashed, self.labeller.values, self.labeller.signer_record())
        except BaseException as exc:
            if hasattr(sink, "abort"):
                sink.abort()
            if outputs.is_disk_full(exc):
                kept = ("the movie was not kept: free some space and swap again" if s.format == "mp4" else
                        f"the {written} frames written so far are whole and kept: free some space and rerun to resume")
                raise outputs.disk_full(exc, str(self.out), kept) from None
            raise
        seconds = time.monotonic() - t0
        flags = swap_output.read_flags(self.out, s.format)
        counts: dict[str, int] = {}
        for frame, reasons in flags.items():
            if info.start <= frame < info.start + info.count:
                for r in reasons:
                    counts[r] = counts.get(r, 0) + 1
        summary = {"output": str(self.out), "frames": info.count, "frames_written": written,
                   "seconds": round(seconds, 2), "fps": round(written / seconds, 2) if seconds > 0 else None,
                   "flags": counts, "colorspace": converter.colorspace, "direction": s.direction,
                   "model_iteration": self.state.get("iteration"), "preroll": preroll,
                   "frames_read_not_written": len(warm), "ranges": ranges,
                   "output_colorspace": "sRGB" if self.encode_display else converter.colorspace,
                   **swap_output.placed(self.out, s.format, info.start, info.count, flags)}
        self.events.result(sink.outputs() + [str(swap_output.flags_path(self.out, s.format))], **summary)
        return summary

    def _restart(self, fps: float) -> None:
        """Fresh tracks and filters: at the first frame read and after a stretch that was skipped
        (frames a resumed run already has), so that every written frame saw the same past as in
        a swap of the whole shot: its pre-roll."""
        self.tracker = FaceTracker(fps=fps, smooth=self.settings.smooth)
        self.stats = StatsSmoother(fps=fps, smooth=self.settings.smooth)
        self.track_distance.clear()
        self.track_described.clear()

    def _flush(self, batch: list[tuple[int, np.ndarray]], alignments: Faceset | None, aligner: Any,
               converter: ColorConverter, sink: Any) -> int:
        """Swap a batch; its frames' flags reach flags.json before the frames reach the disk, so a
        job killed between the two leaves flags for frames its rerun writes again, never frames
        without their flags."""
        if not batch:
            return 0
        self.flags = {}
        results = self._batch(batch, alignments, aligner, converter)
        mine = [index for index, _ in batch if index in self.writing]
        with self._records_lock():
            swap_output.merge_flags(self.out, self.settings.format, mine, self.flags)
        for index, frame in results:
            sink.write(index, self.labeller.burn(frame))
        return len(results)

    def _batch(self, batch: list[tuple[int, np.ndarray]], alignments: Faceset | None, aligner: Any,
               converter: ColorConverter) -> list[tuple[int, np.ndarray]]:
        """Track, align and swap a batch; returns the frames to write (those of the pre-roll only
        move the tracker and the smoothing on)."""
        displays = [to_display_uint8(frame[..., :3], converter) for _, frame in batch]
        found: list[list[Face] | None] = [None] * len(batch)
        if alignments is not None:
            for i, (index, _) in enumerate(batch):
                if index in alignments.frames:
                    faces = [Face(tuple(r.box), r.score, r.landmarks) for r in alignments.frames[index]]
                    found[i] = [f for f in faces if plausible(f.landmarks, batch[i][1].shape)]
                    if len(found[i]) < len(faces):
                        self.flag(index, "bad_landmarks")
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            for i, faces in zip(missing, aligner.detect([displays[i] for i in missing])):
                found[i] = faces
        items = []
        for (index, frame), display, faces in zip(batch, displays, found):
            item = Pending(index, frame)
            tracked = self.tracker.update(index, faces or [])
            item.tracked = self._choose(index, display, tracked)
            if item.tracked is None:
                self.flag(index, "no_face")
            else:
                if item.tracked.outlier:
                    self.flag(index, "landmark_jump", jump=round(item.tracked.jump, 3))
                if item.tracked.face.score < LOW_SCORE:
                    self.flag(index, "low_score", score=round(item.tracked.face.score, 3))
                if not self._prepare(item, converter):
                    self.flag(index, "bad_landmarks")
                    item.tracked = None
            items.append(item)
        # A pre-roll frame needs the model only for the colour statistics it feeds the smoother.
        use = [it.tracked is not None and (it.index in self.writing or COLOR_TRANSFERS[self.settings.color].crop == "mean-std")
               for it in items]
        needed = [it for it, u in zip(items, use) if u]
        rgb, learned = self._infer(needed) if needed else (None, None)
        out, k = [], 0
        for item, u in zip(items, use):
            if not u:
                if item.index in self.writing:
                    out.append((item.index, self._unchanged(item.frame)))
                continue
            if item.index in self.writing:
                out.append((item.index, self._finish(item, rgb[k], learned[k], converter, self.stats)))
            else:
                self._warm(item, learned[k], self.stats)
            k += 1
        return out


def warm_frames(todo: list[int], preroll: int, batch: int = 1, frame_count: int | None = None) -> set[int]:
    """The frames read around each stretch of `todo` (sorted) but not written: up to `preroll`
    frames before it, from frame 0 at the earliest, to warm the filters; and after it, the rest of
    its last batch (to `frame_count` at most), so the model sees that batch as a whole-shot run
    does. The filters are causal: frames after a stretch change none of its frames' tracking."""
    warm: set[int] = set()
    wanted = set(todo)
    for i, index in enumerate(todo):
        if i == 0 or todo[i - 1] != index - 1:
            warm.update(f for f in range(max(0, index - preroll), index) if f not in wanted)
        if i == len(todo) - 1 or todo[i + 1] != index + 1:
            boundary = (index // batch + 1) * batch
            end = boundary if frame_count is None else min(boundary, frame_count)
            warm.update(f for f in range(index + 1, end) if f not in wanted)
    return warm


def plausible(landmarks: np.ndarray, frame_shape: tuple[int, ...]) -> bool:
    """Whether 68 landmarks can be a face in this frame: finite, spread over more than a few
    pixels, no larger than ten frames, and touching the frame. A hand-edited or foreign
    alignments file can hold anything; such a face is skipped and flagged, not tracked."""
    h, w = frame_shape[:2]
    if not np.isfinite(landmarks).all():
        return False
    (x0, y0), (x1, y1) = landmarks.min(axis=0), landmarks.max(axis=0)
    size = max(x1 - x0, y1 - y0)
    return 4 <= size <= 10 * max(w, h) and x1 > 0 and y1 > 0 and x0 < w and y0 < h


def is_exr(path: Path) -> bool:
    """Whether the source is EXR (float, scene-linear). An image folder holds one format:
    media refuses mixed ones."""
    path = Path(path)
    return any(f.suffix.lower() == ".exr" for f in (path.iterdir() if path.is_dir() else [path]))


def default_colorspace(info: Any) -> str:
    """What the frames are when the caller does not say: EXR frames are scene-linear (Linear
    Rec.709, as Blender reads them) whatever the output format; everything else is sRGB."""
    return "Linear Rec.709" if is_exr(Path(info.path)) else "sRGB"


def estimated_bytes(fmt: str, width: int, height: int, frames: int) -> int:
    """A low estimate of what `frames` output frames take on disk, to refuse hopeless starts:
    PNG keeps about half the raw size of natural frames, EXR (half of float32 after
    compression) about two bytes a channel, an H.264 movie at CRF 12 well under a byte a pixel."""
    per_pixel = {"png": 1.5, "exr": 6.0, "mp4": 0.05}[fmt]
    return int(width * height * per_pixel * frames)


def swap(input_path: str | Path, model_dir: str | Path, out: str | Path, settings: SwapSettings,
         events: Events) -> dict[str, Any]:
    return Swapper(Path(input_path), Path(model_dir), Path(out), settings, events).run()


