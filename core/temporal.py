"""Temporal stability for the swap: smoothing across frames, face tracks and outlier flags.

Flicker is the known weakness of every face-swap tool: a landmarker run frame by frame jitters by
a pixel or two, so the aligned crop (and with it the swapped face pasted back) shakes, and the
colour statistics of the face wobble with it. This module keeps per-face state across frames:

- `OneEuroFilter` (Casiez, Roussel, Vogel, CHI 2012): a low-pass filter whose cutoff rises with
  the speed of the signal. Still heads get heavy smoothing (jitter gone); moving heads get a high
  cutoff (little lag). One user number, `smooth`, scales its strength.
- `FaceTracker`: links each frame's faces into tracks (greedy box IoU), each with its own filter,
  so two faces never share a filter and a cut starts afresh instead of gliding from the old face
  to the new one. It also flags landmark outliers: detector glitches, not fast motion.
- `StatsSmoother`: the same filter for per-track colour statistics (Lab mean / std).
- `corner_motion`, `lag_frames`: the measurements tests and evaluation use to show it works.

Landmark speeds are normalised by the face size, so the same parameters hold for a 80 px face in
a wide shot and a 400 px close-up.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.faces.align import invert, transform_points
from core.faces.base import Face

# Landmark filter at smooth = 1. Cutoffs in Hz, beta in Hz per (face size per second): a point
# moving a quarter of the face size per second gets 0.5 + 20 * 0.25 = 5.5 Hz, about 0.5 frame of
# lag at 30 fps. Tuned on the first 80 % of liveportrait_d18 and on d19, the two hdtf clips and
# s18 (their stillest stretches 2.8-4.6x steadier, lag <= 0.7 frame on their most moving ones);
# d18's last 20 % was held out to check them (2.55x, 0.66 frame). d_cutoff 3 Hz (the paper's is
# 1) so the speed estimate, and with it the cutoff, rises within a few frames of a head starting
# to move: at 1 Hz the lag on moving stretches grew by about half.
LANDMARK_MIN_CUTOFF = 0.5
LANDMARK_BETA = 20.0
LANDMARK_D_CUTOFF = 3.0
# Colour statistics (Lab units) drift slowly with lighting and jump on cuts (handled by new
# tracks). Their frame-to-frame jitter is about 0.1-0.6 Lab units (d18, Hamilton); 0.5 Hz still
# halves it, and beta lets a real lighting change of 20 units/s through at 1.5 Hz.
STATS_MIN_CUTOFF = 0.5
STATS_BETA = 0.05
STATS_D_CUTOFF = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with this cutoff (Hz) at time step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuroFilter:
    """One-Euro filter over numpy arrays of any fixed shape (each element its own low-pass).

    fps: the frame rate (time steps are frame numbers / fps, so a skipped frame counts as such);
    min_cutoff (Hz): the cutoff when the signal is still -- lower means less jitter, more lag;
    beta: how fast the cutoff rises with speed -- higher means less lag when moving;
    d_cutoff (Hz): the cutoff of the speed estimate itself;
    vector_axis: None = every element has its own speed and cutoff; an axis (e.g. -1 for (68, 2)
    points) = the speed is the Euclidean norm along it, so a point's x and y share one cutoff
    and the smoothing does not depend on the direction a point moves in.
    min_cutoff = inf makes it a pass-through (it still tracks the speed, for `predict`).
    """

    fps: float
    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0
    vector_axis: int | None = None
    _x: np.ndarray | None = field(default=None, init=False, repr=False)
    _dx: np.ndarray | None = field(default=None, init=False, repr=False)
    _t: float | None = field(default=None, init=False, repr=False)

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x = self._dx = self._t = None

    @property
    def started(self) -> bool:
        return self._x is not None

    def __call__(self, x: np.ndarray, t: float | None = None, scale: float = 1.0) -> np.ndarray:
        """Filter the next sample x, taken at frame t (default: one frame after the previous).

        scale: the signal's natural unit (e.g. the face size in pixels); speeds are divided by it
        before `beta` applies, so beta means the same for small and large faces.
        """
        x = np.asarray(x, dtype=np.float64)
        if t is None:
            t = 0.0 if self._t is None else self._t + 1.0
        if self._x is None or self._t is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = max(float(t) - self._t, 1e-6) / self.fps
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        if math.isinf(self.min_cutoff):
            self._x = x.copy()
        else:
            speed = (np.abs(self._dx) if self.vector_axis is None
                     else np.linalg.norm(self._dx, axis=self.vector_axis, keepdims=True))
            cutoff = self.min_cutoff + self.beta * speed / max(scale, 1e-9)
            self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()

    def predict(self, t: float | None = None) -> np.ndarray | None:
        """Where the signal should be at frame t, from the last output and its speed (None if
        nothing was seen yet)."""
        if self._x is None or self._t is None or self._dx is None:
            return None
        t = self._t + 1.0 if t is None else float(t)
        return self._x + self._dx * (t - self._t) / self.fps


def landmark_filter(fps: float, smooth: float = 1.0) -> OneEuroFilter:
    """The landmark filter for a user smoothing strength S >= 0 (0 = off, 1 = default).

    S divides min_cutoff and beta alike, so every cutoff the filter reaches is divided by S: S = 2
    is the same filter run twice as slowly (still stretches steadier, lag while moving about
    doubled), S = 0.5 half as slowly. Dividing min_cutoff alone hardly changes anything: on real
    footage the landmark jitter itself reads as speed and beta lifts the cutoff to 2-4 Hz, far
    above min_cutoff (measured on d18: S = 2 gave 2.64x instead of 2.55x steadiness).
    """
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if smooth == 0:
        return OneEuroFilter(fps, math.inf, 0.0, LANDMARK_D_CUTOFF, vector_axis=-1)
    return OneEuroFilter(fps, LANDMARK_MIN_CUTOFF / smooth, LANDMARK_BETA / smooth, LANDMARK_D_CUTOFF,
                         vector_axis=-1)


# A filter started cold and one that ran all along differ by at most the jitter of one frame (a
# pixel or two); after a pre-roll of `preroll_frames` they differ by PREROLL_TOLERANCE of that,
# a few hundredths of a pixel, which moves no composited pixel by a level (measured in
# docs/FARM.md). The tracker's outlier rule looks back JUMP_HISTORY frames.
PREROLL_TOLERANCE = 0.01
JUMP_HISTORY = 15


def preroll_frames(fps: float, smooth: float = 1.0, tolerance: float = PREROLL_TOLERANCE) -> int:
    """How many frames before a range the swap must read (tracked and measured, not written) so
    that the range comes out as it does inside a swap of the whole shot.

    Every filter here forgets geometrically: a still signal's low-pass keeps 1 - alpha of the
    past per frame at its lowest cutoff (min_cutoff / smooth: landmarks and colour statistics
    alike at 0.5 Hz); motion only raises the cutoff and shortens the memory. So the slowest
    still filter decides: n with (1 - alpha)^n <= tolerance, at least JUMP_HISTORY. At 30 fps and
    smooth 1 that is 46 frames (1.5 s); smooth 0 keeps only the speed estimate and the outlier
    history.
    """
    slowest = LANDMARK_D_CUTOFF if smooth == 0 else min(LANDMARK_MIN_CUTOFF, STATS_MIN_CUTOFF) / smooth
    keep = 1.0 - float(_alpha(slowest, 1.0 / fps))
    return max(JUMP_HISTORY, math.ceil(math.log(tolerance) / math.log(keep)))


def face_size(landmarks: np.ndarray) -> float:
    """A face's size in pixels: the square root of the area of its landmarks' bounding box.

    About the face's width; used to normalise landmark speeds and jumps. The bounding box of all
    68 points rather than the eye distance, which collapses on a face in profile.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(math.sqrt(max(w, 1.0) * max(h, 1.0)))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class TrackedFace:
    """One face of one frame, as the tracker sees it.

    landmarks: the smoothed (68, 2) points to align with; face.landmarks are the raw ones.
    outlier: the raw landmarks jumped far from where the track predicted them (a landmarker
    glitch): the smoothed landmarks then hold the prediction instead of following the jump.
    jump: the median landmark distance from the prediction, in face sizes (0 for a new track).
    """

    track_id: int
    frame: int
    face: Face
    landmarks: np.ndarray
    outlier: bool = False
    jump: float = 0.0


@dataclass
class _Track:
    track_id: int
    box: tuple[float, float, float, float]
    last_frame: int
    filter: OneEuroFilter
    size: float
    jumps: deque = field(default_factory=lambda: deque(maxlen=15))
    outliers_in_row: int = 0


@dataclass
class FaceTracker:
    """Links faces across frames into tracks, smooths each track's landmarks, flags glitches.

    Matching is greedy on box IoU (best pairs first, at least `min_iou`): cheap and enough, since
    a face moves a fraction of its size between frames while different faces rarely overlap. A
    face that matches no track starts a new one: after a cut the face is elsewhere (no face
    overlaps the old track), so it gets a fresh filter rather than being smoothed in from the
    previous shot's position; the old track runs out after `max_gap`. A cut that puts a face
    where the old one was is caught by the outlier rule below (one held frame, then a restart). A track not
    seen for more than `max_gap` frames ends (a short occlusion keeps it, with its filter).

    Outliers: the constant-speed prediction of a track is where its landmarks should be; real
    motion, however fast, is smooth at frame rate and lands close to it, a glitch does not. A
    jump (median point distance from the prediction, in face sizes) is an outlier when it exceeds
    both `outlier_floor` and `outlier_ratio` x the track's recent typical jump (so shaky footage
    raises its own bar). Measured with the dlib landmarker, real footage stays below 0.12 (the
    worst: 0.12 on the small stage faces of the Hamilton clip, 0.09 on hdtf, 0.02 on the
    liveportrait clips) and the typical jump is 0.005-0.04. An outlier is not fed to the filter;
    if the next frame jumps too, the face really moved (a cut to the same place, a very fast
    turn): the filter restarts there. The first frame after a gap is never judged: the
    prediction across missing frames is too weak to accuse anyone.
    """

    fps: float
    smooth: float = 1.0
    min_iou: float = 0.3
    max_gap: int = 5
    outlier_floor: float = 0.15
    outlier_ratio: float = 5.0
    tracks: list[_Track] = field(default_factory=list, init=False)
    _next_id: int = field(default=0, init=False)

    def reset(self) -> None:
        """End every track (e.g. the caller knows a cut happened)."""
        self.tracks.clear()

    def update(self, frame: int, faces: Sequence[Face]) -> list[TrackedFace]:
        """Assign this frame's faces to tracks; returns one TrackedFace per face, in input order."""
        self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.max_gap]
        pairs = sorted(((box_iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks)
                        for fi, f in enumerate(faces)), reverse=True)
        assigned: dict[int, _Track] = {}
        used: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < self.min_iou:
                break
            if ti in used or fi in assigned:
                continue
            used.add(ti)
            assigned[fi] = self.tracks[ti]
        out = []
        for fi, face in enumerate(faces):
            track = assigned.get(fi)
            if track is None:
                track = self._start(frame, face)
                out.append(TrackedFace(track.track_id, frame, face, np.asarray(face.landmarks, np.float64).copy()))
            else:
                out.append(self._follow(track, frame, face))
        return out

    def _start(self, frame: int, face: Face) -> _Track:
        lm = np.asarray(face.landmarks, dtype=np.float64)
        track = _Track(self._next_id, tuple(face.box), frame, landmark_filter(self.fps, self.smooth), face_size(lm))
        self._next_id += 1
        track.filter(lm, frame, track.size)
        self.tracks.append(track)
        return track

    def _follow(self, track: _Track, frame: int, face: Face) -> TrackedFace:
        raw = np.asarray(face.landmarks, dtype=np.float64)
        predicted = track.filter.predict(frame)
        assert predicted is not None
        jump = float(np.median(np.linalg.norm(raw - predicted, axis=1))) / track.size
        typical = float(np.median(track.jumps)) if track.jumps else 0.0
        after_gap = frame - track.last_frame > 1
        outlier = not after_gap and jump > max(self.outlier_floor, self.outlier_ratio * typical)
        track.box, track.last_frame = tuple(face.box), frame
        if outlier and track.outliers_in_row == 0:
            track.outliers_in_row = 1
            smoothed = predicted
        else:
            if outlier:  # the second jump in a row: the face is really there now
                track.filter.reset()
                outlier = False
            track.outliers_in_row = 0
            track.jumps.append(jump)
            track.size = face_size(raw)
            smoothed = track.filter(raw, frame, track.size)
        return TrackedFace(track.track_id, frame, face, smoothed, outlier, jump)


@dataclass
class StatsSmoother:
    """Per-track smoothing of colour statistics (e.g. Lab mean and std, 6 numbers).

    A filter per track id: a new track (a cut, another face) starts from its own first stats
    instead of fading from the previous shot's colours; a track unseen for more than `max_gap`
    frames restarts too. `scale` is the unit of the stats for beta (1 = Lab units). `smooth` as
    for landmarks: S divides the cutoffs, 0 passes the stats through.
    """

    fps: float
    smooth: float = 1.0
    max_gap: int = 5
    scale: float = 1.0
    filters: dict[int, OneEuroFilter] = field(default_factory=dict, init=False)
    _last: dict[int, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth}")

    def __call__(self, track_id: int, frame: int, stats: np.ndarray) -> np.ndarray:
        """The smoothed stats of this track at this frame."""
        filt = self.filters.get(track_id)
        if filt is None or frame - self._last.get(track_id, frame) > self.max_gap:
            min_cutoff = math.inf if self.smooth == 0 else STATS_MIN_CUTOFF / self.smooth
            beta = 0.0 if self.smooth == 0 else STATS_BETA / self.smooth
            filt = self.filters[track_id] = OneEuroFilter(self.fps, min_cutoff, beta, STATS_D_CUTOFF)
        self._last[track_id] = frame
        return filt(stats, frame, self.scale)

    def keep_only(self, track_ids: Sequence[int]) -> None:
        """Drop the filters of tracks that ended."""
        keep = set(track_ids)
        for tid in [t for t in self.filters if t not in keep]:
            del self.filters[tid]
            self._last.pop(tid, None)

    def reset(self) -> None:
        self.filters.clear()
        self._last.clear()


def corner_positions(matrices: Sequence[np.ndarray], size: int) -> np.ndarray:
    """(T, 4, 2): the 4 corners of the `size` crop mapped back to source pixels, per frame."""
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
    return np.stack([transform_points(corners, invert(m)) for m in matrices])


def corner_motion(matrices: Sequence[np.ndarray], size: int, trend: int = 0) -> np.ndarray:
    """Frame-to-frame motion of the aligned crop, in source pixels: (len(matrices) - 1,).

    The 4 corners of the `size` crop are mapped back to the source through each matrix's inverse;
    motion[i] is their mean displacement between frames i and i + 1. This is what a viewer sees
    shake when the swapped face is pasted back, translation, rotation and scale alike.
    trend > 0 first averages the corner positions over a centred window of 2 * trend + 1 frames:
    a zero-lag estimate of where the head really goes, with the jitter averaged out, so the result
    is head motion rather than jitter (for choosing still and moving stretches of a clip).
    """
    placed = corner_positions(matrices, size)
    if trend > 0:
        kernel = np.ones(2 * trend + 1) / (2 * trend + 1)
        padded = np.concatenate([np.repeat(placed[:1], trend, 0), placed, np.repeat(placed[-1:], trend, 0)])
        placed = np.apply_along_axis(lambda s: np.convolve(s, kernel, "valid"), 0, padded)
    return np.linalg.norm(np.diff(placed, axis=0), axis=2).mean(axis=1)


def lag_frames(raw: np.ndarray, smoothed: np.ndarray, max_lag: int = 5,
               window: tuple[int, int] | None = None) -> float:
    """How many frames `smoothed` trails `raw` (positive = late), by cross-correlation.

    raw, smoothed: (T,) or (T, k) series (e.g. the x and y of a face's mean landmark). For each
    shift s the raw samples of `window` (default: the whole series less max_lag at each end) are
    compared with the smoothed samples s frames later by their squared distance, i.e. the
    cross-correlation sum(raw * smoothed_s) corrected by the energy of the shifted segment; the
    best shift is refined to a fraction of a frame by a parabola through its neighbours.
    Positions, not velocities and not a normalised correlation: a low-pass filter's lag is the
    centroid of its impulse response, but velocity correlation peaks at the response's maximum
    (0 for a one-pole filter), and mean-removed positions of a ramp correlate equally at every
    shift. The squared distance finds the delay that best superimposes the two paths.
    """
    a = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
    b = np.asarray(smoothed, dtype=np.float64).reshape(len(smoothed), -1)
    start, stop = window if window is not None else (max_lag, len(a) - max_lag)
    start, stop = max(start, max_lag), min(stop, len(a) - max_lag)
    if stop - start < 3:
        raise ValueError("lag_frames: the window is too short for this max_lag")
    ref = a[start:stop]
    shifts = np.arange(-max_lag, max_lag + 1)
    cost = np.array([float(((b[start + s:stop + s] - ref) ** 2).sum()) for s in shifts])
    i = int(np.argmin(cost))
    offset = 0.0
    if 0 < i < len(shifts) - 1:
        left, mid, right = cost[i - 1], cost[i], cost[i + 1]
        curvature = left - 2 * mid + right
        if curvature > 0:
            offset = 0.5 * (left - right) / curvature
    return float(shifts[i] + offset)
