"""Quiet native libraries: what treelite's and tl2cgen's C++ loggers print goes into errors, not the terminal.

The frontend (reading a model with treelite) and ``lower/`` (tl2cgen's code generator)
both call into these libraries, so the capture lives here, below both.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile

__all__ = ["native_log_captured"]


@contextlib.contextmanager
def native_log_captured():
    """Capture what treelite/tl2cgen's C++ loggers print on fds 1 and 2.

    Their INFO/WARNING lines ("Parallel compilation enabled", "model ... originated
    from a newer Treelite version" — tl2cgen bundles an older treelite) are noise
    to a user; the captured text is attached to any error raised inside instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    # tl2cgen also logs through a Python callback that print()s: catch that text too,
    # or it reaches stdout after the fds are restored and corrupts the CLI's JSON
    py_log = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.redirect_stdout(py_log), \
            contextlib.redirect_stderr(py_log):
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            except Exception as exc:
                sink.seek(0)
                log = (sink.read().decode("utf-8", "replace") + py_log.getvalue()).strip()
                if log and exc.args and isinstance(exc.args[0], str):
                    exc.args = (f"{exc.args[0]} [treelite/tl2cgen said: {log[-500:]}]", *exc.args[1:])
                raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
