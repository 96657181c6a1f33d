"""Per-frame measures of one view of a frame against the source frame, and the statistics over
the frames (each view's series).

The figures (per frame, then their mean over the frames where they are defined):
- identity: the distance of the view's dlib face descriptor (computed on landmarks re-detected in
  that view) to the mean descriptor of faceset A and of faceset B; retrieval is the share of
  frames closer to the target (B for a2b, A for b2a) than to the original person.
- expression and pose kept: landmark error, the mean distance of the 68 re-detected landmarks
  to the source frame's, over the source's inter-ocular distance (outer eye corners 36 / 45, as
  the shared landmark set is scored); and expression-follows-source, the correlation over frames
  of the view's mouth opening (inner lips) and eye opening with the source's, and their gain
  (the least-squares slope: how much of the source's opening and closing the view reproduces).
  A frozen or averaged face scores near 0 there even when its landmark error is small; the gain
  is there because correlation ignores amplitude: on d19 the mean-face control's mouth, which
  hardly moves, still correlates 0.66 with the source's (the re-detected jaw moves it a little).
- stability: jitter, the landmarks' second difference (frame t-1 - 2 t + t+1) over the
  inter-ocular distance. Steady motion at any speed has none, so head movement does not count
  and a pixel of shake does (`temporal.corner_motion` measures motion, jitter included: it fits
  the smoothing filter's tuning, not this). Flicker, the mean absolute change of the face
  region's mean colour (8-bit levels) from one frame to the next: tone wobble, blind to texture
  and to motion inside the region, which follows the source landmarks.
- seam: gradient energy (squared Sobel magnitude of the grey image) on a band straddling the
  boundary of the painted region, divided by the source's energy on the same band: 1 where the
  boundary adds no edge (the source against itself gives exactly 1), above 1 for a visible seam.
  The source on the same band is the control rather than the output's own interior ("just
  inside"), because the interior is the model's output: a blurry CPU-trained face has little
  gradient energy there, and the band-against-interior ratio would read its blur as a seam.
  What is just inside is reported on its own, as detail kept: the Laplacian energy inside the
  face hull against the source's (DESIGN.md: the mean-face control keeps about a quarter).
- untouched: outside the face region (the source's landmark hull lifted to mid forehead, as the
  swap's mask is, grown by `MARGIN` of the face size for landmark smoothing), the share of
  pixels whose largest channel difference exceeds `CHANGED_LEVEL`, the share that differs at
  all, and the mean absolute difference there.

Design decisions:
- The painted region (whose boundary the seam band straddles). An overlay output (RGBA frames)
  carries it: alpha > 0, and the frame evaluated is the layer composited over the source. A
  composite output does not, so it is measured. Where nothing outside the face region changed
  (a lossless swap: PNG, EXR) the output is the source's bit for bit wherever the swap's mask is
  0, so every differing pixel is the mask's support. Otherwise (a lossy mp4 differs a little
  everywhere; or something painted beyond the face) the signed difference is averaged over the band's width (codec noise averages out, a swap's
  change does not) and must exceed `LOSSY_LEVEL`, which loses the feather's faint outer edge
  (the same swap's seam figure reads about 0.7 from its mp4 against 1.0 from its PNGs), while a
  hard edge is found where it is. Either way: opened to drop stray pixels, closed, the largest
  connected piece, filled to its convex hull (the swap's mask is a convex hull met with a
  learned mask), so a feathered mask's support and a pasted square's edge are found alike.
  Where almost nothing changed (a frame the swap skipped, the source against itself) the region
  falls back to the source's hull, so the figures stay defined and neutral.
- CHANGED_LEVEL = 16 (of 255, the largest channel difference): lossy outputs change every pixel
  a little. `swap --format mp4` (H.264, CRF 12) changed 81 % of d18's pixels, 99.9 % of them by
  6 levels or less and none by more than 12; a swapped face differs by tens of levels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from core import masks
from core.faces.base import Face
from core.faces.landmarks68 import EYELID_PAIRS, INNER_LIP_PAIRS, OUTER_EYE_CORNERS
from core.temporal import face_size

CHANGED_LEVEL = 16
LOSSY_LEVEL = 6.0
"""A lossy output's painted region: where the signed difference, averaged over the seam band's
width, exceeds this (8-bit levels). H.264 at CRF 12 of d18 averaged over 11 x 11 px: median
1.3 (a small colour bias), at most 3.3."""
MARGIN = 0.10
"""The face region for `untouched`, grown by this share of the face size: the swap aligns with
time-smoothed landmarks, which may sit a pixel or two off the raw ones evaluated here."""
BAND = 0.02
"""Half the seam band's width, as a share of the face size (at least 2 px)."""


def inter_ocular(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[OUTER_EYE_CORNERS[0]] - landmarks[OUTER_EYE_CORNERS[1]]))


def openings(landmarks: np.ndarray) -> tuple[float, float]:
    """(mouth opening, eye opening) over the inter-ocular distance: inner-lip and eyelid gaps."""
    iod = max(inter_ocular(landmarks), 1e-6)
    mouth = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in INNER_LIP_PAIRS])
    eyes = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in EYELID_PAIRS])
    return float(mouth / iod), float(eyes / iod)


def _polygon(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest channel difference, int16."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def painted_region(out: np.ndarray, src: np.ndarray, geo: FaceGeometry, alpha: np.ndarray | None) -> np.ndarray:
    """uint8 {0, 1}: where the swap painted (see the module docstring)."""
    if alpha is not None:
        region = (alpha > 0).astype(np.uint8)
        return region if region.any() else geo.extended
    diff = _changed(out, src)
    # Untouched outside the face: a lossless swap, whose every differing pixel is the mask's
    # support. Otherwise (lossy, or painted beyond the face) the signed difference is averaged
    # over the band's width first: codec noise averages out, a swap's change does not.
    lossless = not (diff[geo.outside] > 0).any() if geo.outside.any() else False
    if lossless:
        changed = (diff > 0).astype(np.uint8)
    else:
        k = 2 * geo.band + 1
        signed = cv2.blur(out.astype(np.float32) - src.astype(np.float32), (k, k))
        changed = (np.abs(signed).max(axis=2) > LOSSY_LEVEL).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, _disk(1))
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, _disk(2 * geo.band))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    if n <= 1:
        return geo.extended
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[biggest, cv2.CC_STAT_AREA] < 0.05 * max(int(geo.extended.sum()), 1):
        return geo.extended
    ys, xs = np.nonzero(labels == biggest)
    return _polygon(np.stack([xs, ys], axis=1).astype(np.float64), out.shape)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def gradient_energy(grey: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return gx * gx + gy * gy


def laplacian_energy(grey: np.ndarray) -> np.ndarray:
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    return lap * lap


def _ratio(a: float, b: float) -> float:
    return a / b if b > 1e-9 else math.nan


@dataclass
class FaceGeometry:
    """What the source frame's face gives every view of that frame: regions and scale."""

    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    iod: float
    size: float
    band: int
    hull: np.ndarray  # 68-point hull, eroded by the band: the face's inside
    extended: np.ndarray  # hull lifted to mid forehead (the swap's mask outline)
    outside: np.ndarray  # bool: beyond the extended hull grown by MARGIN

    @classmethod
    def of(cls, face: Face, shape: tuple[int, ...]) -> FaceGeometry:
        lm = np.asarray(face.landmarks, dtype=np.float64)
        size = face_size(lm)
        band = max(2, round(BAND * size))
        hull = cv2.erode(_polygon(lm, shape), _disk(band))
        extended = _polygon(masks.extend_forehead(lm), shape)
        outside = cv2.dilate(extended, _disk(max(1, round(MARGIN * size)))) == 0
        return cls(lm, tuple(face.box), inter_ocular(lm), size, band, hull, extended, outside)


def untouched(out: np.ndarray, src: np.ndarray, outside: np.ndarray) -> tuple[float, float, float]:
    """(share changed beyond CHANGED_LEVEL, share changed at all, mean absolute difference) outside."""
    if not outside.any():
        return math.nan, math.nan, math.nan
    diff = _changed(out, src)[outside]
    return (float((diff > CHANGED_LEVEL).mean()), float((diff > 0).mean()),
            float(np.abs(out.astype(np.int16) - src.astype(np.int16))[outside].mean()))


# --------------------------------------------------------------------------------------------
# Over the frames: each view's series, and the statistics of the summary


@dataclass
class ViewSeries:
    """Per-frame values of one view (NaN where undefined)."""

    n: int
    landmarks: list[np.ndarray | None] = field(default_factory=list)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.landmarks = [None] * self.n
        for key in ("distance_a", "distance_b", "landmark_error", "mouth", "eyes", "jitter", "flicker",
                    "colour_r", "colour_g", "colour_b", "seam", "detail", "untouched_changed",
                    "untouched_any", "untouched_mean_abs"):
            self.values[key] = np.full(self.n, np.nan)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.values[key]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return math.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _gain(view: np.ndarray, source: np.ndarray) -> float:
    """Least-squares slope of the view's series on the source's: how much of the source's change
    the view reproduces (1: all of it, 0: frozen). Correlation alone is blind to amplitude: a
    nearly frozen mouth that twitches with the jaw correlates well."""
    ok = np.isfinite(view) & np.isfinite(source)
    if ok.sum() < 3 or np.var(source[ok]) < 1e-12:
        return math.nan
    return float(np.cov(view[ok], source[ok])[0, 1] / np.var(source[ok], ddof=1))


def _mean(values: np.ndarray) -> float:
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else math.nan


def _temporal(series: ViewSeries, iod: np.ndarray, frames: list[int]) -> None:
    """Jitter and flicker, from the per-frame landmarks and face colours (consecutive frames only)."""
    colour = np.stack([series["colour_r"], series["colour_g"], series["colour_b"]], axis=1)
    for t in range(1, series.n):
        if frames[t] - frames[t - 1] == 1 and np.isfinite(colour[t]).all() and np.isfinite(colour[t - 1]).all():
            series["flicker"][t] = float(np.abs(colour[t] - colour[t - 1]).mean())
        if t + 1 < series.n and frames[t + 1] - frames[t - 1] == 2:
            a, b, c = series.landmarks[t - 1], series.landmarks[t], series.landmarks[t + 1]
            if a is not None and b is not None and c is not None and np.isfinite(iod[t]):
                series["jitter"][t] = float(np.linalg.norm(a - 2 * b + c, axis=1).mean() / iod[t])


def landmark_offset_and_tracking(view: list[np.ndarray | None], source: list[np.ndarray | None],
                                 iod: np.ndarray) -> tuple[float, float]:
    """(offset, tracking): the landmark error against the source split into the part that is the
    same on every frame and the part that varies. A swap is meant to move some landmarks by a
    constant amount (B's nose and jaw are not A's: a face shape, or a head turn B's decoder keeps),
    while a swap that does not follow the source's pose and expression moves them differently on
    every frame; one error figure cannot tell the two apart. Differences are taken in each source
    face's eye-line frame, so a head that rolls does not turn a constant offset into a varying one,
    and in units of the inter-ocular distance. Each is a mean over the 68 points of a distance, so
    the two do not add up to the landmark error."""
    diffs = []
    for lm, src, d in zip(view, source, iod):
        if lm is None or src is None or not np.isfinite(d):
            continue
        axis = src[OUTER_EYE_CORNERS[1]] - src[OUTER_EYE_CORNERS[0]]
        ex = axis / max(float(np.linalg.norm(axis)), 1e-6)
        frame = np.stack([ex, np.array([-ex[1], ex[0]])])
        diffs.append((lm - src) @ frame.T / d)
    if len(diffs) < 2:
        return math.nan, math.nan
    diffs = np.stack(diffs)
    constant = diffs.mean(axis=0)
    return (float(np.linalg.norm(constant, axis=1).mean()),
            float(np.linalg.norm(diffs - constant, axis=2).mean()))


def _retrieval(target: np.ndarray, original: np.ndarray) -> float:
    ok = np.isfinite(target) & np.isfinite(original)
    return float((target[ok] < original[ok]).mean()) if ok.any() else math.nan
