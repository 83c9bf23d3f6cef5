"""Score a bundle's whole ensemble in one C call (``ensemble/ensemble.so``).

The library (built by ``fecc.lower.ensemble``) holds the legacy trees' and the
aggregator's array engines, the experts lowered from their IR to C, and the glue:
``fecc_ensemble_one`` turns one row into its final margin, ``fecc_ensemble_batch``
many rows.  It walks the node arrays that :class:`fecc_runtime.trees.TreeEnsemble`
loads and checks (``trees/legacy.npz``, ``trees/aggregator.npz``); this module only
hands it their ``fecc_forest_t`` pointers.  Only numpy, ctypes and the standard
library.

The margin is the one :class:`fecc_runtime.Bundle` computes step by step with the
numba experts (``engine="numba"``)::

    m = legacy(x);  phi = experts(x rounded to float32, m)
    margin = m + offset(phi) + aggregator_trees(x ⊕ [m, phi])

with the same operations in the same order (see ``ensemble/ensemble.c``).
"""
from __future__ import annotations

import ctypes
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .format import feature_rows
from .trees import TreeEngineError, TreeEnsemble
from .workers import WorkerPool

__all__ = ["CompiledEnsemble", "ENSEMBLE_ABI"]

#: The ``fecc_ensemble_abi()`` this runtime speaks.
ENSEMBLE_ABI = 1


class CompiledEnsemble:
    """Legacy trees + experts + aggregator, one C call per row or per batch.

    Parameters
    ----------
    bundle_dir : Path
        The bundle directory.
    entry : dict
        The manifest's ``ensemble`` entry.
    legacy, aggregator : TreeEnsemble, TreeEnsemble or None
        The loaded (and checked) tree ensembles whose node arrays the library walks;
        ``aggregator`` is ``None`` for a ``"sum"`` aggregator.
    n_threads : int, optional
        Threads for :meth:`predict_margin`; default: the CPUs this process may use.

    Raises
    ------
    TreeEngineError
        The library is missing or does not match the entry or the node arrays.
    """

    def __init__(self, bundle_dir: Path, entry: dict[str, Any], legacy: TreeEnsemble,
                 aggregator: TreeEnsemble | None, *, n_threads: int | None = None):
        self.entry = entry
        self.num_feature = int(entry["num_feature"])
        self.experts = list(entry["experts"])
        self.block_rows = int(entry["block_rows"])
        if int(entry.get("abi", -1)) != ENSEMBLE_ABI:
            raise TreeEngineError(f"ensemble library ABI {entry.get('abi')} != {ENSEMBLE_ABI}")
        if bool(entry.get("aggregator_trees")) != (aggregator is not None):
            raise TreeEngineError("the ensemble entry and the aggregator trees disagree")
        if not isinstance(legacy, TreeEnsemble) or (aggregator is not None and not isinstance(aggregator, TreeEnsemble)):
            raise TreeEngineError("the ensemble library needs the trees compiled to C (trees engine 'c')")
        if self.block_rows < 1 or legacy.num_class != 1 or legacy.num_feature != self.num_feature:
            raise TreeEngineError("the ensemble entry does not match the legacy trees")
        self._legacy, self._aggregator = legacy, aggregator  # keep their node arrays alive
        path = Path(bundle_dir) / entry["library"]
        try:
            lib = ctypes.CDLL(str(path.resolve()))
        except OSError as exc:
            raise TreeEngineError(f"ensemble: cannot load {path}: {exc}") from None
        self._lib = lib
        names = ["fecc_ensemble_abi", "fecc_ensemble_num_feature", "fecc_ensemble_num_experts",
                 "fecc_ensemble_agg_feature", "fecc_ensemble_block", "fecc_legacy_node_size",
                 "fecc_legacy_node_feat_bits", "fecc_legacy_num_feature"]
        if aggregator is not None:
            names += ["fecc_agg_node_size", "fecc_agg_node_feat_bits", "fecc_agg_num_feature"]
        self.transforms = list(entry.get("transforms") or ())
        if self.transforms:  # the library computes the transforms itself (and says how many)
            names.append("fecc_ensemble_num_transforms")
        got = {}
        for fn in names:
            f = getattr(lib, fn)
            f.restype, f.argtypes = ctypes.c_int32, []
            got[fn] = f()
        want = {"fecc_ensemble_abi": ENSEMBLE_ABI, "fecc_ensemble_num_feature": self.num_feature,
                "fecc_ensemble_num_experts": len(self.experts),
                "fecc_ensemble_agg_feature": int(entry["aggregator_feature"]),
                "fecc_ensemble_block": self.block_rows, "fecc_legacy_num_feature": self.num_feature}
        if self.transforms:
            want["fecc_ensemble_num_transforms"] = len(self.transforms)
        want["fecc_legacy_node_size"], want["fecc_legacy_node_feat_bits"] = legacy.node_layout
        if aggregator is not None:
            want["fecc_agg_node_size"], want["fecc_agg_node_feat_bits"] = aggregator.node_layout
            want["fecc_agg_num_feature"] = aggregator.num_feature
        bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        if bad:
            raise TreeEngineError(f"ensemble library does not match the manifest and node arrays: {bad}")
        self._feat_dtype = np.dtype(np.float32 if entry.get("feature_type", "float32") == "float32" else np.float64)
        if self._feat_dtype != legacy._feat_dtype:
            raise TreeEngineError("ensemble library and legacy trees read different feature types")
        agg_ref = aggregator.forest if aggregator is not None else None
        self._refs = (legacy.forest, agg_ref)
        self._batch = lib.fecc_ensemble_batch
        self._batch.restype = None
        self._batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        self._workers = WorkerPool(n_threads)
        self.n_threads = self._workers.n_threads
        # one row: buffers and the call's arguments as ctypes objects, built once (see
        # TreeEnsemble.predict_row): per call, one copy and one ctypes call
        #   fecc_ensemble_one(const void* legacy, const void* aggregator, const double* x, double* out)
        self._row_in = np.zeros(self.num_feature, dtype=np.float64)
        self._row_pack = struct.Struct("=" + "d" * self.num_feature).pack_into
        self._row_out = (ctypes.c_double * 1)()
        self._row_fn = lib["fecc_ensemble_one"]
        self._row_fn.restype = None
        self._row_args = (legacy.forest, agg_ref, ctypes.c_void_p(self._row_in.ctypes.data),
                          ctypes.c_void_p(ctypes.addressof(self._row_out)))
        self._row_shape = (self.num_feature,)
        self._row_lock = threading.Lock()

    # ------------------------------------------------------------- single row

    def predict_row(self, x: Any, *, margin: bool = True) -> float:
        """The final margin of one row: ``num_feature`` numbers in model order, NaN (or
        None in a sequence) = missing.  (``margin`` must be True: the bundle applies the
        link; the keyword matches :meth:`TreeEnsemble.predict_row`.)"""
        if not margin:
            raise ValueError("the ensemble library returns margins; the bundle applies the link")
        with self._row_lock:
            if type(x) is np.ndarray and x.shape == self._row_shape:
                self._row_in[:] = x
            else:
                self._load_row(x)
            self._row_fn(*self._row_args)
            return self._row_out[0]

    def _load_row(self, x: Any) -> None:
        if isinstance(x, (tuple, list)):
            try:
                self._row_pack(self._row_in, 0, *x)
                return
            except (struct.error, TypeError):
                pass
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape != self._row_shape:
            raise ValueError(f"ensemble: expected x of shape ({self.num_feature},), got {arr.shape}")
        self._row_in[:] = arr

    # ------------------------------------------------------------------ batch

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        """Final margins of many rows, float64 ``(n,)``; ``X`` is ``(n, num_feature)`` (converted
        to the legacy trees' feature type, float32 for XGBoost, as they read it)."""
        try:
            X = feature_rows(X, self.num_feature, self._feat_dtype)
        except ValueError as exc:
            raise ValueError(f"ensemble: {exc}") from None
        n = X.shape[0]
        out = np.empty(n, dtype=np.float64)
        if not n:
            return out
        n_parts = min(self.n_threads, max(1, n // (4 * self.block_rows)))
        if n_parts == 1:
            self._call(X, 0, n, out)
            return out
        per = -(-n // n_parts)
        per = -(-per // self.block_rows) * self.block_rows
        bounds = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
        pool = self._get_pool()
        futures = [pool.submit(self._call, X, lo, hi, out) for lo, hi in bounds[1:]]
        self._call(X, *bounds[0], out)
        for fut in futures:
            fut.result()
        return out

    def _call(self, X: np.ndarray, lo: int, hi: int, out: np.ndarray) -> None:
        xp = X.ctypes.data + lo * self.num_feature * X.itemsize
        self._batch(self._refs[0], self._refs[1], xp, hi - lo, out.ctypes.data + lo * out.itemsize)

    def _get_pool(self) -> ThreadPoolExecutor:
        return self._workers.get("fecc-ensemble")

    def close(self) -> None:
        """Stop the worker threads."""
        self._workers.close()

    def __repr__(self) -> str:
        return f"CompiledEnsemble(experts={self.experts}, aggregator_trees={self._aggregator is not None})"
