"""C2PA Content Credentials through the C2PA SDK (`c2pa-python`): a signed manifest embedded in
PNG, JPEG and MP4/MOV files, and reading one back.

What a manifest of ours says: the action `c2pa.edited` with the IPTC digital source type
`compositeWithTrainedAlgorithmicMedia` (real footage with a trained model's output composited
in), our tool as the software agent, and the source clip as the `parentOf` ingredient (its own
Content Credentials, when a camera or another tool signed it, are carried along). The SDK
insists that a manifest with a parent starts with `c2pa.opened`; without a readable parent it
starts with `c2pa.created`. The SDK's automatic thumbnail is off: it added ~870 KB and 100 ms to
every 512 px PNG frame.
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import DeepfakeError
from core.provenance.credentials import Credentials, CredentialsError

COMPOSITE_WITH_TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
EDITED = "c2pa.edited"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mp4": "video/mp4",
        ".m4v": "video/mp4", ".mov": "video/quicktime"}
"""What we sign. Others the SDK knows (TIFF, AVI, WebP, ...) are not written by us or by the
sequencer render we label, so they are refused rather than signed untested."""


def mime_of(path: Path) -> str | None:
    return MIME.get(Path(path).suffix.lower())


@dataclass(frozen=True)
class Claim:
    """What a manifest asserts about one output."""

    title: str                 # the output's file name
    tool: str
    version: str
    source: Path | None        # the clip (or frame folder) the face was replaced in
    model_id: str | None

    def manifest(self, with_parent: bool) -> dict[str, Any]:
        agent = {"name": self.tool, "version": self.version}
        first = ({"action": "c2pa.opened", "parameters": {"ingredientIds": ["source"]}} if with_parent else
                 {"action": "c2pa.created", "digitalSourceType": COMPOSITE_WITH_TRAINED, "softwareAgent": agent})
        edited: dict[str, Any] = {"action": EDITED, "digitalSourceType": COMPOSITE_WITH_TRAINED,
                                  "softwareAgent": agent, "description": "face replaced by a trained autoencoder"}
        if self.model_id:
            edited["parameters"] = {"model_id": self.model_id}
        return {"claim_generator_info": [agent], "title": self.title,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [first, edited]}}]}


class Signer:
    """One SDK signer for a job's outputs (made once: it parses the key and chain), and the
    settings every builder of the job shares."""

    def __init__(self, credentials: Credentials):
        import c2pa

        self.credentials = credentials
        try:
            info = c2pa.C2paSignerInfo(getattr(c2pa.C2paSigningAlg, credentials.algorithm), credentials.chain_pem,
                                       credentials.key_pem, None)
            self._signer = c2pa.Signer.from_info(info)
        except c2pa.C2paError as exc:
            raise CredentialsError(f"the C2PA SDK refuses {credentials.source}: {exc}") from None
        self._context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))

    def _builder(self, claim: Claim) -> Any:
        """A builder (single use in the SDK) with the source as its parent ingredient: read from
        the file when the SDK knows its format, else named only (a frame folder, an EXR)."""
        import c2pa

        source = claim.source
        mime = mime_of(source) if source is not None else None
        readable = mime is not None and source is not None and source.is_file()
        manifest = claim.manifest(with_parent=source is not None)
        ingredient = {"title": source.name if source is not None else "", "relationship": "parentOf", "label": "source"}
        if source is not None and not readable:
            manifest["ingredients"] = [{**ingredient, "format": mime or "application/octet-stream",
                                        "instance_id": f"xmp:iid:{uuid.uuid4()}"}]
        builder = c2pa.Builder(manifest, self._context)
        if source is not None and readable:
            with open(source, "rb") as f:
                builder.add_ingredient(ingredient, mime, f)
        return builder

    def sign_bytes(self, data: bytes, mime: str, claim: Claim) -> bytes:
        """An image's bytes with the manifest embedded."""
        import c2pa

        out = io.BytesIO()
        try:
            self._builder(claim).sign(self._signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            raise DeepfakeError(f"could not sign {claim.title} with Content Credentials: {exc}") from None
        return out.getvalue()

    def sign_file(self, src: Path, dst: Path, claim: Claim) -> None:
        """`src` copied to `dst` with the manifest embedded (a movie is not read into memory); the
        format is the claim's title's (dst may be a temporary name)."""
        import c2pa

        mime = mime_of(Path(claim.title))
        if mime is None:
            raise DeepfakeError(f"{dst.name}: Content Credentials are written to {', '.join(sorted(MIME))} files only")
        try:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                self._builder(claim).sign(self._signer, mime, fin, fout)
        except c2pa.C2paError as exc:
            raise DeepfakeError(f"could not sign {dst} with Content Credentials: {exc}") from None


@dataclass
class ManifestReport:
    """What a verifier sees in a file's Content Credentials."""

    present: bool
    state: str = ""                       # the SDK's: Valid, Invalid or Trusted
    signer: str = ""                      # the signing certificate's common name and organisation
    trusted: bool = False
    actions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # validation codes, e.g. assertion.bmffHash.mismatch
    generator: str = ""
    ingredients: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def face_replaced(self) -> bool:
        return any(a.get("action") == EDITED and a.get("digitalSourceType") == COMPOSITE_WITH_TRAINED
                   for a in self.actions)

    @property
    def tampered(self) -> bool:
        return self.present and self.state == "Invalid"


def read(path: Path, trust_anchors: str | None = None) -> ManifestReport:
    """The file's active manifest and its validation by the SDK, offline. `trust_anchors`: PEM
    certificates of the CAs to trust (a studio's own); without them no certificate is trusted."""
    import c2pa

    mime = mime_of(path)
    if mime is None:
        return ManifestReport(present=False)
    context = c2pa.Context(c2pa.Settings.from_dict({"trust": {"trust_anchors": trust_anchors}})) \
        if trust_anchors else None
    try:
        with open(path, "rb") as f:
            reader = c2pa.Reader(mime, f, context=context)
            try:
                manifest = reader.get_active_manifest() or {}
                results = reader.get_validation_results() or {}
                state = reader.get_validation_state() or ""
            finally:
                reader.close()
    except c2pa.C2paError as exc:
        if isinstance(exc, (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.FileNotFound)):
            return ManifestReport(present=False)
        if isinstance(exc, (c2pa.C2paError.Other, c2pa.C2paError.Io, c2pa.C2paError.NotSupported)):
            # The asset itself could not be parsed (a torn or misnamed file): not a verdict on a manifest.
            return ManifestReport(present=False, error=f"unreadable: {exc}")
        return ManifestReport(present=True, state="Invalid", error=str(exc))
    active = results.get("activeManifest") or {}
    failures = [e.get("code", "") for e in active.get("failure") or []]
    info = manifest.get("signature_info") or {}
    actions: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions += (assertion.get("data") or {}).get("actions") or []
    generator = ", ".join(f"{g.get('name', '')} {g.get('version', '')}".strip()
                          for g in manifest.get("claim_generator_info") or [])
    signer = ", ".join(x for x in (info.get("common_name"), info.get("issuer")) if x)
    return ManifestReport(present=True, state=state, signer=signer,
                          trusted=state == "Trusted" or (state == "Valid" and "signingCredential.untrusted" not in failures),
                          actions=actions, failures=failures, generator=generator,
                          ingredients=[str(i.get("title")) for i in manifest.get("ingredients") or []])
