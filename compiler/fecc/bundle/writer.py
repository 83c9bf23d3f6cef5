"""Writing a bundle directory atomically.

Everything is written into a staging directory beside the target; only when the
manifest (with the sha256 of every file) is complete is the staging directory renamed
into place.  A crash or an error leaves the target path untouched: a half-written
bundle never appears where a server could load it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..outputs import check_output_parent

# the runtime owns the format: what it verifies is what the compiler writes
from fecc_runtime.format import FORMAT, FORMAT_VERSION, format_version, sha256_file  # noqa: F401


def dumps_manifest(manifest: dict) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline (stable bytes)."""
    return json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"


class BundleWriter:
    """Stage files for a bundle, then publish them in one rename.

    Use as a context manager; :meth:`publish` must be called inside the block.

    Parameters
    ----------
    target : final bundle directory.
    force : replace an existing bundle at ``target`` (never a directory that is not a bundle).
    sign_key : an Ed25519 private key (``cryptography`` object); :meth:`publish` then writes
        ``manifest.sig`` beside the manifest (format: :mod:`fecc_runtime.signing`).
    """

    def __init__(self, target: str | Path, *, force: bool = False, sign_key=None):
        self.target = Path(target)
        self.force = force
        self.sign_key = sign_key
        self.check_target(self.target, force)
        self.root: Path | None = None
        self._published = False

    @staticmethod
    def check_target(target: str | Path, force: bool = False) -> None:
        """Refuse, before any work, an output path the bundle cannot be published at."""
        target = Path(target)
        if target.exists():
            if not target.is_dir():
                raise UserError(f"output path exists and is not a directory: {target}")
            is_bundle = (target / "manifest.json").is_file()
            if any(target.iterdir()) and not (force and is_bundle):
                hint = "pass --force to replace it" if is_bundle else "it is not a fecc bundle; choose another path"
                raise UserError(f"output directory {target} already exists and is not empty; {hint}")
        # an output under a regular file, or in a directory that does not exist
        check_output_parent(target, "the bundle")

    def __enter__(self) -> "BundleWriter":
        parent = self.target.parent if str(self.target.parent) else Path(".")
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-", dir=parent))
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.root is not None and self.root.exists() and not self._published:
            shutil.rmtree(self.root, ignore_errors=True)
        return False

    # ------------------------------------------------------------ file helpers
    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, rel: str, text: str) -> str:
        self.path(rel).write_text(text, encoding="utf-8", newline="\n")
        return rel

    def save_array(self, rel: str, array: np.ndarray) -> str:
        # np.save writes a fixed header + raw bytes: stable across runs
        with open(self.path(rel), "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        return rel

    # ----------------------------------------------------------------- publish
    def publish(self, manifest: dict, verify=None) -> Path:
        """Hash every staged file into ``manifest["files"]``, write it, and move the bundle into place.

        ``verify(staging_dir)`` runs on the complete staged bundle (signed, with a
        ``sign_key``) first; if it raises, nothing is published.
        """
        files = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and p.name != "manifest.json":
                files[p.relative_to(self.root).as_posix()] = sha256_file(p)
        manifest = dict(manifest, format=FORMAT, format_version=format_version(manifest), files=files)
        data = dumps_manifest(manifest).encode("utf-8")
        (self.root / "manifest.json").write_bytes(data)
        if self.sign_key is not None:
            # over the exact manifest bytes; Ed25519 is deterministic, so the bytes stay reproducible
            from fecc_runtime.signing import SIGNATURE_FILE, signature_bytes

            (self.root / SIGNATURE_FILE).write_bytes(signature_bytes(data, self.sign_key))
        if verify is not None:
            verify(self.root)
        os.chmod(self.root, 0o755)  # mkdtemp makes it 0700
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
            os.replace(self.root, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.root, self.target)
        self._published = True
        return self.target
