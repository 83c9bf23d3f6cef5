"""Errors raised by the runtime."""


class BundleError(Exception):
    """The bundle cannot be served: missing/tampered file, failed parity replay, bad input."""
