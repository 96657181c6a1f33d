"""The head-turn figure that `deepfake train` warns with (core.head_turn): what it reads on known
geometry, and on the real d18 / d19 facesets, whose heads are turned opposite ways."""
from __future__ import annotations

import numpy as np

from core.faces.align import mean_face, transform_points
from core.head_turn import head_turns, uncovered_turns_warning


def test_head_turn_is_zero_frontal_flips_sign_in_a_mirror_and_ignores_roll_scale_and_shift():
    frontal = mean_face() * 256
    turned = frontal.copy()
    turned[30, 0] += 0.1 * np.linalg.norm(frontal[42:48].mean(0) - frontal[36:42].mean(0))  # nose tip 0.1 IOD right
    base = head_turns(np.stack([frontal, turned]))
    assert abs(base[0]) < 0.02 and abs(base[1] - base[0] - 0.1) < 1e-9
    angle = np.deg2rad(25)
    similarity = np.array([[1.7 * np.cos(angle), -1.7 * np.sin(angle), 40.0], [1.7 * np.sin(angle), 1.7 * np.cos(angle), -9.0]])
    moved = head_turns(np.stack([transform_points(s, similarity) for s in (frontal, turned)]))
    assert np.allclose(moved, base)
    # A mirror swaps the eyes' sides in the 68-point scheme too: right eye 42-47 becomes the left.
    mirror = turned * [-1, 1]
    mirror[36:42], mirror[42:48] = mirror[42:48].copy(), mirror[36:42].copy()
    assert np.isclose(head_turns(mirror[None])[0], -base[1])


def test_a_faceset_covers_its_own_turns(d18_faceset):
    """The negative control: A against itself is never warned about."""
    assert uncovered_turns_warning([d18_faceset], [d18_faceset]) is None
