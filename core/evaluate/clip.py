"""The clip evaluation: a swapped clip measured frame by frame on its four views (the package
docstring, `core.evaluate`), its figures (`core.evaluate.measures`) summarised over the frames,
and the report dict that `core.report` writes.

Design decisions:
- Frames where the source shows no face are flagged `no_source_face` (only untouched is measured
  there: every pixel is outside any face); frames where no face is re-detected in the swapped
  frame (or none overlapping the source's face) are flagged `no_face`, marked on the plots,
  counted, and left out of the figures that need the re-detected face (identity, landmark error,
  expression, jitter); flicker, seam, detail and untouched still hold for them. The controls'
  frames without a re-detected face are counted too (`control_no_face`, `resolution_no_face`:
  the latter only when the resolution control is measured), not flagged.
- Several faces in a source frame: the one closest to the original person's mean descriptor is
  evaluated, as the swap picks it; in the swapped and the controls' frames, the re-detected face
  that overlaps it most (box IoU >= 0.3).
- Frames are compared as display sRGB uint8 (what dlib and a viewer see): 16-bit PNG is
  reduced to 8 bits, EXR is taken as linear Rec.709 (movies are decoded as `core.evaluate.pairing`
  says).
"""
from __future__ import annotations

import heapq
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import compositing, masks
from core.color_management import to_display_uint8
from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR
from core.errors import DeepfakeError
from core.evaluate.controls import identity_of, mean_face, model_resolution, paste_face, resampled_face
from core.evaluate.measures import (
    BAND, CHANGED_LEVEL, MARGIN, FaceGeometry, ViewSeries, _correlation, _disk, _gain, _grey, _mean, _ratio,
    _retrieval, _temporal, gradient_energy, landmark_offset_and_tracking, laplacian_energy,
    openings, painted_region, untouched,
)
from core.evaluate.pairing import Pairing, pair_frames, swap_record
from core.events import Events
from core.faces.base import Face
from core.head_turn import head_turns
from core.faceset import Faceset
from core.temporal import box_iou

FORMAT = "blender-deepfake-evaluation"
VERSION = 1
PAIR_IOU = 0.3
WORST = 6
VIEWS = ("swap", "control", "resolution", "source")


@dataclass
class EvaluateSettings:
    start: int | None = None
    count: int | None = None
    direction: str | None = None  # None: the swap's record (swap.json), else a2b
    yuv: str | None = None  # movies' YUV -> RGB conversion (media.YUV_CONVERSIONS); None: the swap's, else accurate
    worst: int = WORST


class ClipEvaluator:
    def __init__(self, pairing: Pairing, faceset_a: Path, faceset_b: Path, settings: EvaluateSettings,
                 events: Events):
        from core.faces.dlib_backend import DlibAligner
        from core.faces.identity import FaceDescriber
        from core.faces.align import CROP

        self.pairing, self.settings, self.events = pairing, settings, events
        self.record = swap_record(pairing.swapped)
        source = self.record.get("source")
        recorded = source.get("path") if isinstance(source, dict) else None
        if recorded and Path(recorded).resolve() != Path(pairing.source).resolve():
            raise DeepfakeError(f"{pairing.swapped} is a swap of {recorded}, not of {pairing.source}: "
                                "give the swap's own source")
        direction = settings.direction or self.record.get("direction") or "a2b"
        if direction not in ("a2b", "b2a"):
            raise DeepfakeError(f"unknown direction {direction!r}: expected a2b or b2a")
        self.direction = direction
        self.original, self.target = ("a", "b") if direction == "a2b" else ("b", "a")
        self.facesets = {"a": Path(faceset_a), "b": Path(faceset_b)}
        self.pool = ThreadPoolExecutor(max_workers=2)  # dlib releases the GIL
        self.identity = dict(zip(self.facesets, self.pool.map(identity_of, self.facesets.values())))
        self.mean_face = mean_face(self.facesets[self.target])
        self.crop_size = CROP  # the swap's alignment: the resolution control's crop is the swap's
        self.resolution, self.resolution_note = model_resolution(self.record)
        # The views measured: all of them, less the resolution control when its model is unknown
        # (its figures stay NaN, so every summary entry still has the key; the report says why).
        self.views = tuple(v for v in VIEWS if v != "resolution" or self.resolution is not None)
        self.aligner = DlibAligner(threads=2)
        self.describer = FaceDescriber()
        colour = self.record.get("color", DEFAULT_COLOR)
        self.control_color = colour if colour in COLOR_TRANSFERS else DEFAULT_COLOR
        self.erode = float(self.record.get("erode", masks.DEFAULT_ERODE))
        self.blur = float(self.record.get("blur", masks.DEFAULT_BLUR))
        self.frames = pairing.frames
        n = len(self.frames)
        self.series = {v: ViewSeries(n) for v in VIEWS}
        self.iod = np.full(n, np.nan)
        self.flags: dict[int, list[str]] = {}
        self.worst: list[tuple[float, int, int, np.ndarray, np.ndarray]] = []  # min-heap of the worst frames
        self.overlay = False

    # -- per frame --------------------------------------------------------------------------------
    def _flag(self, frame: int, reason: str) -> None:
        self.flags.setdefault(frame, []).append(reason)
        self.events.flag(frame, reason)

    def _display(self, frame: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(to_display_uint8(frame[..., :3]))

    def _swapped_view(self, src_native: np.ndarray, out_native: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The swapped frame as a viewer sees it (an overlay composited over the source) and the
        overlay's alpha (None for composites)."""
        if out_native.ndim == 3 and out_native.shape[2] == 4:
            self.overlay = True
            scale = compositing.code_scale(out_native.dtype)
            alpha = np.clip(out_native[..., 3].astype(np.float32) / np.float32(scale), 0, 1)
            face = out_native[..., :3].astype(np.float32) / np.float32(scale)
            src_scale = compositing.code_scale(src_native.dtype)
            if src_scale != 1.0 and scale == 1.0:  # float layer over an integer source
                face = np.clip(face, 0, 1)
            composed = compositing.composite(src_native[..., :3], face, alpha)
            return self._display(composed), alpha
        return self._display(out_native), None

    def _choose(self, faces: list[Face], display: np.ndarray) -> Face | None:
        if len(faces) <= 1:
            return faces[0] if faces else None
        target = self.identity[self.original]
        return min(faces, key=lambda f: float(np.linalg.norm(self.describer.describe(display, f.landmarks) - target)))

    @staticmethod
    def _match(faces: list[Face], box: tuple[float, float, float, float]) -> Face | None:
        best = max(faces, key=lambda f: box_iou(f.box, box), default=None)
        return best if best is not None and box_iou(best.box, box) >= PAIR_IOU else None

    def _measure(self, t: int, index: int, src_native: np.ndarray, out_native: np.ndarray) -> None:
        src = self._display(src_native)
        out, alpha = self._swapped_view(src_native, out_native)
        faces = self.aligner.detect([src])[0]
        face = self._choose(faces, src)
        if face is None:
            self._flag(index, "no_source_face")
            everything = np.ones(src.shape[:2], bool)
            for view, image in (("swap", out), ("source", src)):
                s = self.series[view]
                s["untouched_changed"][t], s["untouched_any"][t], s["untouched_mean_abs"][t] = untouched(image, src, everything)
            self._keep_worst(math.inf, index, src, out, None)
            return
        geo = FaceGeometry.of(face, src.shape)
        self.iod[t] = geo.iod
        images = {"source": src, "swap": out,
                  "control": paste_face(src, geo.landmarks, self.mean_face, self.control_color, self.erode, self.blur)}
        if "resolution" in self.views:
            # The source's own face: no colour transfer (it has the source's colour already).
            face_crop = resampled_face(src, geo.landmarks, self.resolution, self.crop_size)
            images["resolution"] = src.copy() if face_crop is None else \
                paste_face(src, geo.landmarks, face_crop, "none", self.erode, self.blur)
        painted = [v for v in self.views if v != "source"]
        # Re-detect where the pixels differ from the source; identical pixels give identical answers.
        redo = [v for v in painted if not np.array_equal(images[v], src)]
        found = dict(zip(redo, self.aligner.detect([images[v] for v in redo])))
        matched: dict[str, Face | None] = {"source": face}
        for view in painted:
            matched[view] = self._match(found[view], geo.box) if view in found else face
        todo = [v for v in self.views if matched[v] is not None and (v == "source" or v in found)]
        descriptors = dict(zip(todo, self.pool.map(
            lambda v: self.describer.describe(images[v], matched[v].landmarks), todo)))
        for view in painted:
            if view not in found and matched[view] is not None:
                descriptors[view] = descriptors["source"]
        if matched["swap"] is None:
            self._flag(index, "no_face")
        src_grey = _grey(src)
        src_grad, src_lap = gradient_energy(src_grey), laplacian_energy(src_grey)
        hull = geo.hull.astype(bool)
        for view in self.views:
            s, image, m = self.series[view], images[view], matched[view]
            if m is not None:
                lm = np.asarray(m.landmarks, dtype=np.float64)
                s.landmarks[t] = lm
                s["distance_a"][t] = float(np.linalg.norm(descriptors[view] - self.identity["a"]))
                s["distance_b"][t] = float(np.linalg.norm(descriptors[view] - self.identity["b"]))
                s["landmark_error"][t] = float(np.linalg.norm(lm - geo.landmarks, axis=1).mean() / geo.iod)
                s["mouth"][t], s["eyes"][t] = openings(lm)
            if hull.any():
                s["colour_r"][t], s["colour_g"][t], s["colour_b"][t] = image[hull].reshape(-1, 3).mean(axis=0)
            s["untouched_changed"][t], s["untouched_any"][t], s["untouched_mean_abs"][t] = untouched(image, src, geo.outside)
            grey = src_grey if image is src else _grey(image)
            if hull.any():
                s["detail"][t] = _ratio(float(laplacian_energy(grey)[hull].mean()), float(src_lap[hull].mean()))
            region = painted_region(image, src, geo, alpha if view == "swap" else None)
            band = (cv2.dilate(region, _disk(geo.band)) - cv2.erode(region, _disk(geo.band))).astype(bool)
            band[:2, :] = band[-2:, :] = band[:, :2] = band[:, -2:] = False  # Sobel at the frame's edge
            if band.any():
                s["seam"][t] = _ratio(float(gradient_energy(grey)[band].mean()), float(src_grad[band].mean()))
        d = self.series["swap"]["distance_" + self.target][t]
        self._keep_worst(d if np.isfinite(d) else math.inf, index, src, out, geo)

    def _keep_worst(self, score: float, index: int, src: np.ndarray, out: np.ndarray, geo: FaceGeometry | None) -> None:
        """Keep small face thumbnails of the `worst` frames so far (largest distance to the target;
        frames without a face first), never the whole clip's frames."""
        if self.settings.worst <= 0:
            return
        item = (score, -index, index, *_thumbnails(src, out, geo))
        if len(self.worst) < self.settings.worst:
            heapq.heappush(self.worst, item)
        elif item[:2] > self.worst[0][:2]:
            heapq.heapreplace(self.worst, item)

    # -- the loop and the summary ------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        total = len(self.frames)
        for t, (index, src, out) in enumerate(self.pairing):
            self._measure(t, index, src, out)
            self.events.progress("evaluate", t + 1, total)
        for view in VIEWS:
            _temporal(self.series[view], self.iod, self.frames)
        return self.report()

    def report(self) -> dict[str, Any]:
        s = self.series
        no_face = [f for f, r in self.flags.items() if "no_face" in r]
        no_source = [f for f, r in self.flags.items() if "no_source_face" in r]
        src_mouth, src_eyes = s["source"]["mouth"], s["source"]["eyes"]
        summary: dict[str, dict[str, float]] = {}

        def row(name: str, fn) -> None:
            summary[name] = {view: fn(view) for view in VIEWS}

        tgt, org = "distance_" + self.target, "distance_" + self.original
        row("identity_distance_target", lambda v: _mean(s[v][tgt]))
        row("identity_distance_original", lambda v: _mean(s[v][org]))
        row("identity_retrieval", lambda v: _retrieval(s[v][tgt], s[v][org]))
        row("landmark_error", lambda v: _mean(s[v]["landmark_error"]))
        split = {v: landmark_offset_and_tracking(s[v].landmarks, s["source"].landmarks, self.iod) for v in VIEWS}
        row("landmark_offset", lambda v: split[v][0])
        row("landmark_tracking", lambda v: split[v][1])
        found = {v: np.array([lm for lm in s[v].landmarks if lm is not None]).reshape(-1, 68, 2) for v in VIEWS}
        row("head_turn", lambda v: _mean(head_turns(found[v])))
        row("mouth_correlation", lambda v: _correlation(s[v]["mouth"], src_mouth))
        row("eye_correlation", lambda v: _correlation(s[v]["eyes"], src_eyes))
        row("mouth_gain", lambda v: _gain(s[v]["mouth"], src_mouth))
        row("eye_gain", lambda v: _gain(s[v]["eyes"], src_eyes))
        row("jitter", lambda v: _mean(s[v]["jitter"]))
        row("flicker", lambda v: _mean(s[v]["flicker"]))
        row("seam", lambda v: _mean(s[v]["seam"]))
        row("detail", lambda v: _mean(s[v]["detail"]))
        row("untouched_changed", lambda v: _mean(s[v]["untouched_changed"]))
        row("untouched_any", lambda v: _mean(s[v]["untouched_any"]))
        row("untouched_mean_abs", lambda v: _mean(s[v]["untouched_mean_abs"]))
        per_frame: dict[str, Any] = {"frame": self.frames, "inter_ocular": self.iod.tolist()}
        keys = ("distance_a", "distance_b", "landmark_error", "mouth", "eyes", "jitter", "flicker", "seam",
                "detail", "untouched_changed", "untouched_any", "untouched_mean_abs")
        for view in VIEWS:
            per_frame[view] = {k: s[view][k].tolist() for k in keys}
        worst = sorted(self.worst, reverse=True)
        return {
            "format": FORMAT, "version": VERSION, "kind": "clip",
            "source": str(self.pairing.source), "swapped": str(self.pairing.swapped),
            "range": {"start": self.pairing.info.start, "count": self.pairing.info.count},
            "pairing": self.pairing.how, "mode": "overlay" if self.overlay else "composite",
            "direction": self.direction, "original": self.original, "target": self.target,
            "faceset_a": str(self.facesets["a"]), "faceset_b": str(self.facesets["b"]),
            "control": f"mean face of faceset {self.target.upper()} pasted through the hull mask "
                       f"(colour {self.control_color}, erode {self.erode}, blur {self.blur}), no model",
            "model_resolution": self.resolution,
            "resolution_control": (f"source face resampled through the model's {self.resolution} px and pasted "
                                   f"back: a perfect model of this size (the swap's {self.crop_size} px crop, "
                                   f"hull mask, erode {self.erode}, blur {self.blur}, no colour transfer)"
                                   if self.resolution is not None else f"skipped: {self.resolution_note}"),
            "thresholds": {"changed_level": CHANGED_LEVEL, "margin": MARGIN, "band": BAND, "pair_iou": PAIR_IOU},
            "counts": {"frames": len(self.frames), "no_face": len(no_face), "no_source_face": len(no_source),
                       **{f"{v}_no_face": int(sum(1 for t in range(len(self.frames))
                                                  if s[v].landmarks[t] is None and np.isfinite(self.iod[t])))
                          for v in self.views if v in ("control", "resolution")}},
            "flags": [{"frame": f, "reasons": r} for f, r in sorted(self.flags.items())],
            "summary": summary,
            "per_frame": per_frame,
            "worst_frames": [w[2] for w in worst],
            "_thumbnails": [(w[2], w[3], w[4]) for w in worst],  # not written to JSON (see report.py)
        }


def _thumbnails(src: np.ndarray, out: np.ndarray, geo: FaceGeometry | None, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Source and swapped thumbnails, cropped around the face (the whole frame without one)."""
    h, w = src.shape[:2]
    if geo is None:
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        cx, cy = geo.landmarks.mean(axis=0)
        half = 0.8 * max(np.ptp(geo.landmarks[:, 0]), np.ptp(geo.landmarks[:, 1]))
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
    scale = size / max(x1 - x0, y1 - y0, 1)
    dsize = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    return tuple(cv2.resize(np.ascontiguousarray(im[y0:y1, x0:x1]), dsize, interpolation=cv2.INTER_AREA)
                 for im in (src, out))


def evaluate_clip(source: str | Path, swapped: str | Path, faceset_a: str | Path, faceset_b: str | Path,
                  settings: EvaluateSettings | None = None, events: Events | None = None) -> dict[str, Any]:
    """The evaluation of a swapped clip against its source: the report dict (see core.report)."""
    settings = settings or EvaluateSettings()
    events = events or Events(jsonl=False)
    pairing = pair_frames(source, swapped, settings.start, settings.count, settings.yuv)
    for key, folder in (("A", faceset_a), ("B", faceset_b)):
        Faceset.load(folder, check_crops=False)  # a missing faceset fails before any work
    return ClipEvaluator(pairing, Path(faceset_a), Path(faceset_b), settings, events).run()
