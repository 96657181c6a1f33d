"""Frame sources: movie files (PyAV) and image sequences (PNG, JPEG, EXR), over a frame range.

Every stage downstream (extract, swap) reads frames through `open_source`, so the rules live
here once: frame indices are 0-based source frame numbers (a movie's frame counted from its
first, an image's position in the naturally sorted folder), frames are RGB ndarrays in the
source's own bit depth, and every failure is a `MediaError` whose one-line message names the file
and, where it applies, the frame -- the CLI prints it as is.
"""

from __future__ import annotations

import os

# OpenCV's EXR codec is off by default (since 4.5, over security issues in OpenEXR: opencv#21326)
# and reading an EXR then raises "OpenEXR codec is disabled". Blender users render to EXR, so we
# opt in. OpenCV reads this variable once, at the first EXR decode in the process; setting it
# before cv2 is imported is the simple way to be sure it is in place before that.
os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Literal, Union

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import MediaError

PathLike = Union[str, Path]
Frame = tuple[int, np.ndarray]

# swscale flags: SWS_POINT | SWS_FULL_CHR_H_INT | SWS_ACCURATE_RND (plain ints: av 15's
# Interpolation enum cannot combine them).
BLENDER_SWS_FLAGS = 0x10 | 0x2000 | 0x40000
YUV_CONVERSIONS: dict[str, int | None] = {"accurate": BLENDER_SWS_FLAGS, "fast": None}
"""How a movie's YUV becomes RGB. `accurate` is Blender 4.4+'s movie reader (point sampling, full
chroma interpolation, accurate rounding); `fast` is swscale's bilinear default, which Blender
4.2's reader uses. Matching the Blender that shows the result keeps untouched pixels bit-equal."""
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV

DEFAULT_FPS = 25.0
"""The rate of a source that carries none (image folders): Blender's default scene rate."""

# Extensions that may make up an image sequence, grouped by format (.jpg and .jpeg are one).
_IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".exr": "exr"}


@dataclass(frozen=True)
class SourceInfo:
    """What a source is and which range of it is served.

    frame_count is the whole source's length; start and count describe the served range, so
    callers can report progress (count) and map back to source frames (start + i).
    """

    path: str
    kind: Literal["movie", "images"]
    fps: float
    width: int
    height: int
    frame_count: int
    start: int
    count: int


def open_source(path: PathLike, start: int = 0, count: int | None = None, yuv: str = "accurate") -> FrameSource:
    """Open a movie file or an image folder and serve frames start .. start + count - 1.

    count=None serves to the end; a count past the end is clamped to what exists; a start at or
    beyond the end is an error (the user asked for frames that are not there). `yuv` names the
    movie conversion (YUV_CONVERSIONS).
    """
    if yuv not in YUV_CONVERSIONS:
        raise MediaError(f"unknown YUV conversion '{yuv}' (one of {', '.join(YUV_CONVERSIONS)})")
    p = Path(path).expanduser().absolute()
    if start < 0:
        raise MediaError(f"start frame must be >= 0, got {start}: {p}")
    if count is not None and count < 0:
        raise MediaError(f"frame count must be >= 0, got {count}: {p}")
    if p.is_dir():
        return ImageSequenceSource(p, start, count)
    if not p.exists():
        raise MediaError(f"no such file: {p}")
    return MovieSource(p, start, count, yuv)


def _clamp_range(path: Path, frame_count: int, start: int, count: int | None) -> int:
    """The number of frames actually served, or MediaError when start lies past the end."""
    if start >= frame_count:
        raise MediaError(f"start frame {start} is beyond the end of {path} ({frame_count} frames)")
    available = frame_count - start
    return available if count is None else min(count, available)


# --------------------------------------------------------------------------------------------
# Movies


class MovieSource:
    """Frames of a movie file's first video stream, decoded with PyAV.

    The container stays open for the source's life (close it, or use `with`). Each iteration
    seeks afresh, so a source can be iterated more than once.
    """

    def __init__(self, path: Path, start: int, count: int | None, yuv: str = "accurate") -> None:
        self._path = path
        self._sws_flags = YUV_CONVERSIONS[yuv]
        try:
            self._container = av.open(str(path))
        except av.error.FFmpegError as err:
            raise MediaError(f"not a video: {path} ({_reason(err)})") from None
        try:
            if not self._container.streams.video:
                raise MediaError(f"no video stream in {path}")
            self._stream = self._container.streams.video[0]
            # Frame threads make decoding several times faster on multi-core machines.
            self._stream.codec_context.thread_type = "AUTO"
            # One reformatter for all frames: frame.to_ndarray(format="rgb24") builds a new
            # swscale context per frame (~0.7 ms each, 6-10x the conversion); same pixels.
            self._reformatter = VideoReformatter()
            rate = self._stream.average_rate or self._stream.guessed_rate
            self._rate: Fraction | None = Fraction(rate) if rate else None
            frame_count = self._stream.frames if self._stream.frames > 0 else self._count_packets()
            if frame_count <= 0:
                raise MediaError(f"no frames in {path}")
            served = _clamp_range(path, frame_count, start, count)
            self._trust_pts = self._first_frame_is_zero()
            self.info = SourceInfo(
                path=str(path),
                kind="movie",
                fps=float(self._rate) if self._rate else DEFAULT_FPS,
                width=self._stream.codec_context.width,
                height=self._stream.codec_context.height,
                frame_count=frame_count,
                start=start,
                count=served,
            )
        except BaseException:
            self._container.close()
            raise

    def _first_frame_is_zero(self) -> bool:
        """Whether the first frame's pts maps to frame 0: if not (AVI with B-frames, odd muxers)
        pts cannot locate frames, and every range is decoded from the top, counting."""
        try:
            first = next(iter(self._container.decode(self._stream)), None)
        except av.error.FFmpegError as err:
            raise MediaError(f"cannot decode {self._path} at frame 0: {_reason(err)}") from None
        if first is None:
            raise MediaError(f"no frames in {self._path}")
        return self._index_of(first.pts) == 0

    def _count_packets(self) -> int:
        """Count video packets by demuxing alone (no decode), for containers without a count."""
        try:
            with av.open(str(self._path)) as container:
                stream = container.streams.video[0]
                return sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as err:
            raise MediaError(f"cannot count frames of {self._path}: {_reason(err)}") from None

    def __len__(self) -> int:
        return self.info.count

    def __iter__(self) -> Iterator[Frame]:
        """Yield (frame_index, RGB uint8 frame) for the served range, frame-exact.

        A gap in the timestamps (a variable-rate or damaged file) is filled with the previous
        frame, which is what a constant-rate timeline such as Blender's shows at that time, so
        exactly `count` frames come out or a MediaError says why not.
        """
        start, end = self.info.start, self.info.start + self.info.count
        next_index = start
        held: av.VideoFrame | None = None  # the latest decoded frame; one, never a backlog
        try:
            for index, frame in self._frames_from(start):
                if index < next_index:
                    held = frame  # before start (decoded to reach it from the keyframe) or a repeat
                    continue
                while next_index < min(index, end) and held is not None:
                    yield next_index, self._rgb(held)
                    next_index += 1
                if index >= end:
                    break
                yield index, self._rgb(frame)
                next_index, held = index + 1, frame
        except av.error.FFmpegError as err:
            raise MediaError(
                f"cannot decode {self._path} at frame {next_index}: {_reason(err)}"
            ) from None
        if next_index < end:
            raise MediaError(
                f"{self._path} ended at frame {next_index}, expected {end} frames"
                " (truncated or damaged)"
            )

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as RGB uint8 (H, W, 3), converted from YUV exactly as Blender's movie reader
        converts it, so a swapped frame's untouched pixels equal the source strip's in the VSE.

        Blender 5.0 (imbuf/movie/intern/movie_read.cc) asks swscale for point sampling with full
        horizontal chroma interpolation and accurate rounding, the stream's own matrix and range;
        PyAV's default (bilinear, approximate, what Blender 4.2 uses) differs by up to 3 levels on
        most pixels. With the FFmpeg 7.1 that av 15.1 bundles, the same as Blender 4.5 / 5.0's, the
        result is bit-equal (tests/test_addon_workflow.py renders both, in 5.0 and 4.2). Sources
        deeper than 8 bits are reduced to 8.
        """
        full_range = frame.color_range == _JPEG_RANGE
        return self._reformatter.reformat(frame, format="rgb24", interpolation=self._sws_flags,
                                          src_color_range=_JPEG_RANGE if full_range else None).to_ndarray()

    def _frames_from(self, start: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded frames with their source indices, beginning at or before `start`.

        Seeking lands on a keyframe before the target, but some containers index keyframes by dts
        or seek coarsely (MPEG-TS): the keyframe found can display *after* the target. So if the
        first frame decoded lies past start, back off further (2 s, 10 s), then decode from the top.
        """
        if not self._trust_pts:
            yield from self._counted()
            return
        time_base, origin = self._stream.time_base, self._stream.start_time or 0
        target = origin + int(Fraction(start) / self._rate / time_base)
        for back_seconds in (0, 2, 10) if start > 0 else ():
            seek_to = target - int(back_seconds / time_base)
            if seek_to <= origin:
                break
            frames = self._timed(seek_to)
            first = next(frames, None)
            if first is not None and first[0] <= start:
                yield first
                yield from frames
                return
            frames.close()
            if first is None:
                break
        yield from self._timed(None)

    def _timed(self, seek_to: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Frames indexed by pts, from the keyframe before pts `seek_to` or from the top (None).

        Timestamps that are missing or run backwards cannot be trusted: then decode again from
        the top, counting frames. The caller drops indices it has already served (and a repeated
        index, two frames of a variable-rate file in one slot).
        """
        if seek_to is None:
            self._reopen()  # seeking "to the start" is itself imprecise in some containers
        else:
            self._container.seek(seek_to, backward=True, any_frame=False, stream=self._stream)
        last: int | None = None
        for frame in self._container.decode(self._stream):
            index = self._index_of(frame.pts)
            if index is None or (last is not None and index < last):
                yield from self._counted()
                return
            last = index
            yield index, frame

    def _counted(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """Frames from the top, indexed by counting: slow for late starts, but always right."""
        self._reopen()
        for index, frame in enumerate(self._container.decode(self._stream)):
            yield index, frame

    def _reopen(self) -> None:
        """A fresh container and decoder, positioned at the very start of the file."""
        self._container.close()
        self._container = av.open(str(self._path))
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_type = "AUTO"

    def _index_of(self, pts: int | None) -> int | None:
        """The 0-based frame number of a pts, from the stream's start time and average rate."""
        if pts is None or self._rate is None or self._stream.time_base is None:
            return None
        seconds = (pts - (self._stream.start_time or 0)) * self._stream.time_base
        return round(seconds * self._rate)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "MovieSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(err: av.error.FFmpegError) -> str:
    """FFmpeg's own words for an error, without PyAV's errno and file name decorations."""
    return getattr(err, "strerror", None) or str(err)


# --------------------------------------------------------------------------------------------
# Image sequences


def _natural_key(path: Path) -> list[object]:
    """Sort key that orders f_2.png before f_10.png: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def image_files(folder: Path) -> list[Path]:
    """The frames of an image-sequence folder in the core's order (natural: f_2 before f_10):
    frame n of the folder is the n-th. The one place that numbers an image sequence; the add-on
    asks for it through `deepfake inspect` rather than sorting on its own."""
    files = [f for f in Path(folder).iterdir()
             if f.suffix.lower() in _IMAGE_FORMATS and not f.name.startswith(".") and f.is_file()]
    return sorted(files, key=_natural_key)


def _png_chunks_fit(data: bytes) -> bool:
    """Whether a PNG's chunks all lie inside the file, up to IEND.

    OpenCV 4.11 trusts a corrupt chunk length: a PNG signature followed by garbage makes it
    allocate ~1.7 GB and spend seconds before failing. Walking the chunk headers costs microseconds.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > len(data):
            return False
        if kind == b"IEND":
            return True
    return False


def read_image(file: Path, index: int, keep_alpha: bool = False) -> np.ndarray:
    """Read one image as RGB (RGBA with keep_alpha: a swap's overlay layers), keeping its bit
    depth; `index` is the frame number errors name.

    np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows.
    """
    try:
        data = np.fromfile(str(file), dtype=np.uint8)
        if file.suffix.lower() == ".png" and not _png_chunks_fit(data.tobytes()):
            image = None
        else:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (OSError, cv2.error) as err:
        raise MediaError(f"cannot read image {file} (frame {index}): {err}") from None
    if image is None:
        raise MediaError(f"cannot read image {file} (frame {index}): corrupt or not an image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if keep_alpha else cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.dtype == np.float16 or image.dtype == np.float64:
        image = image.astype(np.float32)
    return image


class ImageSequenceSource:
    """Frames of a folder of PNG, JPEG or EXR files, one image per frame in natural order.

    Images are read one at a time as they are iterated (memory stays flat); only the first is
    read up front, for the size. Frames keep their depth: uint8, uint16 (16-bit PNG) or float32
    (EXR, linear values untouched).
    """

    def __init__(self, path: Path, start: int, count: int | None) -> None:
        self._path = path
        files = image_files(path)
        if not files:
            raise MediaError(f"no images in {path} (looked for .png, .jpg, .jpeg, .exr)")
        formats = sorted({_IMAGE_FORMATS[f.suffix.lower()] for f in files})
        if len(formats) > 1:
            raise MediaError(
                f"mixed image formats in {path} ({', '.join(formats)}): keep one per folder"
            )
        self._files = files
        served = _clamp_range(path, len(self._files), start, count)
        first = self._read(start)
        self.info = SourceInfo(
            path=str(path),
            kind="images",
            fps=DEFAULT_FPS,
            width=first.shape[1],
            height=first.shape[0],
            frame_count=len(self._files),
            start=start,
            count=served,
        )

    @property
    def files(self) -> list[Path]:
        """The sorted image files of the whole sequence (index = frame index)."""
        return list(self._files)

    def __len__(self) -> int:
        return self.info.count

    def __iter__(self) -> Iterator[Frame]:
        """Yield (frame_index, RGB frame); every image must match the first one's size."""
        for index in range(self.info.start, self.info.start + self.info.count):
            image = self._read(index)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise MediaError(
                    f"image {self._files[index]} (frame {index})"
                    f" is {image.shape[1]}x{image.shape[0]},"
                    f" the sequence is {self.info.width}x{self.info.height}"
                )
            yield index, image

    def _read(self, index: int) -> np.ndarray:
        return read_image(self._files[index], index)

    def close(self) -> None:
        """Nothing stays open between reads; here for symmetry with MovieSource."""

    def __enter__(self) -> "ImageSequenceSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FrameSource = Union[MovieSource, ImageSequenceSource]


def source_fingerprint(info: SourceInfo) -> dict[str, Any]:
    """What identifies the source: path, size and mtime (summed / latest over an image folder)."""
    path = Path(info.path)
    if path.is_dir():
        stats = [p.stat() for p in path.iterdir() if p.is_file()]
        size, mtime = sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0)
    else:
        stat = path.stat()
        size, mtime = stat.st_size, stat.st_mtime
    return {"path": str(path.resolve()), "kind": info.kind, "size": size, "mtime": mtime, "fps": info.fps,
            "width": info.width, "height": info.height, "frame_count": info.frame_count}
