"""Who signs our Content Credentials: the user's own key and certificate, or a local chain.

A studio that wants its credentials trusted by verifiers signs with a certificate from a CA they
trust (the add-on's *Signing Key* / *Signing Certificate* preferences, `--c2pa-key` /
`--c2pa-cert`, or `DEEPFAKE_C2PA_KEY` / `DEEPFAKE_C2PA_CERT` on a render farm). Without one, every
output is still labelled, signed with a certificate chain made once per user: a CA and a signing
certificate (the C2PA SDK refuses a self-signed signing certificate), which verifiers report as
valid but not trusted. The local CA's key is thrown away once it has signed, so nothing on the
machine can mint another certificate under it.

The local chain lives in the user's configuration folder, never in the project, a model folder
or a faceset (those get shared); the folder is owner-only (0700), the key 0600.

    Linux:   $XDG_CONFIG_HOME/blender-deepfake/credentials/ (default ~/.config/...)
    macOS:   ~/Library/Application Support/blender-deepfake/credentials/
    Windows: %APPDATA%\\blender-deepfake\\credentials\\
    DEEPFAKE_CREDENTIALS overrides the folder (tests, a shared farm account).
"""
from __future__ import annotations

import datetime
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import DeepfakeError

CREDENTIALS_ENV = "DEEPFAKE_CREDENTIALS"
KEY_ENV, CERT_ENV = "DEEPFAKE_C2PA_KEY", "DEEPFAKE_C2PA_CERT"
KEY_FILE, CHAIN_FILE = "signer.key", "signer_chain.pem"
LOCAL_ORG = "blender-deepfake local signer"
WHERE_KEY = "the add-on preference Signing Key (--c2pa-key, DEEPFAKE_C2PA_KEY)"
WHERE_CERT = "the add-on preference Signing Certificate (--c2pa-cert, DEEPFAKE_C2PA_CERT)"


class CredentialsError(DeepfakeError):
    """A signing key or certificate that is missing, unreadable or not usable: the message names
    where it was set."""


@dataclass(frozen=True)
class Credentials:
    key_pem: bytes
    chain_pem: bytes   # the signing certificate first, then its issuers
    algorithm: str     # a c2pa.C2paSigningAlg name: ES256, ES384, ES512, ED25519, PS256
    local: bool        # the per-user chain: valid, never trusted
    source: str        # where they came from, for the log
    key_path: Path | None = None

    def _certificate(self):
        from cryptography import x509

        return x509.load_pem_x509_certificates(self.chain_pem)[0]

    def fingerprint(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self._certificate().fingerprint(hashes.SHA256()).hex()

    def subject(self) -> str:
        return self._certificate().subject.rfc4514_string()

    def loose_key_permissions(self) -> str:
        """A warning when the user's key file can be read by others (POSIX), else ""."""
        if self.key_path is None or sys.platform == "win32":
            return ""
        try:
            mode = self.key_path.stat().st_mode & 0o777
        except OSError:
            return ""
        return f"the signing key {self.key_path} can be read by other users (mode {oct(mode)}): chmod 600 it" \
            if mode & 0o077 else ""


def config_folder() -> Path:
    """The user's configuration folder for blender-deepfake; the add-on's core record
    (blender_deepfake/core_record.py, which cannot import core) follows the same rule."""
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "blender-deepfake"


def credentials_folder() -> Path:
    override = os.environ.get(CREDENTIALS_ENV)
    return Path(override) if override else config_folder() / "credentials"


def resolve(key: str | Path | None = None, cert: str | Path | None = None) -> Credentials:
    """The user's key and certificate when given (arguments, else the environment), else the
    local chain, made on first use."""
    key = key or os.environ.get(KEY_ENV) or None
    cert = cert or os.environ.get(CERT_ENV) or None
    if key or cert:
        return user_credentials(key, cert)
    return local_credentials()


def user_credentials(key: str | Path | None, cert: str | Path | None) -> Credentials:
    if not key:
        raise CredentialsError(f"a signing certificate is set but no key: set {WHERE_KEY}")
    if not cert:
        raise CredentialsError(f"a signing key is set but no certificate: set {WHERE_CERT}")
    key_pem = _read(Path(key), "signing key", WHERE_KEY)
    chain_pem = _read(Path(cert), "signing certificate", WHERE_CERT)
    algorithm = _algorithm(key_pem, Path(key))
    _check_pair(key_pem, chain_pem, Path(key), Path(cert))
    return Credentials(key_pem, chain_pem, algorithm, local=False, source=f"{key} and {cert}", key_path=Path(key))


def local_credentials() -> Credentials:
    folder = credentials_folder()
    if not (folder / KEY_FILE).is_file():
        _make_local_chain(folder)
    key_pem = _read(folder / KEY_FILE, "local signing key", f"the folder {folder} (delete it to make a new chain)")
    chain_pem = _read(folder / CHAIN_FILE, "local certificate chain",
                      f"the folder {folder} (delete it to make a new chain)")
    return Credentials(key_pem, chain_pem, "ES256", local=True, source=f"the local certificate in {folder}")


def _read(path: Path, what: str, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"the {what} {path} does not exist: check {where}") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read the {what} {path} ({exc.strerror or exc}): check {where}") from None


def _algorithm(key_pem: bytes, path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CredentialsError(f"the signing key {path} is encrypted: give an unencrypted PEM key "
                               f"(readable by you only), in {WHERE_KEY}") from None
    except ValueError:
        raise CredentialsError(f"{path} is not a PEM private key: check {WHERE_KEY}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ED25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    raise CredentialsError(f"the signing key {path} is of a kind C2PA does not sign with (use an EC P-256/384/521, "
                           f"Ed25519 or RSA key): check {WHERE_KEY}")


def _check_pair(key_pem: bytes, chain_pem: bytes, key: Path, cert: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CredentialsError(f"{cert} is not a PEM certificate chain: check {WHERE_CERT}") from None
    public = serialization.load_pem_private_key(key_pem, password=None).public_key()
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certs[0].public_key().public_bytes(*fmt) != public.public_bytes(*fmt):
        raise CredentialsError(f"the first certificate in {cert} is not the signing key {key}'s: the chain must start "
                               "with the signing certificate, then its issuers")


def _make_local_chain(folder: Path) -> None:
    """A CA and a signing certificate under it, both ten years; written to a private temporary
    folder and renamed into place, so two jobs starting at once cannot leave a key and a chain
    that do not match (the second finds the first's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # No user or host name in the certificate: it is embedded in every output a user delivers.
    who = secrets.token_hex(4)
    now = datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=3650)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ORG)])

    def usage(sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=not sign_certs, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=sign_certs,
                             crl_sign=sign_certs, encipher_only=False, decipher_only=False)

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(f"local CA {who}")).issuer_name(name(f"local CA {who}"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(f"blender-deepfake {who}")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    chain_pem = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".credentials-", dir=folder.parent))  # 0700
        for file, data in ((KEY_FILE, key_pem), (CHAIN_FILE, chain_pem)):
            fd = os.open(tmp / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CredentialsError(f"cannot make the local signing certificate in {folder} "
                               f"({exc.strerror or exc}): set {CREDENTIALS_ENV} to a folder of yours, or "
                               f"give your own key in {WHERE_KEY}") from None
    try:
        os.rename(tmp, folder)
    except OSError:  # another job made it first (or an empty folder was there): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / KEY_FILE).is_file():
            raise CredentialsError(f"{folder} exists without a {KEY_FILE}: remove it to make a new local "
                                   "certificate") from None
