"""Errors that reach the user.

A :class:`UserError` is a mistake in what the user gave us (a bad path, a model we
cannot read, a column that is missing).  The CLI prints its message as one line on
stderr and exits with status 2; anything else is a bug in fecc and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one clear line."""


class CompileError(Exception):
    """fecc could not build what it was asked to build (e.g. gcc failed)."""
