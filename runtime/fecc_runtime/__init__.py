"""fecc_runtime: load and serve fecc bundles.

Imports only numpy and the standard library (plus numba for bundles with experts);
never the compiler, xgboost, treelite or torch.

>>> import fecc_runtime
>>> b = fecc_runtime.load("bundle/")          # verifies hashes, replays parity vectors
>>> b = fecc_runtime.load("bundle/", trusted_keys=["signer.pub.pem"])  # and its Ed25519 signature
>>> b.predict_one({"age": 41, "hours": 38})
"""
from .bundle import Bundle, apply_link, load
from .errors import BundleError, BundleSignatureError

__version__ = "0.1.0"
__all__ = ["load", "Bundle", "BundleError", "BundleSignatureError", "apply_link", "__version__"]
