"""Alignment maths and the mean-face template, on real landmarks and a real frame."""
from __future__ import annotations


import av
import cv2
import numpy as np

from conftest import VIDEO
from core.faces.align import (alignment_matrix, invert, mean_face, transform_points, umeyama, warp_back,
                              warp_face)
from core.faces.dlib_backend import DlibAligner



def _d18_frame(index: int = 30) -> np.ndarray:
    with av.open(str(VIDEO / "liveportrait_d18.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("frame not found")


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, size=(51, 2))
    angle, scale, shift = 0.3, 0.7, np.array([12.5, -40.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + shift
    matrix = umeyama(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-12)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_template_is_upright_symmetric_and_leaves_a_margin():
    points = mean_face()
    assert points.shape == (68, 2)
    assert abs(points[36:42, 1].mean() - points[42:48, 1].mean()) < 1e-6  # eyes level
    assert abs(points[:, 0].min() + points[:, 0].max() - 1.0) < 1e-6  # centred
    assert points.min() >= 0.15 and points.max() <= 0.85  # whole face, brows to chin, with margin
    assert points[17:27, 1].min() > 0.15  # room above the brows for the forehead


def test_warp_in_and_back_out_round_trips():
    frame = _d18_frame()
    face = DlibAligner().detect([frame])[0][0]
    matrix = alignment_matrix(face.landmarks, 256)
    # Points: exact.
    there_and_back = transform_points(transform_points(face.landmarks, matrix), invert(matrix))
    np.testing.assert_allclose(there_and_back, face.landmarks, atol=1e-9)
    # Pixels: the crop warped back matches the frame inside the face, up to interpolation.
    crop = warp_face(frame, matrix, 256)
    back = warp_back(crop, matrix, frame.shape)
    hull = cv2.convexHull(face.landmarks.astype(np.int32))
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    diff = np.abs(back.astype(int) - frame.astype(int))[mask.astype(bool)]
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16
    # Outside the crop nothing is invented: every pixel beyond the crop's quad (its corners mapped
    # back, grown by the 2 px that bicubic interpolation reaches) stays 0, and there are such pixels.
    outside = warp_back(np.full_like(crop, 255), matrix, frame.shape)
    corners = np.array([[-0.5, -0.5], [255.5, -0.5], [255.5, 255.5], [-0.5, 255.5]])
    quad = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(quad, np.round(transform_points(corners, invert(matrix))).astype(np.int32), 1)
    beyond = cv2.dilate(quad, np.ones((5, 5), np.uint8)) == 0
    assert beyond.sum() > 0.1 * beyond.size and outside[beyond].max() == 0
    assert outside[cv2.erode(quad, np.ones((5, 5), np.uint8)) == 1].min() == 255  # and inside it is painted


def test_aligned_landmarks_land_on_the_template():
    frame = _d18_frame()
    face = DlibAligner().detect([frame])[0][0]
    aligned = transform_points(face.landmarks, alignment_matrix(face.landmarks, 256))
    error = np.linalg.norm(aligned[17:] - mean_face()[17:] * 256, axis=1)
    assert np.median(error) < 0.03 * 256
