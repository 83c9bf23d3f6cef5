"""Where fecc writes: checking an output path up front, and writing a file atomically.

Every command checks its output path before doing any work, so a typo in ``-o`` costs
one clear :class:`~fecc.errors.UserError` line instead of a traceback after the work.
Files are written beside their final name and renamed into place
(:class:`AtomicFile`): a reader never sees half a file, and a failure leaves a
previous file at that path exactly as it was.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import UserError


def check_output_parent(path: str | Path, what: str) -> Path:
    """Check that ``path`` can be created: its parent is an existing, writable directory.

    ``what`` names the output in the message ("the bundle", "the scores").  Returns the
    parent directory.  Nothing is created.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while True:
        try:
            st = probe.stat()
            break
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                raise UserError(f"cannot write {what} to {path}: directory {parent} does not exist (create it first)") from None
            probe = probe.parent
        except OSError as exc:
            raise UserError(f"cannot write {what} to {path}: {probe}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"cannot write {what} to {path}: {probe} is a file, not a directory")
    if probe != parent:
        raise UserError(f"cannot write {what} to {path}: directory {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} to {path}: directory {parent} is not writable")
    return parent


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """A temporary file beside ``final`` that :meth:`commit` renames onto it.

    Use as a context manager: leaving the block by an exception (or without a commit)
    removes the temporary file, and whatever was at ``final`` before stays untouched.
    The committed file gets the permissions a plain ``open(final, "w")`` would give it
    (those of the file it replaces, if any).
    """

    def __init__(self, final: str | Path, what: str = "the output"):
        self.final = Path(final)
        self.what = what
        parent = check_output_parent(self.final, what)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=".partial", dir=parent)
        except OSError as exc:
            raise UserError(f"cannot write {what} to {self.final}: {exc.strerror}") from None
        os.close(fd)
        self.path = Path(tmp)
        self._done = False

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._done:
            self.discard()
        return False

    def commit(self) -> Path:
        """Flush the temporary file to disk and rename it onto the final path."""
        try:
            mode = self.final.stat().st_mode & 0o7777 if self.final.is_file() else _default_mode()
            with open(self.path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(self.path, mode)
            os.replace(self.path, self.final)
        except OSError as exc:
            raise UserError(f"cannot write {self.what} to {self.final}: {exc.strerror or exc}") from None
        self._done = True
        return self.final

    def discard(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._done = True
