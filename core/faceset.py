"""A faceset on disk: aligned PNG crops in `faces/` plus `alignments.json`.

The JSON is the only thing a reader trusts: a crop counts once its frame is recorded there, and
both are written atomically (temporary file, then rename), so a job killed at any moment leaves
a faceset that loads and resumes. Plain JSON and PNG: safe to open whoever made them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from core.atomic import write_atomic
from core.errors import FacesetError
from core.faces.align import transform_points

if TYPE_CHECKING:
    from core.faces.identity import FaceDescriber

FORMAT = "blender-deepfake-faceset"
VERSION = 1
ALIGNMENTS = "alignments.json"
CROPS = "faces"


@dataclass
class FaceRecord:
    """One aligned face. landmarks: (68, 2) source pixels; matrix: 2x3, source -> crop pixels."""

    index: int
    file: str
    box: list[float]
    score: float
    landmarks: np.ndarray
    matrix: np.ndarray
    blur: float

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "file": self.file,
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks],
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "blur": round(float(self.blur), 3),
        }


@dataclass
class Faceset:
    folder: Path
    source: dict[str, Any]
    start: int
    count: int
    settings: dict[str, Any]
    frames: dict[int, list[FaceRecord]] = field(default_factory=dict)
    complete: bool = False

    @property
    def alignments_path(self) -> Path:
        return self.folder / ALIGNMENTS

    def crop_name(self, frame: int, index: int) -> str:
        return f"{CROPS}/{frame:06d}_{index}.png"

    def faces(self) -> list[tuple[int, FaceRecord]]:
        """Every face, in frame order."""
        return [(frame, face) for frame in sorted(self.frames) for face in self.frames[frame]]

    def spread_faces(self, n: int) -> list[tuple[int, FaceRecord]]:
        """Up to `n` faces spread evenly over the faceset (its person's look across the clip, not
        one moment's), in frame order; a faceset without faces is refused."""
        faces = self.faces()
        if not faces:
            raise FacesetError(f"{self.folder} holds no faces")
        return [faces[i] for i in np.linspace(0, len(faces) - 1, min(n, len(faces))).round().astype(int)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "range": {"start": self.start, "count": self.count},
            "settings": self.settings,
            "complete": self.complete,
            "frames": {str(f): [face.to_json() for face in self.frames[f]] for f in sorted(self.frames)},
        }

    def save(self) -> None:
        write_atomic(self.alignments_path, (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode())

    @classmethod
    def load(cls, folder: str | Path, check_crops: bool = True) -> "Faceset":
        folder = Path(folder)
        path = folder / ALIGNMENTS
        if not path.is_file():
            raise FacesetError(f"{folder} is not a faceset: no {ALIGNMENTS}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FacesetError(f"{path}: not readable JSON ({exc})") from None
        except RecursionError:  # a hostile file nested deeper than any faceset
            raise FacesetError(f"{path}: not a faceset (nested too deeply)") from None
        return cls._from_json(folder, data, check_crops)

    @classmethod
    def _from_json(cls, folder: Path, data: Any, check_crops: bool) -> "Faceset":
        where = folder / ALIGNMENTS
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FacesetError(f"{where}: not a {FORMAT} file")
        version = data.get("version")
        if version != VERSION:
            raise FacesetError(f"{where}: faceset format version {version!r}; this version of blender-deepfake reads version {VERSION}")
        try:
            source = _expect(data["source"], dict, "source")
            rng = _expect(data["range"], dict, "range")
            settings = _expect(data["settings"], dict, "settings")
            faceset = cls(folder=folder, source=source, start=_expect(rng["start"], int, "range.start"),
                          count=_expect(rng["count"], int, "range.count"), settings=settings,
                          complete=_expect(data.get("complete", False), bool, "complete"))
            for key, faces in _expect(data["frames"], dict, "frames").items():
                if not (key.isascii() and key.isdigit()):  # "²".isdigit() is True
                    raise FacesetError(f"frame key {key!r} is not a frame number")
                faceset.frames[int(key)] = [_face_from_json(face, f"frames.{key}") for face in _expect(faces, list, f"frames.{key}")]
        except KeyError as exc:
            raise FacesetError(f"{where}: missing field {exc}") from exc
        except FacesetError as exc:
            raise FacesetError(f"{where}: {exc}") from exc
        if check_crops:
            missing = [face.file for _, face in faceset.faces() if not (folder / face.file).is_file()]
            if missing:
                raise FacesetError(f"{where}: {len(missing)} crop(s) missing, first {folder / missing[0]}")
        return faceset


def _expect(value: Any, kind: type, what: str) -> Any:
    # bool is an int in Python; a count of True is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FacesetError(f"{what} should be {kind.__name__}, found {type(value).__name__}")
    return value


def _array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FacesetError(f"{what} should be numbers of shape {shape}") from exc
    if array.shape != shape or not np.isfinite(array).all():
        raise FacesetError(f"{what} should be finite numbers of shape {shape}, found shape {array.shape}")
    return array


def _face_from_json(face: Any, where: str) -> FaceRecord:
    _expect(face, dict, where)
    file = _expect(face["file"], str, f"{where}.file")
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise FacesetError(f"{where}.file {file!r} points outside the faceset")
    return FaceRecord(
        index=_expect(face["index"], int, f"{where}.index"),
        file=file,
        box=list(_array(face["box"], (4,), f"{where}.box")),
        score=float(_array(face["score"], (), f"{where}.score")),
        landmarks=_array(face["landmarks"], (68, 2), f"{where}.landmarks"),
        matrix=_array(face["matrix"], (2, 3), f"{where}.matrix"),
        blur=float(_array(face["blur"], (), f"{where}.blur")),
    )


def describe(folder: Path) -> dict[str, Any]:
    """What `deepfake inspect` says of a faceset (its crops checked: FacesetError if it is broken)."""
    faceset = Faceset.load(folder)
    faces = faceset.faces()
    blur = sorted(f.blur for _, f in faces)
    return {"kind": "faceset", "source": faceset.source.get("path"), "start": faceset.start, "count": faceset.count,
            "frames_done": len(faceset.frames), "complete": faceset.complete, "faces": len(faces),
            "no_face_frames": sum(1 for v in faceset.frames.values() if not v), "size": faceset.settings.get("size"),
            "median_blur": round(float(blur[len(blur) // 2]), 1) if blur else None}


def is_faceset(folder: Path) -> bool:
    return (Path(folder) / ALIGNMENTS).is_file()


def write_crop(path: Path, crop_rgb: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FacesetError(f"could not encode {path}")
    write_atomic(path, png.tobytes(), durable=False)


def read_crop(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FacesetError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clear(folder: Path) -> None:
    """Remove a faceset's own files (alignments and crops), nothing else in the folder."""
    (folder / ALIGNMENTS).unlink(missing_ok=True)
    shutil.rmtree(folder / CROPS, ignore_errors=True)


# -- the person a faceset shows: its mean face descriptor (core.faces.identity) ------------------------
def descriptor(folder: Path, describer: FaceDescriber, max_faces: int = 40) -> np.ndarray:
    """Mean descriptor of up to `max_faces` faces spread over the faceset."""
    descriptors = []
    for _, face in Faceset.load(folder).spread_faces(max_faces):
        crop = read_crop(folder / face.file)
        descriptors.append(describer.describe(crop, transform_points(face.landmarks, face.matrix)))
    return np.mean(descriptors, axis=0)


def cache_folder() -> Path:
    """The user's cache for derived data ($DEEPFAKE_CACHE, else $XDG_CACHE_HOME or ~/.cache):
    never a model folder, which a farm or a shipped model keeps read-only."""
    if os.environ.get("DEEPFAKE_CACHE"):
        return Path(os.environ["DEEPFAKE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blender-deepfake"


def cached_descriptor(folder: Path, describer: FaceDescriber) -> np.ndarray:
    """`descriptor`, cached per faceset state (path, size and mtime of its alignments):
    a re-extracted faceset gets a new entry. A cache that cannot be written is skipped."""
    stat = (Path(folder) / ALIGNMENTS).stat()
    key = hashlib.sha256(json.dumps([str(Path(folder).resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()
    path = cache_folder() / "descriptors" / f"{key[:32]}.json"
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, list) and len(cached) == 128 and all(isinstance(v, float) for v in cached):
            return np.asarray(cached)
    except (OSError, ValueError):
        pass
    value = descriptor(folder, describer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(value.tolist()).encode(), durable=False)
    except OSError:
        pass
    return value
