"""Provenance: every frame and movie we write says that a face in it was replaced.

Three layers, because each reader looks in a different place:
- Content Credentials (C2PA), signed and tamper-evident, in PNG, JPEG and MP4/MOV
  (`content_credentials`), signed with the user's key or a local chain (`credentials`);
- plain labels in each format's own metadata, EXR included (`plain`), and a sidecar for a frame
  sequence (`sequence`);
- optionally a burned-in "AI-modified" for review copies, which a platform's re-encode that
  strips all metadata cannot remove (`Labeller.burn`).
Labelling is on by default (EU AI Act Art. 50 asks for machine-readable marking of manipulated
video); turning it off is explicit and logged. `verify` reads all of it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import VERSION
from core.provenance import content_credentials, credentials, plain

TOOL = "blender-deepfake"
VISIBLE_TEXT = "AI-modified"


@dataclass(frozen=True)
class LabelSettings:
    enabled: bool = True          # plain labels and Content Credentials on every output
    key: str | None = None        # the user's PEM signing key and certificate chain; None: the
    cert: str | None = None       # environment's (DEEPFAKE_C2PA_KEY/CERT), else the local chain
    visible: bool = False         # burn "AI-modified" into a corner of every written frame


class Labeller:
    """A job's labelling: made once (it loads the signing credentials, so a bad key fails before
    a frame is written), then asked for each output."""

    def __init__(self, settings: LabelSettings, source: Path | None, model_id: str | None):
        self.settings = settings
        self.source = Path(source) if source is not None else None
        self.values = plain.fields(TOOL, VERSION, model_id, self.source)
        self.model_id = model_id
        self.signer = content_credentials.Signer(credentials.resolve(settings.key, settings.cert)) \
            if settings.enabled else None

    @classmethod
    def start(cls, settings: LabelSettings, source: Path | None, model_id: str | None, events: Any) -> "Labeller":
        """A job's labeller, its choice logged through the job's events."""
        labeller = cls(settings, source, model_id)
        if labeller.signer is None:
            events.warning("labelling is off (--no-label): the outputs do not say that a face in them was replaced")
        else:
            events.log(f"labels: {labeller.credentials_text()}")
            loose = labeller.signer.credentials.loose_key_permissions()
            if loose:
                events.warning(loose)
        return labeller

    @property
    def enabled(self) -> bool:
        return self.signer is not None

    def credentials_text(self) -> str:
        c = self.signer.credentials if self.signer is not None else None
        if c is None:
            return "none"
        if c.local:
            return (f"Content Credentials signed with {c.source} (verifiers show them as valid but not trusted; "
                    "give your own key and certificate for trusted ones)")
        return f"Content Credentials signed with {c.source}"

    def claim(self, title: str) -> content_credentials.Claim:
        return content_credentials.Claim(title, TOOL, VERSION, self.source, self.model_id)

    # -- per format ----------------------------------------------------------------------------------
    def png(self, data: bytes, title: str) -> bytes:
        if not self.enabled:
            return data
        return self.signer.sign_bytes(plain.add_png_text(data, self.values), "image/png", self.claim(title))

    def jpeg(self, data: bytes, title: str) -> bytes:
        if not self.enabled:
            return data
        return self.signer.sign_bytes(plain.add_jpeg_comment(data, plain.sentence(self.values)), "image/jpeg",
                                      self.claim(title))

    def exr_attributes(self) -> dict[str, str]:
        return dict(self.values) if self.enabled else {}

    def movie_tags(self) -> dict[str, str]:
        return plain.movie_tags(self.values) if self.enabled else {}

    def sign_movie(self, src: Path, dst: Path, title: str) -> None:
        """The finished movie `src` (its tags already written) copied to `dst`, signed as the
        movie `title` (its final name: src and dst are temporaries)."""
        self.signer.sign_file(src, dst, self.claim(title))

    def signer_record(self) -> dict[str, object]:
        """Who signs, for the sidecar: no paths, user or host names."""
        c = self.signer.credentials if self.signer is not None else None
        if c is None:
            return {}
        return {"local_certificate": c.local, "certificate_sha256": c.fingerprint(), "signer": c.subject()}

    # -- visible --------------------------------------------------------------------------------------
    def burn(self, frame: np.ndarray) -> np.ndarray:
        """The frame with "AI-modified" in white on black in its lower left corner, about 1/30 of
        the frame's height; any dtype (8/16-bit, float linear) and RGB or RGBA (opaque there)."""
        if not self.settings.visible:
            return frame
        return burn_label(frame)


def burn_label(frame: np.ndarray, text: str = VISIBLE_TEXT) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = max(0.35, h / 900)
    thickness = max(1, round(scale * 1.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, th // 3)
    box_w, box_h = min(w, tw + 2 * pad), min(h, th + base + 2 * pad)
    ink = np.zeros((box_h, box_w), np.uint8)
    cv2.putText(ink, text, (pad, box_h - pad - base), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    white = np.iinfo(frame.dtype).max if np.issubdtype(frame.dtype, np.integer) else 1.0
    out = frame.copy()
    region = out[h - box_h - pad:h - pad, pad:pad + box_w] if h > box_h + 2 * pad and w > box_w + 2 * pad \
        else out[h - box_h:, :box_w]
    a = (ink[:region.shape[0], :region.shape[1]].astype(np.float32) / 255)[..., None]
    region[..., :3] = (a * white).astype(frame.dtype)
    if frame.shape[2] == 4:
        region[..., 3] = white
    return out

