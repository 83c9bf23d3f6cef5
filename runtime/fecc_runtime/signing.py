"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest lists every file of the bundle with its sha256, so a valid signature over
the manifest vouches for every file; the hash check in :func:`fecc_runtime.load` does
the rest.  The signature cannot live inside the manifest it signs: it is a small JSON
file beside it, ``manifest.sig``::

    {"algorithm": "ed25519", "file": "manifest.json",
     "key": "sha256:<hex sha256 of the 32-byte raw public key>",
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

Ed25519 signatures are deterministic (RFC 8032): the same manifest and key give the
same ``manifest.sig``, so signed bundles stay byte-for-byte reproducible.

The ``cryptography`` package is imported only here, and only when keys are involved
(``pip install 'fecc-runtime[sign]'``); a bundle loaded without trusted keys never
imports it, signed or not.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Iterable

from .errors import BundleSignatureError

SIGNATURE_FILE = "manifest.sig"
ALGORITHM = "ed25519"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BundleSignatureError(
            "checking bundle signatures needs the 'cryptography' package: pip install 'fecc-runtime[sign]'"
        ) from None
    return serialization, ed25519


def fingerprint(public_key) -> str:
    """``sha256:<hex>`` of an Ed25519 public key's 32 raw bytes (``openssl pkey -pubout -outform DER | tail -c 32``)."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _short(fp: str) -> str:
    return fp[:23] + "…"


def signature_bytes(manifest_bytes: bytes, private_key) -> bytes:
    """The content of ``manifest.sig`` for ``manifest_bytes`` signed with an Ed25519 private key."""
    sig = private_key.sign(manifest_bytes)
    doc = {"algorithm": ALGORITHM, "file": "manifest.json", "key": fingerprint(private_key.public_key()),
           "signature": base64.b64encode(sig).decode("ascii")}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("ascii")


def read_signature(path: Path) -> dict | None:
    """The parsed ``manifest.sig`` of the bundle at ``path`` (``None`` when unsigned); checks its shape only."""
    spath = Path(path) / SIGNATURE_FILE
    if not spath.exists():
        return None
    try:
        doc = json.loads(spath.read_bytes().decode("ascii"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleSignatureError(f"{spath} is not a fecc signature file: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("algorithm", "key", "signature")):
        raise BundleSignatureError(f"{spath} is not a fecc signature file: it needs 'algorithm', 'key' and 'signature'")
    if doc["algorithm"] != ALGORITHM:
        raise BundleSignatureError(f"{spath} uses algorithm {doc['algorithm']!r}; this runtime verifies {ALGORITHM} only")
    if doc.get("file", "manifest.json") != "manifest.json":
        raise BundleSignatureError(f"{spath} signs {doc.get('file')!r}, not manifest.json")
    return doc


def load_public_key(key):
    """An Ed25519 public key from a PEM file path, PEM bytes or a key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, (bytes, bytearray)):
        data, where = bytes(key), "given as bytes"
    elif isinstance(key, (str, Path)):
        p = Path(key)
        if not p.is_file():
            raise BundleSignatureError(f"trusted key file not found: {p}")
        try:
            data, where = p.read_bytes(), str(p)
        except OSError as exc:
            raise BundleSignatureError(f"cannot read trusted key {p}: {exc.strerror}") from None
    else:
        raise BundleSignatureError(f"a trusted key is a PEM file path, PEM bytes or a public key, not {type(key).__name__}")
    try:
        pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        if b"PRIVATE KEY" in data:
            raise BundleSignatureError(
                f"trusted key {where} is a private key; pass its public half "
                f"(openssl pkey -in KEY -pubout -out public.pem)") from None
        raise BundleSignatureError(f"trusted key {where} is not a PEM public key") from None
    except Exception as exc:  # e.g. cryptography's UnsupportedAlgorithm
        raise BundleSignatureError(f"trusted key {where} cannot be read: {exc}") from None
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        kind = type(pub).__name__.lstrip("_").replace("PublicKey", "")
        raise BundleSignatureError(
            f"trusted key {where} is not an Ed25519 public key (it is {kind}); fecc bundles are signed with Ed25519")
    return pub


def trusted_set(keys: Iterable) -> dict:
    """Fingerprint -> public key for the configured trusted keys (at least one)."""
    if isinstance(keys, (str, Path, bytes, bytearray)):
        keys = [keys]
    out = {}
    for k in keys:
        pub = load_public_key(k)
        out[fingerprint(pub)] = pub
    if not out:
        raise BundleSignatureError("trusted_keys is empty: give at least one public key, or None to accept unsigned bundles")
    return out


def verify_manifest(path: Path, manifest_bytes: bytes, trusted_keys) -> str:
    """Check ``manifest.sig`` against ``manifest_bytes`` and the trusted keys; return the signer's fingerprint.

    Raises :class:`BundleSignatureError` for an unsigned bundle, a key not in the trusted
    list, or a signature that does not match the manifest's bytes.
    """
    trusted = trusted_set(trusted_keys)
    doc = read_signature(path)
    if doc is None:
        raise BundleSignatureError(
            f"bundle {path} is not signed (no {SIGNATURE_FILE}) but trusted keys are configured; refusing it")
    fp = doc["key"]
    pub = trusted.get(fp)
    if pub is None:
        raise BundleSignatureError(
            f"bundle {path} is signed by key {_short(fp)}, which is not one of the {len(trusted)} trusted key(s); "
            "refusing it")
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleSignatureError(f"{Path(path) / SIGNATURE_FILE} is not a fecc signature file: bad base64") from None
    from cryptography.exceptions import InvalidSignature

    try:
        pub.verify(sig, manifest_bytes)
    except InvalidSignature:
        raise BundleSignatureError(
            f"the signature of {path} does not match its manifest.json (changed after signing, or signed by "
            f"another key than {_short(fp)}); refusing it") from None
    return fp
