"""The colour transfers a swap offers (`--color`): one registry that the CLI's choices, the swap,
the evaluation's mean-face control and (through a test that compares them) the add-on's menu and
batch options all follow. Standard library only, so the bpy-only test environment can import it.

Each transfer is a crop-space colour match (`core.color_match.transfer_color`: "mean-std",
"histogram" or "none"), optionally followed by Poisson blending in frame space (`core.face_paste`, which the swap and the
evaluation's controls share).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColorTransfer:
    name: str
    label: str          # the add-on's menu item
    description: str    # the add-on's tooltip
    crop: str           # core.color_match.transfer_color's method, applied to the decoded face crop
    poisson: bool = False  # then Poisson ("seamless") blending into the frame: 8-bit frames only


COLOR_TRANSFERS: dict[str, ColorTransfer] = {t.name: t for t in (
    ColorTransfer("mean-std", "Mean / Std", "Match mean and spread in Lab inside the mask", "mean-std"),
    ColorTransfer("histogram", "Histogram", "Match histograms", "histogram"),
    ColorTransfer("seamless", "Seamless", "Poisson blending (8-bit only)", "none", poisson=True),
    ColorTransfer("none", "None", "No colour matching", "none"),
)}
DEFAULT_COLOR = "mean-std"
