"""face-alignment backend: S3FD detection + 2DFAN4 68-point landmarks, batched over frames.

Why not just call `FaceAlignment.get_landmarks_from_batch`: in face-alignment 1.5.0 it runs
the landmark network frame by frame (one face per forward pass with the default
`max_batch_size=1`) and truncates every landmark to whole pixels (`transform_np` returns int32).
So detection uses the library's batch API (`SFDDetector.detect_from_batch` on one stacked
tensor) and the landmark step is done here with the library's own crop, flip and heatmap
decoding, but with the faces of all frames in one forward pass and float coordinates.

Safety: the library's default S3FD loading goes through `torch.hub.load_state_dict_from_url`,
whose `weights_only` defaults to False (a full unpickle). We hand the detector an explicit path
instead, which makes it call `torch.load(path, weights_only=True)`; 2DFAN4 is loaded by the
library with `weights_only=True` already. This module itself never calls `torch.load`.
`compile=False` also keeps the library from loading its torch.compile cache artifacts.

`face_alignment` takes seconds to import, so it is imported only when a FanAligner is built.
"""
from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import AlignerError
from core.faces.base import Face
from core.network import OFFLINE_ENV, offline

# The files face-alignment 1.5.0 fetches into <torch hub dir>/checkpoints on first use.
# Kept here so that whether they are cached can be answered without importing face_alignment;
# FanAligner checks them against the installed library's own URLs.
WEIGHT_URLS: dict[str, str] = {
    "s3fd": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    "2DFAN-4": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}
DOWNLOAD_HOST = "www.adrianbulat.com"

Box = Sequence[float]  # (x0, y0, x1, y1) or (x0, y0, x1, y1, score), source pixels


def weights_dir() -> Path:
    """Where torch.hub (and so face-alignment) caches downloaded weights; follows TORCH_HOME."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_files() -> dict[str, Path]:
    """The real cache path of each weight file, cached or not."""
    folder = weights_dir()
    return {key: folder / os.path.basename(urllib.parse.urlparse(url).path) for key, url in WEIGHT_URLS.items()}


def missing_weights() -> list[Path]:
    return [path for path in weight_files().values() if not path.is_file()]


def download_host_reachable(timeout: float = 2.0) -> bool:
    """True when a TCP connection to the weights' host (or the HTTPS proxy) opens within `timeout`.

    Runs in a daemon thread joined with the timeout, because name resolution ignores socket
    timeouts and can stall for many seconds on a machine without internet.
    """
    host, port = DOWNLOAD_HOST, 443
    proxy = urllib.request.getproxies().get("https")
    if proxy:
        parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            host, port = parsed.hostname, parsed.port or 80
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="fan-weights-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def ensure_weights() -> dict[str, Path]:
    """Paths of both weight files, downloading the missing ones; AlignerError when impossible."""
    files = weight_files()
    missing = [key for key, path in files.items() if not path.is_file()]
    if missing and offline():
        raise AlignerError(
            f"face-alignment weights {', '.join(files[k].name for k in missing)} are not cached in {weights_dir()} "
            f"and the core is offline ({OFFLINE_ENV}=1, e.g. Blender's Allow Online Access is off): use --aligner "
            "dlib, allow online access once, or copy the files there")
    if missing and not download_host_reachable():
        raise AlignerError(
            f"face-alignment weights {', '.join(files[k].name for k in missing)} are not cached in "
            f"{weights_dir()} and {DOWNLOAD_HOST} is unreachable (use --aligner dlib, or copy the files there)"
        )
    for key in missing:
        import torch.hub

        files[key].parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(WEIGHT_URLS[key], str(files[key]), progress=False)
        except Exception as exc:
            raise AlignerError(f"could not download {WEIGHT_URLS[key]}: {_one_line(exc)}") from exc
    return files


class FanAligner:
    """S3FD + 2DFAN4 from face-alignment. `detect` takes frames of one video (equal sizes run as
    one batch; a size change just starts a new batch) and optional boxes to fit landmarks to.

    batch_size: frames per S3FD forward pass (memory: S3FD is VGG16 at full frame resolution).
    fan_batch_size: face crops (256 px) per 2DFAN4 forward pass.
    flip_input: also run 2DFAN4 on the mirrored crop and sum the heatmaps (the library's default
    test-time augmentation; twice the landmark cost, which is small next to S3FD's).
    """

    name = "fan"

    def __init__(
        self,
        device: str = "cpu",
        batch_size: int = 8,
        fan_batch_size: int = 32,
        flip_input: bool = True,
        filter_threshold: float = 0.5,
    ) -> None:
        try:
            import face_alignment
            import face_alignment.api as fa_api
            from face_alignment import utils as fa_utils
            from face_alignment.detection.sfd import sfd_detector
        except ImportError as exc:
            raise AlignerError(f"the fan aligner needs face-alignment (pip install face-alignment): {exc}") from exc
        theirs = {"s3fd": sfd_detector.models_urls.get("s3fd"), "2DFAN-4": fa_api.models_urls.get("2DFAN-4")}
        if theirs != WEIGHT_URLS:
            version = getattr(face_alignment, "__version__", "?")
            raise AlignerError(f"face-alignment {version} uses other weight files than 1.5.0 ({theirs}); install face-alignment==1.5.0")
        files = ensure_weights()
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._fa = face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D,
                    device=device,
                    flip_input=flip_input,
                    face_detector="sfd",
                    face_detector_kwargs={"path_to_detector": str(files["s3fd"]), "filter_threshold": filter_threshold},
                    compile=False,
                )
        except Exception as exc:  # corrupt or foreign weight files, unusable device
            raise AlignerError(f"could not load face-alignment weights from {weights_dir()}: {_one_line(exc)}") from exc
        self._torch = torch
        self._utils = fa_utils
        self.device = device
        self.batch_size = max(1, batch_size)
        self.fan_batch_size = max(1, fan_batch_size)
        self.flip_input = flip_input

    def detect(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[Box]] | None = None) -> list[list[Face]]:
        """Faces per frame. With `boxes` (one list per frame) S3FD is skipped and exactly one Face
        per given box comes back, scored by the box's 5th value or 1.0."""
        if boxes is not None and len(boxes) != len(frames):
            raise ValueError(f"{len(boxes)} box lists for {len(frames)} frames")
        out: list[list[Face]] = []
        for start, stop in self._batches(frames):
            chunk = [np.ascontiguousarray(f) for f in frames[start:stop]]
            if boxes is None:
                dets = self._detect_boxes(chunk)
            else:
                dets = [_as_dets(b) for b in boxes[start:stop]]
            out.extend(self._fit(chunk, dets))
        return out

    def _batches(self, frames: Sequence[np.ndarray]) -> list[tuple[int, int]]:
        """Runs of equal frame shape, at most batch_size long (a batch must stack into one tensor)."""
        runs: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or i - start >= self.batch_size or frames[i].shape != frames[start].shape:
                runs.append((start, i))
                start = i
        return runs

    def _detect_boxes(self, chunk: list[np.ndarray]) -> list[np.ndarray]:
        """S3FD on the chunk as one (B, 3, H, W) RGB 0..255 tensor (the library flips to BGR)."""
        torch = self._torch
        batch = torch.from_numpy(np.stack(chunk)).to(self.device).permute(0, 3, 1, 2).float()
        found = self._fa.face_detector.detect_from_batch(batch)
        return [np.asarray(list(f), dtype=np.float64).reshape(-1, 5) for f in found]

    def _fit(self, chunk: list[np.ndarray], dets: list[np.ndarray]) -> list[list[Face]]:
        """2DFAN4 on every box of the chunk in shared forward passes; landmarks in source pixels."""
        torch, utils = self._torch, self._utils
        ref_scale = self._fa.face_detector.reference_scale
        centers, scales, crops, owner = [], [], [], []
        for i, (frame, d) in enumerate(zip(chunk, dets)):
            for x0, y0, x1, y1 in d[:, :4]:
                # The library's own box -> (center, scale) rule, which 2DFAN4 was trained for.
                center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 - (y1 - y0) * utils.CENTER_Y_OFFSET])
                scale = (x1 - x0 + y1 - y0) / ref_scale
                centers.append(center)
                scales.append(scale)
                crops.append(utils.crop(frame, center, scale).transpose(2, 0, 1))
                owner.append(i)
        faces: list[list[Face]] = [[] for _ in chunk]
        if not crops:
            return faces
        heatmaps = []
        with torch.inference_mode():
            for s in range(0, len(crops), self.fan_batch_size):
                inp = torch.from_numpy(np.stack(crops[s : s + self.fan_batch_size])).to(self.device).float().div_(255.0)
                hm = self._fa.face_alignment_net(inp)[-1]
                if self.flip_input:
                    hm = hm + utils.flip(self._fa.face_alignment_net(utils.flip(inp))[-1], is_label=True)
                heatmaps.append(hm.float().cpu().numpy())
        hms = np.ascontiguousarray(np.concatenate(heatmaps))
        preds, _, _ = utils.get_preds_fromhm(hms, None, None)  # (N, 68, 2) heatmap coords, float
        res = hms.shape[-1]
        counters = [0] * len(chunk)
        for k, i in enumerate(owner):
            # The inverse of utils.transform_np, without its int32 truncation.
            pts = (preds[k].astype(np.float64) / res - 0.5) * (utils.SCALE_FACTOR * scales[k]) + centers[k]
            row = dets[i][counters[i]]
            counters[i] += 1
            score = float(row[4]) if row.shape[0] > 4 and np.isfinite(row[4]) else 1.0
            faces[i].append(Face(box=tuple(float(v) for v in row[:4]), score=score, landmarks=pts))
        return faces


def _as_dets(frame_boxes: Sequence[Box]) -> np.ndarray:
    """Given boxes -> (N, 5) array; a missing score becomes NaN (read as 1.0 above)."""
    rows = []
    for b in frame_boxes:
        v = [float(x) for x in b]
        if len(v) not in (4, 5):
            raise ValueError(f"a box is (x0, y0, x1, y1[, score]), got {b!r}")
        rows.append(v + [float("nan")] * (5 - len(v)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)
