"""Frame sinks for the swap's output: image sequences (PNG 8/16-bit, RGBA for overlays, EXR) and
movies (H.264 through PyAV).

Image sequences are one file per source frame, named by the source frame number, each written
atomically: a rerun skips the frames already there (resume), and a render farm can split a shot
into ranges with no extra machinery. A movie cannot be appended to, so it is written to a
temporary file and renamed when complete; a killed movie job starts over.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read when OpenCV first touches an EXR

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.atomic import write_atomic  # noqa: E402
from core.errors import MediaError  # noqa: E402
from core.provenance import Labeller  # noqa: E402
from core.provenance.plain import PNG_SIGNATURE  # noqa: E402

Format = Literal["png", "exr", "mp4"]
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk, last in every whole PNG
MP4_CRF = 12  # visually lossless for faces; the editor re-encodes the final cut anyway


class ImageSequenceSink:
    """Frames as files; with a labeller, each PNG carries plain labels and Content Credentials and
    each EXR plain header labels (the frame folder's sidecar is the swap's to write: it lists the
    frames of every job that shares the folder)."""

    def __init__(self, folder: Path, fmt: Literal["png", "exr"], bit_depth: int = 8, prefix: str = "frame_",
                 labeller: Labeller | None = None):
        if fmt == "png" and bit_depth not in (8, 16):
            raise ValueError("PNG bit depth is 8 or 16")
        self.folder, self.fmt, self.bit_depth, self.prefix = Path(folder), fmt, bit_depth, prefix
        self.labeller = labeller
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, index: int) -> Path:
        return self.folder / f"{self.prefix}{index:06d}.{self.fmt}"

    def done(self, index: int) -> bool:
        """Whether frame `index` is on disk whole. Frames are renamed into place complete, but a
        power cut (no fsync per frame) or a hand-copied folder can leave an empty or torn file:
        such a frame is written again, not trusted."""
        path = self.path(index)
        try:
            if self.fmt == "png":
                size = path.stat().st_size
                with open(path, "rb") as f:
                    head = f.read(8)
                    f.seek(max(0, size - 12))
                    tail = f.read(12)
                return head == PNG_SIGNATURE and tail == _PNG_END
            return path.is_file() and cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None
        except OSError:
            return False

    def write(self, index: int, frame: np.ndarray) -> None:
        """frame: RGB or RGBA; uint8/uint16 for PNG (converted to the sink's depth), float32 for EXR."""
        path = self.path(index)
        if self.fmt == "exr":
            attributes = self.labeller.exr_attributes() if self.labeller is not None else {}
            write_atomic(path, lambda tmp: write_exr(tmp, _to_float(frame), attributes), durable=False)
            return
        frame = _to_depth(frame, self.bit_depth)
        code = cv2.COLOR_RGBA2BGRA if frame.shape[2] == 4 else cv2.COLOR_RGB2BGR
        ok, data = cv2.imencode(".png", cv2.cvtColor(frame, code))
        if not ok:
            raise MediaError(f"could not encode {path}")
        png = data.tobytes()
        if self.labeller is not None:
            png = self.labeller.png(png, path.name)
        write_atomic(path, png, durable=False)

    def close(self) -> None:
        pass

    def outputs(self) -> list[str]:
        return [str(self.folder)]


@dataclass(frozen=True)
class AudioSpan:
    """The stretch of a movie's sound that goes with the frames a movie sink writes: from `start`
    seconds, for `duration` seconds."""

    path: Path
    start: float
    duration: float


class MovieSink:
    """An H.264 movie, with the source's sound for the same stretch when it has any (the audio
    packets are copied, not re-encoded: an AAC packet is 1024 samples, so a range's sound starts
    within 23 ms of its first frame)."""

    def __init__(self, path: Path, fps: float, width: int, height: int, audio: AudioSpan | None = None,
                 labeller: Labeller | None = None):
        self.path = Path(path)
        self.labeller = labeller
        # Unique per job: two jobs never share a temporary movie (core.outputs removes the ones
        # a killed job left, under the output's lock).
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.partial.mp4")
        self.container = av.open(str(self.tmp), "w")
        if labeller is not None:
            self.container.metadata.update(labeller.movie_tags())
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        # 4:2:0 needs even sizes; odd ones keep full chroma instead of losing a pixel row.
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"crf": str(MP4_CRF), "preset": "medium"}
        self.audio, self.audio_source = audio, None
        if audio is not None:
            source = av.open(str(audio.path))
            if source.streams.audio:
                self.audio_source = source
                self.audio_stream = self.container.add_stream_from_template(source.streams.audio[0])
            else:
                source.close()

    def _mux_audio(self) -> None:
        """The sound's packets of the span, shifted to start with the movie. Called once the first
        video packet is out (the movie's header needs the video encoder's parameters); the muxer
        interleaves them."""
        source, span = self.audio_source, self.audio
        if source is None or span is None:
            return
        self.audio_source = None
        try:
            stream = source.streams.audio[0]
            base = stream.time_base
            shift = int(round(span.start / base))
            end = span.start + span.duration
            for packet in source.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                t = float(packet.pts * base)
                if t < span.start - 1e-6 or t >= end - 1e-6:
                    continue
                packet.pts -= shift
                packet.dts = packet.pts if packet.dts is None else packet.dts - shift
                packet.stream = self.audio_stream
                self.container.mux(packet)
        finally:
            source.close()

    def done(self, index: int) -> bool:
        return False

    def write(self, index: int, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_to_depth(frame[..., :3], 8)), format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
            self._mux_audio()

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
            self._mux_audio()
        self.container.close()
        if self.labeller is not None and self.labeller.enabled:
            signed = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.partial.mp4")
            try:
                self.labeller.sign_movie(self.tmp, signed, self.path.name)
                os.replace(signed, self.tmp)
            finally:
                signed.unlink(missing_ok=True)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
            if self.audio_source is not None:
                self.audio_source.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def outputs(self) -> list[str]:
        return [str(self.path)]


def _to_depth(frame: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        if frame.dtype == np.uint8:
            return frame
        if frame.dtype == np.uint16:
            return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
    if frame.dtype == np.uint16:
        return frame
    if frame.dtype == np.uint8:
        return frame.astype(np.uint16) * 257
    return np.round(np.clip(frame, 0, 1) * 65535).astype(np.uint16)


def write_exr(path: Path, frame: np.ndarray, attributes: dict[str, str] | None = None) -> None:
    """A float32 RGB(A) EXR, ZIP-compressed (OpenCV's defaults, which wrote our EXRs before), with
    string header attributes; OpenEXR's own writer, since OpenCV cannot write header attributes."""
    import OpenEXR

    channels = "RGBA" if frame.shape[2] == 4 else "RGB"
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **(attributes or {})}
    with OpenEXR.File(header, {channels: np.ascontiguousarray(frame, dtype=np.float32)}) as f:
        f.write(str(path))


def _to_float(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) / 65535
    return frame.astype(np.float32)


def open_sink(out: Path, fmt: Format, fps: float, width: int, height: int, bit_depth: int = 8,
              audio: AudioSpan | None = None, labeller: Labeller | None = None):
    """A sink for a swap's frames; `audio` (a movie's sound for the span) goes into a movie only."""
    if fmt == "mp4":
        out.parent.mkdir(parents=True, exist_ok=True)
        return MovieSink(out, fps, width, height, audio, labeller)
    return ImageSequenceSink(out, fmt, bit_depth, labeller=labeller)
