"""Errors raised by the runtime."""


class BundleError(Exception):
    """The bundle cannot be served: missing/tampered file, failed parity replay, bad input."""


class BundleSignatureError(BundleError):
    """The bundle's signature is missing, invalid, or made with a key that is not trusted."""
