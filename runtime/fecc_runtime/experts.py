"""Symbolic experts at run time: load the emitted module, compute the aggregator's inputs.

The compiler emits the experts as one readable Python module (``experts.py`` in the
bundle) whose functions are numba ``@njit(cache=True)``; without numba the very same
functions run as plain Python and give the same numbers.  This file imports only numpy,
the standard library and (optionally) numba — never anything from the compiler.

What an expert means and the interaction-feature layout the aggregator reads are part
of the bundle format: :mod:`fecc_runtime.format` defines them (``interaction_features``,
``expert_offset``, ``safe_div`` …, re-exported here under their old names).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .format import (  # noqa: F401 - re-exported: the format's expert layout, under the names callers know
    DIV_EPS, PHI_SUFFIXES, expert_offset, interaction_features, phi_names as feature_names, safe_div, transform_value,
)


class ExpertLoadError(RuntimeError):
    """The experts module is missing, does not match the manifest, or fails to import."""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # "numba2": entries cached before the module was registered by name refer to a
    # "<dynamic>" module and cannot load; a new directory leaves them behind
    return Path(base) / "fecc_runtime" / "numba2"


def _ensure_cache_dir(bundle_dir: Path) -> None:
    """Point numba's cache outside the bundle.

    numba caches next to the source by default, which would write unlisted files
    into a verified bundle (or fail on a read-only one).  Unless the user chose
    ``NUMBA_CACHE_DIR`` already, use ``~/.cache/fecc_runtime/numba`` (a temporary
    directory if that is not writable); numba keys cache files by source path, so
    bundles never share entries.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    root = _cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise PermissionError(root)
    except OSError:
        root = Path(tempfile.mkdtemp(prefix="fecc-numba-"))
    os.environ["NUMBA_CACHE_DIR"] = str(root)
    if "numba" in sys.modules:  # numba read its config at import; make it see the new directory
        from numba.core import config

        config.reload_config()


class ExpertSet:
    """The experts of a bundle, ready to score.

    Parameters
    ----------
    bundle_dir : the bundle directory.
    experts_manifest : the manifest's ``experts`` list (each entry names its functions).
    module_path : path of the emitted module, relative to ``bundle_dir``.
    use_numba : ``True`` requires numba, ``False`` runs the functions as plain Python,
        ``None`` (default) uses numba when it is installed.
    transform_names : the manifest's transforms (names, in order) that the module computes
        with ``transforms_batch`` and the experts read after the features.
    """

    def __init__(self, bundle_dir: Path, experts_manifest: list[dict[str, Any]], module_path: str,
                 *, use_numba: bool | None = None, transform_names: Sequence[str] = ()):
        self.bundle_dir = Path(bundle_dir)
        self.entries = list(experts_manifest)
        self.names = [e["name"] for e in self.entries]
        path = self.bundle_dir / module_path
        if not path.is_file():
            raise ExpertLoadError(f"experts module {module_path!r} is missing from the bundle")
        if use_numba is None:
            use_numba = importlib.util.find_spec("numba") is not None
        elif use_numba and importlib.util.find_spec("numba") is None:
            raise ExpertLoadError("use_numba=True but numba is not installed")
        if use_numba:
            _ensure_cache_dir(self.bundle_dir)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        mod_name = f"fecc_bundle_experts_{digest}_{'jit' if use_numba else 'py'}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        # read by the emitted module before it imports numba
        module.FECC_PURE_PYTHON = not use_numba
        # numba finds a function's module by name, when it compiles (an unimportable one makes
        # it a "<dynamic>" module) and when it loads the function from its cache in a later
        # process: the module must be importable by its name, i.e. in sys.modules
        known = sys.modules.get(mod_name)
        if known is not None and getattr(known, "__file__", None) == str(path):
            module = known  # the same file, already loaded (the name holds its sha256)
        else:
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # noqa: BLE001 - any import failure refuses the bundle
                sys.modules.pop(mod_name, None)
                raise ExpertLoadError(f"experts module {module_path!r} failed to import: {e}") from e
        self.module = module
        self.jitted = not module.FECC_PURE_PYTHON
        self.n_features = int(module.N_FEATURES)
        missing = [n for n in self.names if n not in module.EXPERTS]
        if missing:
            raise ExpertLoadError(f"experts module lacks {missing} listed in the manifest")
        try:
            self._batch = [getattr(module, e["batch_function"]) for e in self.entries]
        except AttributeError as e:
            raise ExpertLoadError(f"experts module lacks a function the manifest names: {e}") from e
        # the transforms (seed 000) the experts read after the features, when the bundle has any
        self.transform_names = list(transform_names)
        if tuple(getattr(module, "TRANSFORMS", ())) != tuple(self.transform_names):
            raise ExpertLoadError(f"experts module computes transforms {list(getattr(module, 'TRANSFORMS', ()))}, "
                                  f"the manifest lists {self.transform_names}")
        self.n_base = int(getattr(module, "N_BASE_FEATURES", self.n_features))
        if self.n_base + len(self.transform_names) != self.n_features:
            raise ExpertLoadError("experts module: features + transforms do not add up to N_FEATURES")

    def input_rows(self, X: np.ndarray) -> np.ndarray:
        """The experts' input rows (format: :func:`fecc_runtime.format.input_layout`) from float32-rounded
        features ``X`` ``(n, n_base)``: ``X`` itself, or ``X`` with every transform appended, each
        value rounded through float32."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if not self.transform_names:
            return X
        if X.ndim != 2 or X.shape[1] != self.n_base:
            raise ValueError(f"expected X of shape (n, {self.n_base}), got {X.shape}")
        out = np.empty((X.shape[0], len(self.transform_names)), dtype=np.float64)
        with np.errstate(all="ignore"):
            self.module.transforms_batch(X, out)
        return np.hstack([X, transform_value(out)])

    @property
    def feature_names(self) -> list[str]:
        """Names of the columns of :meth:`features`."""
        return feature_names(self.names)

    def _check(self, X: np.ndarray, base_margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected X of shape (n, {self.n_features}), got {X.shape}")
        base = np.ascontiguousarray(base_margin, dtype=np.float64).reshape(-1)
        if base.shape[0] != X.shape[0]:
            raise ValueError(f"base_margin has {base.shape[0]} rows, X has {X.shape[0]}")
        return X, base

    def values(self, X: np.ndarray, base_margin: np.ndarray) -> np.ndarray:
        """(n, K) expert outputs ``f_k`` in margin space, NaN outside each region."""
        X, base = self._check(X, base_margin)
        out = np.empty((X.shape[0], len(self._batch)), dtype=np.float64)
        col = np.empty(X.shape[0], dtype=np.float64)
        # plain-Python mode computes on numpy scalars: inf/NaN are values here, not warnings
        with np.errstate(all="ignore"):
            for k, fn in enumerate(self._batch):
                fn(X, base, col)
                out[:, k] = col
        return out

    def features(self, X: np.ndarray, base_margin: np.ndarray) -> np.ndarray:
        """(n, 1 + 3K) ``[ŷ_base, φ_1, …, φ_K]``; the aggregator reads ``concat([X, this])``."""
        X, base = self._check(X, base_margin)
        return interaction_features(base, self.values(X, base))

    def offset(self, features: np.ndarray) -> np.ndarray:
        """``Σ_k (f_k − base)`` over active experts (see :func:`expert_offset`)."""
        return expert_offset(features, len(self.names))
