"""Labelling files another program wrote: the sequencer render of a shot that holds a swapped
strip (Blender's movie or frames). The same labels a swap writes, added in place; each file is
replaced whole (written beside it, then renamed), never left half-labelled.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from core import outputs
from core.atomic import write_atomic
from core.errors import DeepfakeError
from core.provenance import Labeller, plain, sequence
from core.provenance.plain import PNG_SIGNATURE

IMAGES = (".png", ".jpg", ".jpeg", ".exr")
MOVIES = (".mp4", ".m4v", ".mov")
EXR_MAGIC = b"\x76\x2f\x31\x01"


def label_files(paths: list[Path], labeller: Labeller) -> list[Path]:
    """Label every file; frames (images) also go into their folder's sidecar. Refuses, before
    touching any, a list with a missing file, a kind we cannot label, or a file that is not what
    its name says; a file that turns out unreadable midway is named in one error (the files before
    it are labelled whole, the rest untouched)."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise DeepfakeError(f"{p} does not exist: nothing to label")
        suffix = p.suffix.lower()
        if suffix not in IMAGES + MOVIES:
            raise DeepfakeError(f"{p.name}: cannot label a {p.suffix or 'suffix-less'} file; render PNG, JPEG, EXR "
                                "frames or an MPEG-4 / QuickTime movie to have it labelled")
        with open(p, "rb") as f:
            head = f.read(8)
        jpeg = head.startswith(b"\xff\xd8")
        expected = {".png": head.startswith(PNG_SIGNATURE), ".exr": head.startswith(EXR_MAGIC), ".jpg": jpeg,
                    ".jpeg": jpeg}
        if not expected.get(suffix, True):
            raise DeepfakeError(f"{p} is not a {suffix[1:].upper()} file (its first bytes say otherwise)")
    for p in paths:
        try:
            _label(p, labeller)
        except DeepfakeError:
            raise
        except Exception as exc:  # noqa: BLE001 - OpenEXR, PyAV, the SDK: a damaged file, said in one line
            raise DeepfakeError(f"could not label {p}: {exc}") from None
    frames = [p for p in paths if p.suffix.lower() in IMAGES]
    for folder in sorted({p.parent for p in frames}):
        hashed = sequence.digests(p for p in frames if p.parent == folder)
        # Two renders into one folder (ranges of a shot on two machines) each add their frames.
        with outputs.file_lock(folder / sequence.NAME, f"the provenance sidecar of {folder}", wait=60.0):
            sequence.update(folder, hashed, labeller.values, labeller.signer_record())
    return paths


def _label(p: Path, labeller: Labeller) -> None:
    suffix = p.suffix.lower()
    if suffix == ".png":
        if not plain.read_png_text(p).get(plain.AI_MODIFIED):
            write_atomic(p, labeller.png(p.read_bytes(), p.name))
    elif suffix in (".jpg", ".jpeg"):
        if not any(c.startswith(plain.AI_MODIFIED) for c in plain.read_jpeg_comments(p)):
            write_atomic(p, labeller.jpeg(p.read_bytes(), p.name))
    elif suffix == ".exr":
        _label_exr(p, labeller)
    else:
        _label_movie(p, labeller)


def _label_exr(path: Path, labeller: Labeller) -> None:
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        if len(f.parts) != 1:
            raise DeepfakeError(f"{path.name}: a multi-part EXR; label single-part EXR frames only")
        header, channels = dict(f.header()), {name: c.pixels.copy() for name, c in f.channels().items()}
    header.update(labeller.exr_attributes())

    def write(tmp: Path) -> None:
        with OpenEXR.File(header, channels) as out:
            out.write(str(tmp))

    write_atomic(path, write)


def _label_movie(path: Path, labeller: Labeller) -> None:
    """The movie's streams copied (not re-encoded) into a new container with the tags, then
    signed, then renamed over the original."""
    import av

    token = secrets.token_hex(6)
    tagged = path.with_name(f".{path.name}.{token}.partial{path.suffix}")
    signed = path.with_name(f".{path.name}.{token}.signed{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(tagged), "w") as dst:
            dst.metadata.update({k: v for k, v in src.metadata.items() if k not in ("major_brand", "minor_version",
                                                                                   "compatible_brands")})
            dst.metadata.update(labeller.movie_tags())
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
            for packet in src.demux(*[s for s in src.streams if s.index in streams]):
                if packet.dts is None:
                    continue
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
        if labeller.enabled:
            labeller.sign_movie(tagged, signed, path.name)
            os.replace(signed, path)
        else:
            os.replace(tagged, path)
    finally:
        tagged.unlink(missing_ok=True)
        signed.unlink(missing_ok=True)
