"""Plain labels: the same statement as the Content Credentials, in the metadata each format's own
readers show (exiftool, `ffprobe`, an EXR viewer's header panel, Nuke's metadata node).

Why beside C2PA: C2PA has no binding for EXR, and many tools a post house runs never look for a
manifest. A plain label is not signed (anyone can strip or forge it); it says, it does not prove.

    PNG   iTXt chunks after IHDR           AI-modified, Software, deepfake:model, deepfake:source
    JPEG  a COM segment after SOI          "AI-modified: face replaced; ..."
    EXR   string header attributes         the PNG's keys (OpenEXR writes them with the pixels)
    MP4   container tags comment, description
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

AI_MODIFIED = "AI-modified"
FACE_REPLACED = "face replaced"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fields(tool: str, version: str, model_id: str | None, source: Path | None) -> dict[str, str]:
    out = {AI_MODIFIED: FACE_REPLACED, "Software": f"{tool} {version}"}
    if model_id:
        out["deepfake:model"] = model_id
    if source is not None:
        out["deepfake:source"] = source.name
    return out


def sentence(values: dict[str, str]) -> str:
    """One line for a movie's comment or a JPEG comment."""
    rest = "; ".join(f"{k} {v}" for k, v in values.items() if k != AI_MODIFIED)
    return f"{AI_MODIFIED}: {values.get(AI_MODIFIED, FACE_REPLACED)}" + (f" ({rest})" if rest else "")


def movie_tags(values: dict[str, str]) -> dict[str, str]:
    text = sentence(values)
    return {"comment": text, "description": text}


# -- PNG ---------------------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def add_png_text(png: bytes, values: dict[str, str]) -> bytes:
    """`png` with an uncompressed iTXt chunk per value, right after IHDR."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    ihdr_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    chunks = b"".join(_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
                      for key, value in values.items())
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def read_png_text(path: Path) -> dict[str, str]:
    """tEXt and uncompressed iTXt entries (a label is never compressed: we write none so)."""
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            return out
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I", head[:4])[0], head[4:]
            if kind in (b"tEXt", b"iTXt"):
                data = f.read(length)
                key, _, rest = data.partition(b"\0")
                if kind == b"tEXt":
                    out[key.decode("latin-1")] = rest.decode("latin-1")
                elif rest[:1] == b"\0":  # not compressed
                    _, _, rest = rest[2:].partition(b"\0")   # language tag
                    _, _, text = rest.partition(b"\0")       # translated keyword
                    out[key.decode("latin-1")] = text.decode("utf-8", errors="replace")
                f.seek(4, 1)
            elif kind == b"IEND":
                break
            else:
                f.seek(length + 4, 1)
    return out


# -- JPEG --------------------------------------------------------------------------------------------------
def add_jpeg_comment(jpeg: bytes, text: str) -> bytes:
    """A COM segment after the leading APPn segments (JFIF's APP0 and Exif's APP1 must follow SOI)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and 0xE0 <= jpeg[at + 1] <= 0xEF:
        at += 2 + struct.unpack(">H", jpeg[at + 2:at + 4])[0]
    data = text.encode("utf-8")[:65533].decode("utf-8", errors="ignore").encode("utf-8")
    return jpeg[:at] + b"\xff\xfe" + struct.pack(">H", len(data) + 2) + data + jpeg[at:]


def read_jpeg_comments(path: Path) -> list[str]:
    out: list[str] = []
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return out
        while True:
            marker = f.read(2)
            if len(marker) < 2 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):  # end, or the image data
                break
            size = struct.unpack(">H", f.read(2))[0]
            data = f.read(size - 2)
            if marker[1] == 0xFE:
                out.append(data.decode("utf-8", errors="replace"))
    return out


# -- EXR ---------------------------------------------------------------------------------------------------
def read_exr_header(path: Path) -> dict[str, str]:
    """The string attributes of an EXR's header."""
    import OpenEXR

    with OpenEXR.File(str(path), header_only=True) as f:  # the header dict is emptied on close
        return {k: v for k, v in f.header().items() if isinstance(v, str)}


# -- movies ------------------------------------------------------------------------------------------------
def read_movie_tags(path: Path) -> dict[str, str]:
    import av

    with av.open(str(path)) as container:
        return dict(container.metadata)


def read(path: Path) -> dict[str, str]:
    """The plain label of a file: its AI-modified statement and the fields beside it, or {}."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        values = read_png_text(path)
    elif suffix in (".jpg", ".jpeg"):
        values = {"comment": c for c in read_jpeg_comments(path) if c.startswith(AI_MODIFIED)}
    elif suffix == ".exr":
        values = read_exr_header(path)
    elif suffix in (".mp4", ".m4v", ".mov"):
        values = {k: v for k, v in read_movie_tags(path).items() if k in ("comment", "description")}
    else:
        return {}
    labelled = values.get(AI_MODIFIED) or next((v for v in values.values() if v.startswith(AI_MODIFIED)), None)
    return values if labelled else {}
