"""Frame sources on real footage: ranges are frame-exact, depths survive, bad input says why.

The shared footage lives outside the repository (../shared/faces); generated media go to
tmp_path. References are decoded with plain PyAV, sequentially from the top, so a seek that
lands one frame off shows up as a pixel mismatch.
"""

from __future__ import annotations

import hashlib
import os

os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"  # before cv2 writes EXR: the codec is off by default

import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.errors import MediaError
from core.media import BLENDER_SWS_FLAGS, ImageSequenceSource, MovieSource, SourceInfo, open_source

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
VIDEO = FACES / "video"
D18 = VIDEO / "liveportrait_d18.mp4"  # 216 frames, 30 fps (README says 25), one keyframe
HDTF = VIDEO / "hdtf_WDA_KatieHill_000.mp4"  # 200 frames, a keyframe every 12
HAMILTON = VIDEO / "face_recognition_short_hamilton_clip.mp4"  # start_time != 0, audio, 29.97

def _digest(frame: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _reference(path: Path, keep: set[int] = frozenset(), upto: int | None = None):
    """Digests of every frame (decoded sequentially with PyAV, converted as Blender converts) and
    the arrays of `keep`."""
    digests: list[str] = []
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if upto is not None and i >= upto:
                break
            rgb = frame.reformat(format="rgb24", interpolation=BLENDER_SWS_FLAGS).to_ndarray()
            digests.append(_digest(rgb))
            if i in keep:
                kept[i] = rgb
    return digests, kept


@pytest.fixture(scope="module")
def d18_ref():
    return _reference(D18, keep=set(range(12)))


def _write_clip(path: Path, frames: int, size: int, *, gop: int = 250, bframes: int = 0,
                rate: int = 25) -> None:
    """An H.264 clip whose frames differ (a running level plus noise), written fast."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "bf": str(bframes),
                          "sc_threshold": "0"}
        image = np.zeros((size, size, 3), np.uint8)
        for i in range(frames):
            image[:] = (i * 5) % 256
            image[: size // 4, : size // 4] = rng.integers(0, 256, (size // 4, size // 4, 3))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------- movies


def test_movie_info_and_full_iteration(d18_ref):
    digests, _ = d18_ref
    with open_source(D18) as source:
        assert isinstance(source, MovieSource)
        assert source.info == SourceInfo(path=str(D18), kind="movie", fps=30.0, width=480,
                                         height=480, frame_count=216, start=0, count=216)
        assert len(source) == 216
        seen = []
        for index, frame in source:
            assert frame.shape == (480, 480, 3) and frame.dtype == np.uint8
            assert _digest(frame) == digests[index]
            seen.append(index)
    assert seen == list(range(216))


@pytest.mark.parametrize("start,count", [(50, 40), (150, 5), (0, 3), (213, None)])
def test_movie_subrange_is_frame_exact(d18_ref, start, count):
    digests, _ = d18_ref
    with open_source(D18, start=start, count=count) as source:
        got = list(source)
    end = 216 if count is None else start + count
    assert [i for i, _ in got] == list(range(start, end))
    assert [_digest(f) for _, f in got] == digests[start:end]


@pytest.mark.parametrize("path,start", [(HDTF, 150), (HAMILTON, 165)])
def test_movie_subrange_inside_later_gop(path, start):
    digests, _ = _reference(path, upto=start + 5)
    with open_source(path, start=start, count=5) as source:
        got = list(source)
    assert [i for i, _ in got] == list(range(start, start + 5))
    assert [_digest(f) for _, f in got] == digests[start:]


@pytest.mark.parametrize("ext", ["mp4", "mkv", "ts", "avi"])
def test_every_start_with_bframes_and_short_gops(tmp_path, ext):
    """B-frames make decode order differ from display order; MPEG-TS seeks coarsely and AVI
    garbles B-frame timestamps: every start must still give exactly its own frames."""
    path = tmp_path / f"clip.{ext}"
    _write_clip(path, frames=40, size=32, gop=8, bframes=3)
    digests, _ = _reference(path)
    assert len(digests) == 40
    with open_source(path) as whole:
        assert whole.info.frame_count == 40
    for start in range(40):
        with open_source(path, start=start, count=2) as source:
            got = list(source)
        end = min(start + 2, 40)
        assert [i for i, _ in got] == list(range(start, end)), f"start {start}"
        assert [_digest(f) for _, f in got] == digests[start:end], f"start {start}"


def test_movie_range_clamped_and_reiterable():
    with open_source(D18, start=200, count=100) as source:
        assert source.info.count == 16 and len(source) == 16
        first = [i for i, _ in source]
        second = [i for i, _ in source]
    assert first == second == list(range(200, 216))
    with pytest.raises(MediaError, match="beyond the end"):
        open_source(D18, start=216)


def test_timestamp_gap_is_filled_to_the_promised_count(tmp_path):
    """A frame missing from the timeline (variable rate, a dropped frame) must not shorten the
    range: the previous picture fills the slot, as a constant-rate timeline shows it."""
    path = tmp_path / "gap.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "bf": "0"}
        for k, pts in enumerate([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]):  # no frame at 4
            image = np.full((32, 32, 3), k * 20, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_source(path) as source:
        got = [index for index, _ in source]
        assert got == list(range(source.info.count)) and source.info.count == 12


def test_memory_stays_flat_over_a_long_clip(tmp_path):
    path = tmp_path / "long.mp4"
    # 256 px frames (192 KB each): a source that kept one frame in a hundred would grow by
    # 80 MB over the 4,500 frames measured, far above the allocator's per-thread noise (a few
    # MB, which at 64 px frames was the same size as a real leak).
    _write_clip(path, frames=5_000, size=256)
    with open_source(path) as source:
        assert source.info.frame_count == 5_000
        after_500 = None
        n = 0
        for index, _frame in source:
            n += 1
            if n == 500:
                after_500 = _rss_bytes()
        after_all = _rss_bytes()
    assert n == 5_000 and index == 4_999
    growth = after_all - after_500
    assert growth < 40 * 2**20, f"RSS grew {growth / 2**20:.1f} MB from frame 500 to 5,000"


# -------------------------------------------------------------------------- image sequences


def test_png_sequence_natural_order(tmp_path, d18_ref):
    _, frames = d18_ref
    for i in range(12):  # f_1.png .. f_12.png: plain string order would put f_10 after f_1
        cv2.imwrite(str(tmp_path / f"f_{i + 1}.png"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")  # ignored
    with open_source(tmp_path) as source:
        assert isinstance(source, ImageSequenceSource)
        assert source.info == SourceInfo(path=str(tmp_path), kind="images", fps=25.0, width=480,
                                         height=480, frame_count=12, start=0, count=12)
        assert [p.name for p in source.files][:3] == ["f_1.png", "f_2.png", "f_3.png"]
        got = list(source)
    assert [i for i, _ in got] == list(range(12))
    for i, frame in got:
        assert frame.dtype == np.uint8 and np.array_equal(frame, frames[i])
    with open_source(tmp_path, start=9) as tail:
        assert [i for i, _ in tail] == [9, 10, 11] and len(tail) == 3


def test_png_16bit_sequence_stays_uint16(tmp_path):
    rng = np.random.default_rng(1)
    written = [rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16) for _ in range(3)]
    for i, rgb in enumerate(written):
        cv2.imwrite(str(tmp_path / f"deep_{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    with open_source(tmp_path) as source:
        assert (source.info.width, source.info.height) == (30, 20)
        got = list(source)
    assert len(got) == 3
    for (i, frame), rgb in zip(got, written):
        assert frame.dtype == np.uint16 and np.array_equal(frame, rgb)


def test_exr_sequence_is_float32(tmp_path):
    rng = np.random.default_rng(2)
    written = [rng.uniform(-0.5, 8.0, (16, 24, 3)).astype(np.float32) for _ in range(3)]
    for i, rgb in enumerate(written):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(tmp_path / f"render_{i + 1}.exr"), bgr)
    with open_source(tmp_path, start=1) as source:
        got = list(source)
    assert [i for i, _ in got] == [1, 2]
    for i, frame in got:
        assert frame.dtype == np.float32 and np.array_equal(frame, written[i])


def test_jpeg_and_mixed_formats(tmp_path, d18_ref):
    _, frames = d18_ref
    cv2.imwrite(str(tmp_path / "a_1.jpg"), frames[0])
    cv2.imwrite(str(tmp_path / "a_2.jpeg"), frames[1])  # .jpg and .jpeg are one format
    with open_source(tmp_path) as source:
        got = [(i, f.dtype, f.shape) for i, f in source]
    assert got == [(0, np.uint8, (480, 480, 3)), (1, np.uint8, (480, 480, 3))]
    cv2.imwrite(str(tmp_path / "a_3.png"), frames[2])
    with pytest.raises(MediaError, match="mixed image formats"):
        open_source(tmp_path)


# ------------------------------------------------------------------------------ bad input


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file.*nothing.mp4"):
        open_source(tmp_path / "nothing.mp4")


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a movie\n" * 20)
    with pytest.raises(MediaError, match="not a video: .*notes.mp4"):
        open_source(fake)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(16000))
    with pytest.raises(MediaError, match="no video stream in .*tone.wav"):
        open_source(path)


def test_empty_folder(tmp_path):
    with pytest.raises(MediaError, match="no images in"):
        open_source(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_png_in_sequence_is_named(tmp_path, d18_ref, damage):
    _, frames = d18_ref
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"f_{i + 1}.png"), frames[i])
    bad = tmp_path / "f_5.png"
    if damage == "garbage":  # a signature, then a chunk length of 1.7 GB: OpenCV would allocate it
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    else:  # a render interrupted while writing
        bad.write_bytes(bad.read_bytes()[:20_000])
    with open_source(tmp_path) as source:
        got = []
        with pytest.raises(MediaError, match=r"f_5\.png \(frame 4\)"):
            for index, _ in source:
                got.append(index)
    assert got == [0, 1, 2, 3]


def _iterate_expecting_error(path: Path) -> tuple[int, str]:
    """Frames served before the MediaError, and its message (opening may already fail)."""
    served = 0
    with pytest.raises(MediaError) as excinfo:
        with open_source(path) as source:
            for _ in source:
                served += 1
    return served, str(excinfo.value)


def test_truncated_mp4(tmp_path):
    """d18 keeps its index (moov) at the end: cut at 60 %, the index is gone."""
    data = D18.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    _, message = _iterate_expecting_error(cut)
    assert str(cut) in message


def test_truncated_faststart_mp4_reports_where_it_ended(tmp_path):
    """With the index in front the file opens and promises 216 frames; the data runs out."""
    faststart = tmp_path / "faststart.mp4"
    with av.open(str(D18)) as src, \
            av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    data = faststart.read_bytes()
    cut = tmp_path / "faststart_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with open_source(cut) as source:
        assert source.info.count == 216
    served, message = _iterate_expecting_error(cut)
    assert 0 < served < 216
    # FFmpeg 7.1 (av 15.1) reports the cut as invalid data at that frame; FFmpeg 8 as an early end.
    assert str(cut) in message and (f"ended at frame {served}, expected 216 frames" in message
                                    or f"cannot decode {cut} at frame {served}:" in message)


def test_corrupt_bytes_mid_movie_name_the_frame(tmp_path):
    data = bytearray(D18.read_bytes())
    middle = len(data) // 2
    noise = np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8)
    data[middle: middle + 20_000] = noise.tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    served, message = _iterate_expecting_error(damaged)
    assert str(damaged) in message and f"frame {served}" in message


def test_image_of_another_size_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "s_1.png"), np.zeros((10, 10, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "s_2.png"), np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(MediaError, match=r"s_2\.png \(frame 1\) is 10x12, the sequence is 10x10"):
        list(open_source(tmp_path))
    with pytest.raises(MediaError, match="beyond the end"):
        open_source(tmp_path, start=2)
