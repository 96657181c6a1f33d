"""Labelling files another program wrote: the sequencer render of a shot that holds a swapped
strip (Blender's movie or frames). The same labels a swap writes, added in place; each file is
replaced whole (written beside it, then renamed), never left half-labelled.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.atomic import write_atomic
from core.errors import DeepfakeError
from core.provenance import Labeller, plain, sequence
from core.sinks import write_exr

IMAGES = (".png", ".jpg", ".jpeg", ".exr")
MOVIES = (".mp4", ".m4v", ".mov")


def label_files(paths: list[Path], labeller: Labeller) -> list[Path]:
    """Label every file; frames (images) also go into their folder's sidecar. Refuses, before
    touching any, a list with a missing file or a kind we cannot label."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise DeepfakeError(f"{p} does not exist: nothing to label")
        if p.suffix.lower() not in IMAGES + MOVIES:
            raise DeepfakeError(f"{p.name}: cannot label a {p.suffix or 'suffix-less'} file; render PNG, JPEG, EXR "
                                "frames or an MPEG-4 / QuickTime movie to have it labelled")
    for p in paths:
        suffix = p.suffix.lower()
        if suffix == ".png":
            if not plain.read_png_text(p).get(plain.AI_MODIFIED):
                write_atomic(p, labeller.png(p.read_bytes(), p.name))
        elif suffix in (".jpg", ".jpeg"):
            write_atomic(p, labeller.jpeg(p.read_bytes(), p.name))
        elif suffix == ".exr":
            _label_exr(p, labeller)
        else:
            _label_movie(p, labeller)
    frames = [p for p in paths if p.suffix.lower() in IMAGES]
    for folder in sorted({p.parent for p in frames}):
        sequence.update(folder, [p for p in frames if p.parent == folder], labeller.values,
                        labeller.credentials_text())
    return paths


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
            labeller.sign_movie(tagged, signed)
            os.replace(signed, path)
        else:
            os.replace(tagged, path)
    finally:
        tagged.unlink(missing_ok=True)
        signed.unlink(missing_ok=True)
