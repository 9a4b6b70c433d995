"""Signed attestations: in-toto Statements (v1) in DSSE envelopes, signed with Ed25519.

A manifest proves only that nobody edited carelessly: whoever can write the run folder can
reseal it. A signature by the harness's key cannot be recomputed without the private key, so
a third party holding the public key can check a published run. The run statement's
subjects are every sealed artifact and the manifest itself; a verdict statement names the
same subjects, so a new rule set signs a new verdict without touching the evidence.

Signing goes through `Signer` (keyid + sign) and checking through `Verifier`: a keyless
(sigstore) signer would be one more implementation that puts its certificate beside the
signature in the envelope.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onegc.evidence.errors import OnegcError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
RUN_PREDICATE = "https://onegc-audit.dev/attestation/run/v1"
ADDENDUM_PREDICATE = "https://onegc-audit.dev/attestation/addendum/v1"
VERDICT_PREDICATE = "https://onegc-audit.dev/attestation/verdict/v1"
ATTEST_DIR = "attestations"
RUN_ATTESTATION = "run.intoto.json"
ADDENDUM_ATTESTATION = "attestation.intoto.json"  # inside the addendum folder it signs
PRIVATE_NAME, PUBLIC_NAME = "signing.pem", "signing.pub"


class AttestationError(OnegcError):
    """A key or an envelope is unusable (bad file, wrong kind of key)."""


class Signer(Protocol):
    keyid: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    keyid: str

    def verify(self, signature: bytes, data: bytes) -> bool: ...


def key_id(public: Ed25519PublicKey) -> str:
    """sha256 of the raw public key: short enough to print, unique enough to name a key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Ed25519Signer:
    private: Ed25519PrivateKey

    @property
    def keyid(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


@dataclass(frozen=True)
class Ed25519Verifier:
    public: Ed25519PublicKey

    @property
    def keyid(self) -> str:
        return key_id(self.public)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


# -- keys ------------------------------------------------------------------------------------
def key_dir() -> Path:
    return Path(os.environ.get("ONEGC_KEY_DIR") or Path.home() / ".config" / "onegc-audit" / "keys")


def init_keys(directory: Path, force: bool = False) -> Path:
    """A new Ed25519 key pair: the private key 0600 (created so, never readable by others),
    the public key beside it. Returns the public key's path."""
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private.exists() and not force:
        raise AttestationError(f"{private} exists", hint="keep it, or pass --force to replace it")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = private.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, private)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return public


def load_signer(directory: Path | None = None) -> Ed25519Signer | None:
    """The signing key in `directory` (default: key_dir()), or None when there is none."""
    path = (directory or key_dir()) / PRIVATE_NAME
    if not path.is_file():
        return None
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AttestationError(f"{path}: not a usable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AttestationError(f"{path}: not an Ed25519 private key")
    return Ed25519Signer(key)


def load_verifier(path: Path) -> Ed25519Verifier:
    """A public key file (PEM, as `keys init` writes it)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise AttestationError(f"{path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise AttestationError(f"{path}: not a PEM public key", hint="`onegc-audit keys show` names the file") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AttestationError(f"{path}: not an Ed25519 public key")
    return Ed25519Verifier(key)


# -- DSSE ------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def envelope(statement: dict, signer: Signer) -> dict:
    payload = canonical(statement)
    sig = signer.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(sig).decode()}],
    }


def signed_by(env: Any) -> list[str]:
    """The key ids an envelope claims (unchecked)."""
    if not isinstance(env, dict) or not isinstance(env.get("signatures"), list):
        return []
    return [str(s.get("keyid")) for s in env["signatures"] if isinstance(s, dict)]


def open_envelope(env: Any, verifier: Verifier) -> tuple[dict | None, str | None]:
    """The statement if `verifier` signed it, else None and the one-line reason."""
    if not isinstance(env, dict) or env.get("payloadType") != PAYLOAD_TYPE:
        return None, "not a DSSE envelope of an in-toto statement"
    try:
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [(s.get("keyid"), base64.b64decode(s["sig"], validate=True)) for s in env.get("signatures") or []]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, "malformed envelope"
    if not sigs:
        return None, "the envelope carries no signature (stripped)"
    if not any(verifier.verify(sig, pae(PAYLOAD_TYPE, payload)) for _, sig in sigs):
        claimed = ", ".join(str(k)[:16] for k, _ in sigs)
        return None, f"signature does not verify with key {verifier.keyid[:16]} (envelope names {claimed})"
    try:
        statement = json.loads(payload)
    except ValueError:
        return None, "signed payload is not JSON"
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return None, "signed payload is not an in-toto Statement v1"
    return statement, None


# -- statements ------------------------------------------------------------------------------
def subjects(digests: dict[str, str]) -> list[dict]:
    return [{"name": name, "digest": {"sha256": sha}} for name, sha in sorted(digests.items())]


def subject_digests(statement: dict) -> dict[str, str]:
    out = {}
    for s in statement.get("subject") or []:
        if isinstance(s, dict) and isinstance(s.get("digest"), dict):
            out[str(s.get("name"))] = str(s["digest"].get("sha256"))
    return out


def statement(digests: dict[str, str], predicate_type: str, predicate: dict) -> dict:
    return {"_type": STATEMENT_TYPE, "subject": subjects(digests), "predicateType": predicate_type,
            "predicate": predicate}


def write_envelope(path: Path, env: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(env, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_envelope(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
