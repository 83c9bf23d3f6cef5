"""``fecc compile --sign-key``: read the Ed25519 private key that signs a bundle's manifest.

The format of ``manifest.sig`` belongs to the runtime (:mod:`fecc_runtime.signing`),
which verifies it; this module only turns the user's key file into a key object, with
one clear :class:`~fecc.errors.UserError` line for every way the file can be wrong.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError

MAKE_KEY = "openssl genpkey -algorithm ed25519 -out key.pem"


def load_signing_key(path: str | Path):
    """The Ed25519 private key in the PEM file ``path`` (unencrypted, as ``openssl genpkey`` writes it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    p = Path(path)
    if not p.exists():
        raise UserError(f"signing key not found: {p}")
    if not p.is_file():
        raise UserError(f"signing key is not a file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read signing key {p}: {exc.strerror}") from None
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise UserError(f"signing key {p} is a public key; --sign-key takes the private key ({MAKE_KEY})")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise UserError(f"signing key {p} is encrypted; fecc reads unencrypted PEM keys ({MAKE_KEY})") from None
    except ValueError:
        raise UserError(f"signing key {p} is not a PEM private key ({MAKE_KEY})") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and kin
        raise UserError(f"signing key {p} cannot be read: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        kind = type(key).__name__.lstrip("_").replace("PrivateKey", "")
        raise UserError(f"signing key {p} is not an Ed25519 key (it is {kind}); --sign-key takes an Ed25519 key "
                        f"({MAKE_KEY})")
    return key
