"""Masks, colour transfer and compositing (core.masks, core.color_match, core.compositing), on a
real d18 frame with dlib landmarks."""
from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np
import pytest
from conftest import VIDEO

from core import color_match, compositing, masks
from core.faces.align import alignment_matrix, transform_points, warp_back, warp_face
from core.faces.dlib_backend import DlibAligner

SIZE = 256


@pytest.fixture(scope="module")
def d18() -> tuple[np.ndarray, np.ndarray]:
    """Frame 30 of liveportrait_d18.mp4 (uint8 RGB) and its face's 68 dlib landmarks."""
    with av.open(str(VIDEO / "liveportrait_d18.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                image = frame.to_ndarray(format="rgb24")
                break
    faces = DlibAligner(threads=1).detect([image])[0]
    assert faces, "dlib found no face in d18 frame 30"
    return image, faces[0].landmarks


@dataclass
class Parts:
    matrix: np.ndarray
    crop: np.ndarray  # float32 [0, 1]
    points: np.ndarray  # landmarks in crop pixels
    mask: np.ndarray  # crop space
    box: compositing.Box
    mask_in_frame: np.ndarray  # box-sized

    def full_mask(self, frame_shape) -> np.ndarray:
        full = np.zeros(frame_shape[:2], np.float32)
        x0, y0, x1, y1 = self.box
        full[y0:y1, x0:x1] = self.mask_in_frame
        return full


def _parts(frame: np.ndarray, landmarks: np.ndarray, size: int = SIZE, **mask_args) -> Parts:
    matrix = alignment_matrix(landmarks, size)
    crop = warp_face(frame, matrix, size).astype(np.float32) / 255
    points = transform_points(landmarks, matrix)
    mask = masks.face_mask(points, size, None, **mask_args)
    box = compositing.crop_footprint(matrix, size, frame.shape)
    return Parts(matrix, crop, points, mask, box, masks.mask_to_frame(mask, matrix, box))


def _transition_width(mask: np.ndarray) -> float:
    """Mean width in pixels of the 0.05..0.95 band: its area over the length of the 0.5 contour."""
    band = np.count_nonzero((mask > 0.05) & (mask < 0.95))
    contours, _ = cv2.findContours((mask > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return band / max(cv2.arcLength(c, True) for c in contours)


def _hull(points: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return out.astype(bool)


# ---------------------------------------------------------------------------------------------
# Mask


def test_mask_is_zero_at_the_crop_border_and_true_zeros_stay_zero(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    m = p.mask
    assert m.dtype == np.float32 and m.shape == (SIZE, SIZE)
    assert m.min() == 0.0 and m.max() == 1.0
    for edge in (m[0], m[-1], m[:, 0], m[:, -1]):
        assert not edge.any()
    assert not ((m > 0) & (m < masks.MASK_FLOOR)).any()  # nothing between 0 and the floor
    # The support ends `erode` inside the (forehead-extended) hull: exactly 0 outside it.
    points = masks.extend_forehead(p.points)
    width = np.ptp(points[:, 0])
    inner = cv2.erode(_hull(points, SIZE).astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * int(masks.DEFAULT_ERODE * width) - 1,) * 2)).astype(bool)
    assert not m[~inner].any()
    # The forehead is covered above the brows, and the mask is 1 well inside.
    brow_y = p.points[17:27, 1].min()
    centre_x = int(p.points[27, 0])
    assert m[int(brow_y) - 5, centre_x] == 1.0
    assert m[int(p.points[30, 1]), centre_x] == 1.0


def test_face_running_off_the_crop_is_feathered_there_too(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    shifted = p.points + np.array([0.0, -90.0])  # the forehead leaves the crop at the top
    m = masks.face_mask(shifted, SIZE)
    assert not m[0].any() and not m[:, 0].any()
    column = m[:, int(shifted[27, 0])]
    first = np.argmax(column > 0)
    assert 1 <= first and np.argmax(column >= 1.0) - first > 3  # a ramp, not a hard cut


def test_learned_mask_can_only_take_area_away(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    np.testing.assert_array_equal(masks.face_mask(p.points, SIZE, np.ones((SIZE, SIZE), np.float32)), p.mask)
    learned = np.ones((SIZE, SIZE), np.float32)
    learned[:, : SIZE // 2] = 0.0  # e.g. a hand over the left half
    m = masks.face_mask(p.points, SIZE, learned)
    assert not m[:, : SIZE // 2].any()
    assert (m <= p.mask).all() and m[:, SIZE // 2 + 40:].sum() > 0.9 * p.mask[:, SIZE // 2 + 40:].sum()
    # A learned mask at the model's resolution is resized to the crop.
    small = cv2.resize(learned, (64, 64), interpolation=cv2.INTER_NEAREST)
    assert not masks.face_mask(p.points, SIZE, small)[:, : SIZE // 2 - 8].any()


def test_feather_scales_with_the_face(d18):
    frame, landmarks = d18
    one = _parts(frame, landmarks)
    big = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    two = _parts(big, landmarks * 2 + 0.5)  # pixel centres: x -> 2x + 0.5
    w1, w2 = _transition_width(one.mask_in_frame), _transition_width(two.mask_in_frame)
    assert w1 > 3
    assert w2 / w1 == pytest.approx(2.0, rel=0.1)
    # The seam belongs to the face, not the crop resolution: a 128 px crop gives the same
    # feather in frame pixels as a 256 px one (up to the coarser crop's sampling).
    half = _parts(frame, landmarks, size=128)
    assert _transition_width(half.mask_in_frame) / w1 == pytest.approx(1.0, rel=0.15)
    # And in crop pixels it follows the fractions: twice the blur, about twice the ramp.
    wide = masks.face_mask(one.points, SIZE, blur=2 * masks.DEFAULT_BLUR)
    assert _transition_width(wide) / _transition_width(one.mask) == pytest.approx(2.0, rel=0.15)


# ---------------------------------------------------------------------------------------------
# Frame space


def test_crop_footprint_holds_everything_the_warp_touches(d18):
    frame, landmarks = d18
    matrix = alignment_matrix(landmarks, SIZE)
    x0, y0, x1, y1 = compositing.crop_footprint(matrix, SIZE, frame.shape)
    assert 0 <= x0 < x1 <= frame.shape[1] and 0 <= y0 < y1 <= frame.shape[0]
    touched = warp_back(np.ones((SIZE, SIZE), np.float32), matrix, frame.shape) != 0
    inside = np.zeros_like(touched)
    inside[y0:y1, x0:x1] = True
    assert touched.any() and not (touched & ~inside).any()
    # The box-only warp equals the full-frame warp cut to the box, up to OpenCV's fixed-point
    # sub-pixel coordinates (1/32 px), which depend on the output's origin.
    crop = warp_face(frame, matrix, SIZE).astype(np.float32) / 255
    in_box = compositing.warp_to_footprint(crop, matrix, (x0, y0, x1, y1))
    in_frame = warp_back(crop, matrix, frame.shape)[y0:y1, x0:x1]
    np.testing.assert_allclose(in_box, in_frame, atol=0.02)
    assert np.mean(in_box == in_frame) > 0.98


def _frame_as(frame: np.ndarray, dtype) -> np.ndarray:
    if dtype == np.uint8:
        return frame.copy()
    if dtype == np.uint16:
        return frame.astype(np.uint16) * 257 + np.uint16(3)  # not just a multiple of 257
    return ((frame.astype(np.float32) / 255) ** 2.2 * 1.7).astype(np.float32)  # "linear", some > 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_composite_leaves_everything_outside_the_mask_bit_identical(d18, dtype):
    base, landmarks = d18
    frame = _frame_as(base, dtype)
    p = _parts(base, landmarks)
    scale = compositing.code_scale(dtype)
    crop = warp_face(frame, p.matrix, SIZE).astype(np.float32) / scale
    fake = crop.max() - crop  # the "swapped face": the crop inverted
    face_in_frame = compositing.warp_to_footprint(fake, p.matrix, p.box)
    out = compositing.composite(frame, face_in_frame, p.mask_in_frame, box=p.box)
    assert out.dtype == frame.dtype and out.shape == frame.shape
    full = p.full_mask(frame.shape)
    zero = full == 0
    assert zero.mean() > 0.5
    # Bit for bit (compare raw bytes: for floats, equality of values is not enough).
    assert np.array_equal(out.view(np.uint8).reshape(*frame.shape[:2], -1)[zero],
                          frame.view(np.uint8).reshape(*frame.shape[:2], -1)[zero])
    # Something changed inside, fully where the mask is 1.
    one = full == 1
    assert one.sum() > 10_000
    diff = np.abs(out.astype(np.float64) - frame.astype(np.float64))[one].mean() / scale
    assert diff > 0.1
    expected = np.asarray(face_in_frame, np.float32)[p.mask_in_frame == 1] * np.float32(scale)
    if np.issubdtype(frame.dtype, np.integer):
        expected = np.clip(np.rint(expected), 0, scale)
    np.testing.assert_array_equal(out[one], expected.astype(frame.dtype))
    # The whole-frame call (no box) on the same pixels gives the same result.
    face_full = np.zeros((*frame.shape[:2], 3), np.float32)
    x0, y0, x1, y1 = p.box
    face_full[y0:y1, x0:x1] = face_in_frame
    np.testing.assert_array_equal(compositing.composite(frame, face_full, full), out)
    # The input is not modified.
    np.testing.assert_array_equal(frame, _frame_as(base, dtype))


def test_composite_keeps_an_alpha_channel(d18):
    base, landmarks = d18
    p = _parts(base, landmarks)
    rgba = np.dstack([base, np.full(base.shape[:2], 200, np.uint8)])
    face = compositing.warp_to_footprint(1 - p.crop, p.matrix, p.box)
    out = compositing.composite(rgba, face, p.mask_in_frame, box=p.box)
    assert (out[..., 3] == 200).all() and not np.array_equal(out[..., :3], base)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_overlay_rgba(d18, dtype):
    base, landmarks = d18
    p = _parts(base, landmarks)
    face = compositing.warp_to_footprint(1 - p.crop, p.matrix, p.box)
    layer = compositing.overlay_rgba(face, p.mask_in_frame, dtype, box=p.box, frame_shape=base.shape)
    scale = compositing.code_scale(dtype)
    assert layer.dtype == dtype and layer.shape == (*base.shape[:2], 4)
    full = p.full_mask(base.shape)
    assert not layer[full == 0].any()  # transparent, and black, outside the mask
    one = full == 1
    assert (layer[one, 3] == scale).all()
    # Straight alpha: colour is the face's own where the mask is soft, not darkened by it.
    soft = (full > 0.2) & (full < 0.8)
    x0, y0 = p.box[:2]
    face_full = np.zeros((*base.shape[:2], 3), np.float32)
    face_full[y0:y0 + face.shape[0], x0:x0 + face.shape[1]] = face
    np.testing.assert_allclose(layer[soft, :3] / scale, face_full[soft], atol=1 / scale)
    pre = compositing.overlay_rgba(face, p.mask_in_frame, dtype, premultiplied=True)
    m = p.mask_in_frame
    np.testing.assert_allclose(pre[..., :3].astype(np.float64) / scale,
                               (face * m[..., None]), atol=1 / scale + 1e-6)


# ---------------------------------------------------------------------------------------------
# Colour


def _tinted(crop: np.ndarray) -> np.ndarray:
    return np.clip(crop * np.array([0.8, 1.0, 1.1], np.float32) + np.float32(0.03), 0, 1)


def test_mean_std_transfer_matches_the_target_stats(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    target = color_match.lab_stats(p.crop, p.mask)
    swapped = _tinted(p.crop)
    assert np.abs(color_match.lab_stats(swapped, p.mask) - target).max() > 5  # the tint is real
    out = color_match.transfer_color("mean-std", swapped, p.crop, p.mask)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(color_match.lab_stats(out, p.mask), target, atol=1e-2)
    # Smoothed stats passed in win over the original's.
    override = target + np.array([2.0, -1.0, 1.0, 0.5, 0.2, 0.1])
    out = color_match.transfer_color("mean-std", swapped, p.crop, p.mask, stats_override=override)
    np.testing.assert_allclose(color_match.lab_stats(out, p.mask), override, atol=1e-2)
    # The Lab conversion round-trips and agrees with OpenCV's definition.
    np.testing.assert_allclose(color_match.lab_to_rgb(color_match.rgb_to_lab(p.crop)), p.crop, atol=1e-5)
    assert np.abs(color_match.rgb_to_lab(p.crop) - cv2.cvtColor(p.crop, cv2.COLOR_RGB2Lab)).mean() < 0.2


def test_histogram_transfer_moves_medians_towards_the_reference(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    swapped = _tinted(p.crop) * np.float32(0.85)
    out = color_match.transfer_color("histogram", swapped, p.crop, p.mask)
    assert out.shape == p.crop.shape and out.dtype == np.float32
    inside = p.mask > 0.5

    def medians(image):
        return np.median(color_match.rgb_to_lab(image)[inside], axis=0)

    ref, before, after = medians(p.crop), medians(swapped), medians(out)
    assert (np.abs(after - ref) < np.abs(before - ref)).all()
    assert np.abs(after - ref).max() < 0.5
    assert np.array_equal(color_match.transfer_color("none", swapped, p.crop, p.mask), swapped)
    with pytest.raises(ValueError):
        color_match.transfer_color("sepia", swapped, p.crop, p.mask)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Poisson


def test_seamless_runs_on_uint8_and_keeps_far_pixels(d18):
    frame, landmarks = d18
    p = _parts(frame, landmarks)
    face = compositing.warp_to_footprint(_tinted(p.crop), p.matrix, p.box)
    out = compositing.seamless_clone(frame, face, p.mask_in_frame, box=p.box)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    zero = p.full_mask(frame.shape) == 0
    np.testing.assert_array_equal(out[zero], frame[zero])
    inside = p.full_mask(frame.shape) == 1
    assert np.abs(out.astype(int) - frame.astype(int))[inside].mean() > 1
    with pytest.raises(TypeError):
        compositing.seamless_clone(frame.astype(np.float32) / 255, face, p.mask_in_frame, box=p.box)
