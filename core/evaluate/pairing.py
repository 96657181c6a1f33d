"""Pairing a swapped clip with its source: which swapped frame is which source frame, and what the
swap recorded beside its output (swap.json, read through `core.swap_output`).

`deepfake swap` names each output frame after its source frame (frame_NNNNNN.png /
.exr), so a folder of such files pairs by frame number: without --start / --count the range is
the folder's first to last frame, and every frame of the range must be there; a gap is an
error naming the missing frame numbers (a resumed or chunked swap that is not finished, which
evaluated by position would pair every later frame with the wrong source frame). A movie or
any other image folder pairs by position: it must cover either the whole source (frame i with
frame i) or exactly the range --start / --count asks for (its frame k with source frame
start + k, which is what `swap --format mp4 --start N --count M` writes); any other length is
an error naming both lengths. Frame sizes must agree.

Movies are decoded with the swap's YUV conversion (`--yuv`, as recorded, else accurate): pixels
the swap never touched compare equal only when both sides are decoded the same way.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import model_folder, swap_output
from core.errors import DeepfakeError, MediaError
from core.media import SourceInfo, open_source, read_image

FRAME_FILE = re.compile(r"^frame_(\d+)\.(png|exr)$", re.IGNORECASE)


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
        state = model_folder.read_state(Path(model))
        a, b = Path(state["facesets_a"][0]), Path(state["facesets_b"][0])
    except (KeyError, IndexError, TypeError):
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

