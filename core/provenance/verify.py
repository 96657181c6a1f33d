"""`deepfake verify`: what a file or a frame folder says about itself, as a reviewer needs it said.

For each file: its Content Credentials as the C2PA SDK validates them (valid or not, signed by
whom, trusted or not, which action and source type), its plain label, and, in a frame folder
with a sidecar, whether the file is still the one the sidecar lists. A file that carries none of
them is said to carry none: the absence is the finding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import DeepfakeError
from core.provenance import content_credentials, plain, sequence
from core.provenance.content_credentials import ManifestReport

MEDIA = (".png", ".jpg", ".jpeg", ".exr", ".mp4", ".m4v", ".mov")


@dataclass
class FileCheck:
    path: Path
    manifest: ManifestReport
    label: dict[str, str]
    sidecar: str = ""   # "match", "changed", "unlisted", or "" (no sidecar)

    @property
    def labelled(self) -> bool:
        return self.manifest.face_replaced or bool(self.label)

    @property
    def tampered(self) -> bool:
        return self.manifest.tampered or self.sidecar == "changed"

    def lines(self) -> list[str]:
        name, m = self.path.name, self.manifest
        out = []
        if m.present:
            out.append(f"{name}: Content Credentials: {_manifest_text(m)}")
        elif self.path.suffix.lower() in content_credentials.MIME:
            out.append(f"{name}: no Content Credentials")
        if self.label:
            out.append(f"{name}: plain label: {plain.sentence(self.label) if plain.AI_MODIFIED in self.label else next(iter(self.label.values()))}")
        if self.sidecar == "changed":
            out.append(f"{name}: CHANGED since it was written (its SHA-256 differs from the sidecar's)")
        elif self.sidecar == "unlisted":
            out.append(f"{name}: not listed in the folder's {sequence.NAME}")
        if not self.labelled:
            out.append(f"{name}: carries no label: nothing in it says that a face in it was replaced")
        return out


@dataclass
class Verification:
    target: Path
    files: list[FileCheck] = field(default_factory=list)
    sidecar: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Every file labelled and none tampered with."""
        return bool(self.files) and all(f.labelled and not f.tampered for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {"target": str(self.target), "files": len(self.files), "ok": self.ok,
                "labelled": sum(f.labelled for f in self.files),
                "content_credentials_valid": sum(f.manifest.present and not f.manifest.tampered for f in self.files),
                "trusted": sum(f.manifest.trusted for f in self.files),
                "tampered": [f.path.name for f in self.files if f.tampered],
                "unlabelled": [f.path.name for f in self.files if not f.labelled],
                "sidecar": sequence.NAME if self.sidecar is not None else None}

    def lines(self) -> list[str]:
        if not self.target.is_dir():
            return self.files[0].lines()
        s = self.summary()
        first, last = self.files[0].path.name, self.files[-1].path.name
        out = [f"{self.target}: {len(self.files)} files ({first} .. {last}): {s['labelled']} labelled, "
               f"{s['content_credentials_valid']} with valid Content Credentials ({s['trusted']} trusted), "
               f"{len(s['tampered'])} changed after signing, {len(s['unlabelled'])} without a label"]
        if self.sidecar is not None:
            listed = self.sidecar.get("frames") or {}
            out.append(f"{self.target}: sidecar {sequence.NAME}: {len(listed)} frames listed, "
                       f"label {plain.sentence(self.sidecar.get('label') or {})}")
        signed = [f for f in self.files if f.manifest.present and not f.manifest.tampered]
        if signed:
            out.append(f"{self.target}: e.g. {signed[0].path.name}: {_manifest_text(signed[0].manifest)}")
        problems = [f for f in self.files if f.tampered or not f.labelled]
        for f in problems[:10]:
            out += [line for line in f.lines() if "CHANGED" in line or "INVALID" in line or "no label" in line
                    or "not listed" in line]
        if len(problems) > 10:
            out.append(f"... and {len(problems) - 10} more")
        return out


def _manifest_text(m: ManifestReport) -> str:
    if m.tampered:
        why = ", ".join(c for c in m.failures if "untrusted" not in c) or m.error or "invalid"
        return f"INVALID: the file changed after it was signed, or the manifest is broken ({why})"
    trust = "valid signature, trusted" if m.trusted else \
        "valid signature, NOT trusted (the signer's certificate chains to no trust anchor: --trust-anchors)"
    acts = [a for a in m.actions if a.get("action") == content_credentials.EDITED]
    action = (f"action {acts[0]['action']}, digital source type {str(acts[0].get('digitalSourceType', '')).rsplit('/', 1)[-1]}"
              if acts else "no c2pa.edited action")
    ingredients = f"; source {', '.join(m.ingredients)}" if m.ingredients else ""
    return f"{trust}; signed by {m.signer or 'an unnamed signer'}; {action}{ingredients}; made by {m.generator}"


def check_file(path: Path, sidecar: dict[str, Any] | None = None, trust_anchors: str | None = None) -> FileCheck:
    try:
        label = plain.read(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file has no readable label; the manifest check says more
        label = {}
        if path.suffix.lower() == ".exr":
            raise DeepfakeError(f"{path}: not a readable EXR ({exc})") from None
    check = FileCheck(path, content_credentials.read(path, trust_anchors), label)
    if sidecar is not None:
        digest = (sidecar.get("frames") or {}).get(path.name)
        check.sidecar = "unlisted" if digest is None else ("match" if digest == sequence.sha256(path) else "changed")
    return check


def verify(target: Path, trust_anchors: Path | None = None) -> Verification:
    """`trust_anchors`: a PEM file of CA certificates whose signatures count as trusted."""
    target = Path(target)
    if not target.exists():
        raise DeepfakeError(f"{target} does not exist")
    anchors = None
    if trust_anchors is not None:
        try:
            anchors = Path(trust_anchors).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DeepfakeError(f"cannot read the trust anchors {trust_anchors}: {exc}") from None
        if "BEGIN CERTIFICATE" not in anchors:
            raise DeepfakeError(f"{trust_anchors} holds no PEM certificate")
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in MEDIA and not p.name.startswith("."))
        if not files:
            raise DeepfakeError(f"{target} holds no PNG, JPEG, EXR or movie files to verify")
        side = sequence.read(target)
        return Verification(target, [check_file(p, side, anchors) for p in files], side)
    if target.suffix.lower() not in MEDIA:
        raise DeepfakeError(f"{target.name}: verify reads {', '.join(MEDIA)} files")
    side = sequence.read(target.parent)
    side = side if side is not None and target.name in side.get("frames", {}) else None
    return Verification(target, [check_file(target, side, anchors)], side)
