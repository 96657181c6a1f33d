"""The Evaluate step: how good a swap is, in figures that each mean something beside a control.

`evaluate_clip` compares a swapped clip (or image sequence) with its source frame by frame;
`evaluate_model` measures how well a model rebuilds its held-out faces. The report (JSON,
plots, HTML) is written by `core.report`.

Every figure of a clip is measured on four views of each frame, in the same way (landmarks
re-detected in the view, the same regions, the same formulas):
- **source**: the untouched source frame, the baseline (a swap should move away from it);
- **swap**: the swapped frame;
- **control**: the *mean-face paste*, the target person's average aligned face (the mean of
  their faceset's crops) pasted onto the source frame through the same feathered landmark-hull
  mask and colour transfer the swap uses, no model at all. DESIGN.md ("Metrics need controls"):
  a face descriptor calls such a blurry paste "B" on every frame, so a swap's identity figures
  mean something only where they beat the control's, and its expression figures only where they
  follow the source where the control cannot. This is the floor.
- **resolution**: the *resolution control*, the source's own face through the model's
  resolution: its aligned crop (the swap's alignment and `faces.align.CROP` size) brought down to the
  model's R px with INTER_AREA and back up with INTER_CUBIC, as the swap resizes into and out of
  the network, then pasted through the same hull mask, erosion and feather (`paste_face`; no
  colour transfer: it is the source's own colour). What a perfect R px model would give, so
  this is the ceiling: DESIGN.md measured, on a ~300 px face, detail 0.03 at 64 px, 0.08 at
  128, 0.32 at 256, and mouth correlation 0.83-0.84 at every size (the re-detected landmarks
  of a resampled face are not the source's exactly). A swap's detail and expression figures
  are read against it: detail near it is all that resolution allows, detail above it is noise
  or artefacts (they raise Laplacian energy too). On d18 (a ~230 px face in 480 px frames) at
  64 px: detail 0.065-0.10, mouth correlation 0.92 and gain 0.98 over frames 56..103, where the
  mouth opens and closes; over 12 frames with the mouth closed the correlation is dlib's noise
  (0.29 on frames 173..184), so read expression over a range where the face moves. R is the
  swap's model's (swap.json names the model folder, its config.json the resolution); where it
  cannot be found (no swap record, model folder gone) the view is skipped, its figures NaN, and
  the report says why.

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
- Pairing. `deepfake swap` names each output frame after its source frame (frame_NNNNNN.png /
  .exr), so a folder of such files pairs by frame number: without --start / --count the range is
  the folder's first to last frame, and every frame of the range must be there; a gap is an
  error naming the missing frame numbers (a resumed or chunked swap that is not finished, which
  evaluated by position would pair every later frame with the wrong source frame). A movie or
  any other image folder pairs by position: it must cover either the whole source (frame i with
  frame i) or exactly the range --start / --count asks for (its frame k with source frame
  start + k, which is what `swap --format mp4 --start N --count M` writes); any other length is
  an error naming both lengths. Frame sizes must agree.
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
  reduced to 8 bits, EXR is taken as linear Rec.709. Movies are decoded with the swap's YUV
  conversion (`--yuv`, as recorded, else accurate): pixels the swap never touched compare
  equal only when both sides are decoded the same way.
"""
from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import blend, swap_output
from core.color import to_display_uint8
from core.color_transfers import COLOR_TRANSFERS, DEFAULT_COLOR
from core.errors import DeepfakeError, MediaError
from core.events import Events
from core.faces.align import alignment_matrix, transform_points
from core.faces.base import Face
from core.faces.landmarks68 import EYELID_PAIRS, INNER_LIP_PAIRS, OUTER_EYE_CORNERS
from core.faceset import Faceset, read_crop
from core.media import SourceInfo, open_source, read_image
from core.temporal import box_iou, face_size

FORMAT = "blender-deepfake-evaluation"
VERSION = 1
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
PAIR_IOU = 0.3
MEAN_FACE_CROPS = 200
WORST = 6
VIEWS = ("swap", "control", "resolution", "source")
FRAME_FILE = re.compile(r"^frame_(\d+)\.(png|exr)$", re.IGNORECASE)



@dataclass
class EvaluateSettings:
    start: int | None = None
    count: int | None = None
    direction: str | None = None  # None: the swap's record (swap.json), else a2b
    yuv: str | None = None  # movies' YUV -> RGB conversion (media.YUV_CONVERSIONS); None: the swap's, else accurate
    worst: int = WORST


# --------------------------------------------------------------------------------------------
# Pairing swapped frames with source frames


def _runs(numbers: list[int]) -> str:
    """'3, 7-9, 12' for [3, 7, 8, 9, 12]."""
    parts, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(parts)


def _numbered_frames(folder: Path) -> dict[int, Path] | None:
    """Frame number -> file of the images named like a swap's output (None when there are none:
    the folder is then an ordinary image sequence, paired by position)."""
    if not folder.is_dir():
        return None
    found = {}
    for f in folder.iterdir():
        m = FRAME_FILE.match(f.name)
        if m is not None and f.is_file():
            found[int(m.group(1))] = f
    return found or None


def _read_image(path: Path, frame: int) -> np.ndarray:
    """RGB or RGBA, keeping the file's depth (the swap writes straight-alpha RGBA overlays)."""
    return read_image(path, frame, keep_alpha=True)


def swap_record(swapped: Path) -> dict[str, Any]:
    """The settings `deepfake swap` recorded beside its output ({} when there are none)."""
    return swap_output.read_record(swapped)


def trained_facesets(swapped: Path) -> tuple[Path, Path]:
    """Faceset A and B of the model the swap used (its swap.json names the model, whose
    state.json lists what it was trained on; the first of each): the identities the swap was
    meant to move between, so an editor need not name them again."""
    model = swap_record(swapped).get("model")
    if not model:
        raise DeepfakeError(f"{swapped} has no swap record naming its model: give --faceset-a and --faceset-b")
    try:
        state = json.loads((Path(model) / "state.json").read_text())
        a, b = Path(state["facesets_a"][0]), Path(state["facesets_b"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError):
        raise DeepfakeError(f"the swap's model {model} does not say which facesets it was trained on: "
                            "give --faceset-a and --faceset-b") from None
    return a, b


@dataclass
class Pairing:
    """Which source frames are evaluated and where their swapped frames come from."""

    source: Path
    swapped: Path
    info: SourceInfo  # the source's, over the evaluated range
    how: str  # "frame number" or "position"
    files: dict[int, Path] | None = None  # numbered folders
    swapped_start: int = 0  # position pairing: the swapped frame of source frame info.start
    yuv: str = "accurate"

    @property
    def frames(self) -> list[int]:
        return list(range(self.info.start, self.info.start + self.info.count))

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(source frame, source frame pixels, swapped frame pixels: RGB, or RGBA for overlays)."""
        with open_source(self.source, self.info.start, self.info.count, yuv=self.yuv) as src:
            if self.files is not None:
                for index, frame in src:
                    out = _read_image(self.files[index], index)
                    self._check_size(out, index)
                    yield index, frame, out
                return
            with open_source(self.swapped, self.swapped_start, self.info.count, yuv=self.yuv) as out_src:
                for (index, frame), (_, out) in zip(src, out_src):
                    yield index, frame, out

    def _check_size(self, out: np.ndarray, index: int) -> None:
        if out.shape[:2] != (self.info.height, self.info.width):
            raise MediaError(f"swapped frame {index} ({self.files[index] if self.files else self.swapped}) is "
                             f"{out.shape[1]}x{out.shape[0]}, the source {self.source} is "
                             f"{self.info.width}x{self.info.height}")


def pair_frames(source: str | Path, swapped: str | Path, start: int | None = None,
                count: int | None = None, yuv: str | None = None) -> Pairing:
    """Check that `swapped` can be compared with `source` frame for frame, and how.

    Raises MediaError naming what differs: the sizes, the lengths, or the missing frame numbers.
    See the module docstring for the rules and why. yuv: how movies are decoded (the swap's
    --yuv: pixels the swap never touched compare equal only when decoded the same way).
    """
    source, swapped = Path(source), Path(swapped)
    if not swapped.exists():
        raise MediaError(f"no such file or folder: {swapped}")
    yuv = yuv or swap_record(swapped).get("yuv") or "accurate"
    with open_source(source) as whole:
        total = whole.info.frame_count
    files = _numbered_frames(swapped)
    if files is not None:
        if start is None and count is None:
            first, last = min(files), max(files)
            if last >= total:
                raise MediaError(f"{swapped} holds frames up to {last}, the source {source} has {total} "
                                 f"(0..{total - 1}): it is not a swap of this source")
            start, count = first, last - first + 1
        start = start or 0
        if start >= total:
            raise MediaError(f"start frame {start} is beyond the end of {source} ({total} frames)")
        with open_source(source, start, count) as src:
            info = src.info
        wanted = range(info.start, info.start + info.count)
        missing = [f for f in wanted if f not in files]
        if missing:
            raise MediaError(f"{swapped} lacks {len(missing)} of the {info.count} frames "
                             f"{info.start}..{info.start + info.count - 1}: frame(s) {_runs(missing)}")
        pairing = Pairing(source, swapped, info, "frame number", files=files, yuv=yuv)
        pairing._check_size(_read_image(files[info.start], info.start), info.start)
        return pairing
    start = start or 0
    with open_source(source, start, count) as src, open_source(swapped) as out:
        info, out_info = src.info, out.info
    if (out_info.width, out_info.height) != (info.width, info.height):
        raise MediaError(f"{swapped} is {out_info.width}x{out_info.height}, the source {source} is "
                         f"{info.width}x{info.height}")
    if out_info.frame_count == info.frame_count:
        swapped_start = info.start  # the whole source's length: frame i is frame i
    elif out_info.frame_count == info.count:
        swapped_start = 0  # exactly the range: frame k is source frame start + k
    else:
        raise MediaError(f"{swapped} has {out_info.frame_count} frames; the source {source} has "
                         f"{info.frame_count}, the range {info.start}..{info.start + info.count - 1} has "
                         f"{info.count}: a swapped movie or sequence must cover the whole source or exactly "
                         "the range given by --start / --count")
    return Pairing(source, swapped, info, "position", swapped_start=swapped_start, yuv=yuv)


# --------------------------------------------------------------------------------------------
# Identities and the controls (the mean-face paste, the resolution control)


@lru_cache(maxsize=8)
def _faceset_descriptor(folder: str, mtime: float) -> tuple[float, ...]:
    from core.faces.identity import FaceDescriber
    from core.faceset import descriptor

    try:
        return tuple(descriptor(Path(folder), FaceDescriber()))
    except ValueError as exc:
        raise DeepfakeError(str(exc)) from None


def identity_of(folder: Path) -> np.ndarray:
    """Mean dlib descriptor of a faceset (cached per process while alignments.json is unchanged)."""
    path = Path(folder).resolve()
    alignments = path / "alignments.json"
    if not alignments.is_file():
        Faceset.load(path, check_crops=False)  # raises the faceset's own error
    return np.asarray(_faceset_descriptor(str(path), alignments.stat().st_mtime))


def mean_face(folder: Path, max_crops: int = MEAN_FACE_CROPS) -> np.ndarray:
    """The average aligned face of a faceset: float32 RGB in [0, 1], the faceset's crop size.

    The crops are aligned to one template, so their mean is a (blurry) face in the same pose,
    which is what the control pastes: the person's colouring, glasses and face shape, no model.
    """
    picked = Faceset.load(folder).spread_faces(max_crops)
    total = None
    for _, face in picked:
        crop = read_crop(Path(folder) / face.file).astype(np.float64)
        total = crop if total is None else total + crop
    return (total / len(picked) / 255.0).astype(np.float32)


def aligned_crop(frame: np.ndarray, landmarks: np.ndarray, size: int
                 ) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None]:
    """(alignment matrix, the crop's footprint box in the frame, the aligned crop: float32 RGB in
    [0, 1], size x size; None when the footprint is empty) of the face with these landmarks in a
    uint8 frame, made as the swap makes its crop (`Swapper._prepare`): only the footprint is
    warped, cubic, edges replicated."""
    matrix = alignment_matrix(landmarks, size)
    box = blend.crop_footprint(matrix, size, frame.shape)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return matrix, box, None
    region = frame[y0:y1, x0:x1].astype(np.float32) / 255.0
    crop = cv2.warpAffine(region, blend.footprint_matrix(matrix, box), (size, size),
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return matrix, box, crop


def resampled_face(frame: np.ndarray, landmarks: np.ndarray, resolution: int, size: int) -> np.ndarray | None:
    """The source's own aligned face (a size x size crop, as the swap aligns it) brought down to
    `resolution` px with INTER_AREA and back up with INTER_CUBIC, as the swap resizes the crop
    into the network and the network's output back: what a perfect model of that resolution
    would give (float32 RGB in [0, 1]; None when the face has no crop)."""
    _, _, crop = aligned_crop(frame, landmarks, size)
    if crop is None:
        return None
    small = cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def model_resolution(record: dict[str, Any]) -> tuple[int | None, str]:
    """(the resolution of the swap's model, or None; why not, "" when found): what the resolution
    control resamples through. swap.json names the model folder, whose config.json holds it (read
    alone, no weights: the folder is read-only to evaluate, and may be shared). None when there is
    no record (a clip that `deepfake swap` did not write) or the folder is gone or not a model:
    the view is then skipped, with this note in the report, rather than guessed."""
    from core.model import ModelError, load_config

    model = record.get("model")
    if not model:
        return None, "no swap record (swap.json) names the swap's model"
    try:
        return load_config(model).resolution, ""
    except ModelError as exc:
        return None, f"the swap's model cannot be read ({exc})"


def paste_face(frame: np.ndarray, landmarks: np.ndarray, face: np.ndarray, color: str = DEFAULT_COLOR,
               erode: float = blend.DEFAULT_ERODE, blur: float = blend.DEFAULT_BLUR) -> np.ndarray:
    """`face` (an aligned crop, float RGB in [0, 1]) pasted onto a uint8 frame at the face with
    these landmarks, as the swap pastes its output: the same alignment, hull mask, colour transfer
    and compositing (core.blend), minus the model and the temporal smoothing."""
    size = face.shape[0]
    matrix, box, crop = aligned_crop(frame, landmarks, size)
    if crop is None:
        return frame.copy()
    mask = blend.face_mask(transform_points(landmarks, matrix), size, erode=erode, blur=blur)
    if not mask.any():
        return frame.copy()
    face = blend.transfer_color(COLOR_TRANSFERS[color].control_crop, face, crop, mask)
    face_frame = blend.warp_to_footprint(np.ascontiguousarray(face, dtype=np.float32), matrix, box)
    return blend.composite(frame, np.clip(face_frame, 0, 1), blend.mask_to_frame(mask, matrix, box), box=box)


# --------------------------------------------------------------------------------------------
# Per-frame measures


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
        extended = _polygon(blend.extend_forehead(lm), shape)
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
# The clip evaluation


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
        self.erode = float(self.record.get("erode", blend.DEFAULT_ERODE))
        self.blur = float(self.record.get("blur", blend.DEFAULT_BLUR))
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
            scale = blend.code_scale(out_native.dtype)
            alpha = np.clip(out_native[..., 3].astype(np.float32) / np.float32(scale), 0, 1)
            face = out_native[..., :3].astype(np.float32) / np.float32(scale)
            src_scale = blend.code_scale(src_native.dtype)
            if src_scale != 1.0 and scale == 1.0:  # float layer over an integer source
                face = np.clip(face, 0, 1)
            composed = blend.composite(src_native[..., :3], face, alpha)
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


def _retrieval(target: np.ndarray, original: np.ndarray) -> float:
    ok = np.isfinite(target) & np.isfinite(original)
    return float((target[ok] < original[ok]).mean()) if ok.any() else math.nan


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


# --------------------------------------------------------------------------------------------
# The model evaluation: rebuilding held-out faces


def rebuild_psnr(model: Any, data: Any, identity: str, device: str = "cpu", batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per-face PSNR (dB, inside the face hull) of faces rebuilt through their own decoder, and the
    rebuilt faces (uint8). PSNR is over the hull only, like `losses.rebuild_ssim`: the decoder
    is not trained on the background, which the swap never shows."""
    import torch

    model.eval()
    psnr, rebuilt = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            idx = np.arange(start, min(start + batch, len(data)))
            x = torch.from_numpy(data.faces[idx]).to(device).permute(0, 3, 1, 2).float() / 255
            rgb, _ = model(x, identity)
            rgb = rgb.float().clamp(0, 1)
            hull = torch.from_numpy(data.hull[idx]).to(device).float().unsqueeze(1)
            mse = (((rgb - x) ** 2) * hull).sum(dim=(1, 2, 3)) / (3 * hull.sum(dim=(1, 2, 3)).clamp_min(1))
            psnr.append((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).cpu().numpy())
            rebuilt.append((rgb.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return np.concatenate(psnr), np.concatenate(rebuilt)


def evaluate_model(model_dir: str | Path, facesets_a: list[Path] | None = None, facesets_b: list[Path] | None = None,
                   events: Events | None = None, device: str = "cpu", worst: int = WORST) -> dict[str, Any]:
    """Rebuild quality on the faces the model's training held out (its own --holdout split):
    SSIM (`losses.rebuild_ssim`) and PSNR inside the face hull, per identity, beside the same
    figures for the untrained model of the same preset and seed (the control: what the
    architecture gives before learning anything)."""
    import torch

    from core.model import build_model, load_model
    from core.losses import rebuild_ssim
    from core.train_data import load_identity

    events = events or Events(jsonl=False)
    model_dir = Path(model_dir)
    model, config, _, metadata = load_model(model_dir, device=device)
    state = json.loads(metadata.get("state", "{}"))
    holdout = float(state.get("holdout", 0.0))
    if holdout <= 0:
        raise DeepfakeError(f"{model_dir} was trained without --holdout: it has no held-out faces to rebuild "
                            "(train with --holdout 0.2)")
    folders = {"a": facesets_a or [Path(p) for p in state.get("facesets_a", [])],
               "b": facesets_b or [Path(p) for p in state.get("facesets_b", [])]}
    torch.manual_seed(int(state.get("seed", 0)))  # what the trainer does before building the model
    untrained = build_model(config).to(device)
    result: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": "model", "model": str(model_dir),
                              "preset": config.preset, "resolution": config.resolution,
                              "iteration": state.get("iteration"), "seed": state.get("seed"), "holdout": holdout,
                              "identities": {}, "_thumbnails": {}}
    for step, identity in enumerate(("a", "b")):
        if not folders[identity]:
            raise DeepfakeError(f"no faceset {identity.upper()}: pass --faceset-{identity}")
        _, held = load_identity(folders[identity], config.resolution, holdout)
        if len(held) == 0:
            raise DeepfakeError(f"faceset {identity.upper()} has no held-out faces at --holdout {holdout}")
        psnr, rebuilt = rebuild_psnr(model, held, identity, device)
        psnr0, _ = rebuild_psnr(untrained, held, identity, device)
        result["identities"][identity] = {
            "facesets": [str(p) for p in folders[identity]], "faces": len(held),
            "ssim": rebuild_ssim(model, held, identity, device), "psnr": float(psnr.mean()),
            "control_ssim": rebuild_ssim(untrained, held, identity, device), "control_psnr": float(psnr0.mean()),
            "per_face_psnr": psnr.tolist(), "sources": held.sources,
        }
        order = np.argsort(psnr)[:worst]
        result["_thumbnails"][identity] = [(held.sources[i], held.faces[i], rebuilt[i]) for i in order]
        events.progress("evaluate", step + 1, 2)
    return result
