"""Score a compiled tree ensemble (``trees/{name}.so`` + ``trees/{name}.npz``).

Only numpy, ctypes and the standard library: no xgboost, treelite or tl2cgen here.
The library was built by ``fecc.lower.trees``; this module reads the manifest entry it
returned and never guesses anything the entry does not say.

Two paths into the same library:

* :meth:`TreeEnsemble.predict_row` -- one row, a few microseconds, through the entry
  point the manifest's ``row_engine`` names: ``"array"`` walks the node arrays a few
  trees at a time (``fecc_predict_one``, the same steps and additions as a batch),
  ``"ifelse"`` runs tl2cgen's if/else code (``fecc_predict_row``).  The row is copied
  into a buffer allocated once, and the C function is called with pointers computed
  once: per call, Python does one copy and one ctypes call.
* :meth:`TreeEnsemble.predict` -- many rows through the array engine
  (``fecc_predict_batch``), split over threads.  ctypes releases the GIL during the
  call, so plain Python threads run the C code in parallel and the library needs no
  OpenMP/pthreads of its own (nothing to be missing on a scoring server).

Both return float64 values; they are computed in the model's leaf type (float32 for
XGBoost, exactly like XGBoost; float64 for LightGBM) and then widened, which is
exact.  Batch margins and ``"array"`` single-row margins equal XGBoost's bit for bit;
tl2cgen's code adds the same leaves through double literals with the base score
last, which can differ from XGBoost's in the last float32 bit (never in the path
taken).
"""
from __future__ import annotations

import ctypes
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .workers import WorkerPool

__all__ = ["TreeEnsemble", "TreeEngineError"]

_ENGINE_ABI = 3


class TreeEngineError(RuntimeError):
    """The compiled tree library or its arrays do not match the manifest entry."""


def _node_dtype(threshold_type: str) -> np.dtype:
    # Must match fecc_node_t in templates/c/engine.c.j2 (checked against the
    # library's own sizeof at load time).
    # meta, from bit 0: default left, the feature index (node_feat_bits bits),
    # categorical, listed categories go right, then the offset to the child that the
    # entry's node_child names (children are adjacent: right = left + 1).
    fields = [("thr", "<f4" if threshold_type == "float32" else "<f8"), ("meta", "<u4")]
    if threshold_type == "float64":
        fields.append(("pad", "<u4"))
    return np.dtype(fields, align=True)


class _Forest(ctypes.Structure):
    """``fecc_forest_t``: pointers to the node arrays, passed to every batch call."""

    _fields_ = [
        ("nodes", ctypes.c_void_p), ("leaf", ctypes.c_void_p),
        ("tree_root", ctypes.c_void_p), ("tree_depth", ctypes.c_void_p),
        ("tree_class", ctypes.c_void_p), ("base_score", ctypes.c_void_p),
        ("cat_bits", ctypes.c_void_p), ("cat_begin", ctypes.c_void_p),
        ("cat_nwords", ctypes.c_void_p), ("num_tree", ctypes.c_int32),
    ]


class TreeEnsemble:
    """A compiled tree ensemble, ready to score.

    Parameters
    ----------
    bundle_dir : Path
        The bundle directory the entry's paths are relative to.
    entry : dict
        The manifest entry :func:`fecc.lower.lower_trees` returned.
    n_threads : int, optional
        Threads for :meth:`predict`; default: the CPUs this process may use.

    Raises
    ------
    TreeEngineError
        The library or arrays are missing or do not match the entry.
    """

    def __init__(self, bundle_dir: Path, entry: dict[str, Any], *, n_threads: int | None = None):
        bundle_dir = Path(bundle_dir)
        self.entry = entry
        self.name = entry["name"]
        self.num_feature = int(entry["num_feature"])
        self.num_class = int(entry["num_class"])
        self.batch_engine = entry["batch_engine"]
        self.block_rows = int(entry["block_rows"])
        if self.block_rows < 1:
            raise TreeEngineError(f"{self.name}: block_rows must be positive, got {self.block_rows}")
        if int(entry.get("engine_abi", -1)) != _ENGINE_ABI:
            raise TreeEngineError(f"{self.name}: engine ABI {entry.get('engine_abi')} != {_ENGINE_ABI}")
        self.row_engine = entry.get("row_engine")
        if self.row_engine not in ("array", "ifelse"):
            raise TreeEngineError(f"{self.name}: unknown row_engine {self.row_engine!r}")
        self._workers = WorkerPool(n_threads)
        self.n_threads = self._workers.n_threads

        lib_path = bundle_dir / entry["library"]
        try:
            self._lib = ctypes.CDLL(str(lib_path.resolve()))
        except OSError as exc:
            raise TreeEngineError(f"{self.name}: cannot load {lib_path}: {exc}") from None
        lib = self._lib
        # Features are read in the threshold type: float32 for XGBoost; float64 for
        # LightGBM, which compares float64 inputs with float64 thresholds.
        self._feat_dtype = np.dtype(np.float32 if entry.get("feature_type", "float32") == "float32" else np.float64)
        self._acc_dtype = np.dtype(np.float32 if entry["leaf_type"] == "float32" else np.float64)
        for fn, res in (("fecc_abi_version", ctypes.c_int32), ("fecc_num_feature", ctypes.c_int32),
                        ("fecc_num_class", ctypes.c_int32), ("fecc_node_size", ctypes.c_int32),
                        ("fecc_node_feat_bits", ctypes.c_int32)):
            getattr(lib, fn).restype = res
            getattr(lib, fn).argtypes = []
        got = (lib.fecc_abi_version(), lib.fecc_num_feature(), lib.fecc_num_class())
        if got != (_ENGINE_ABI, self.num_feature, self.num_class):
            raise TreeEngineError(f"{self.name}: library says (abi, features, classes) = {got}, "
                                  f"manifest says {(_ENGINE_ABI, self.num_feature, self.num_class)}")
        self._batch = lib.fecc_predict_batch
        self._batch.restype = None
        self._batch.argtypes = [ctypes.POINTER(_Forest), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p]
        self._ifelse = lib.fecc_predict_rows_ifelse
        self._ifelse.restype = None
        self._ifelse.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p]

        # The arrays stay referenced by self for as long as the library may read them.
        arrays_path = bundle_dir / entry["arrays"]
        try:
            with np.load(arrays_path, allow_pickle=False) as npz:
                self._arrays = {k: np.ascontiguousarray(npz[k]) for k in npz.files}
        except (OSError, ValueError) as exc:
            raise TreeEngineError(f"{self.name}: cannot read {arrays_path}: {exc}") from None
        a = self._arrays
        expect = {
            "nodes": _node_dtype(entry["threshold_type"]), "leaf": self._acc_dtype,
            "tree_root": np.dtype("<i4"), "tree_depth": np.dtype("<i4"), "tree_class": np.dtype("<i4"),
            "base_score": self._acc_dtype, "cat_bits": np.dtype("<u4"), "cat_begin": np.dtype("<i4"),
            "cat_nwords": np.dtype("<i4"),
        }
        for key, dt in expect.items():
            if key not in a or a[key].dtype != dt:
                raise TreeEngineError(f"{self.name}: array {key!r} missing or not {dt}")
        feat_bits = int(entry.get("node_feat_bits", -1))
        if lib.fecc_node_size() != a["nodes"].dtype.itemsize or lib.fecc_node_feat_bits() != feat_bits:
            raise TreeEngineError(f"{self.name}: node layout differs between library and arrays")
        n_tree, n_node = len(a["tree_root"]), len(a["nodes"])
        if n_tree != int(entry["num_tree"]) or n_node != len(a["leaf"]) or len(a["base_score"]) != self.num_class:
            raise TreeEngineError(f"{self.name}: array sizes do not match the manifest")
        # The C engine trusts these indices; check them once here rather than per row.
        meta = a["nodes"]["meta"].astype(np.int64)
        feat = (meta >> 1) & ((1 << feat_bits) - 1)
        offset = meta >> (3 + feat_bits)
        is_cat = ((meta >> (feat_bits + 1)) & 1) != 0
        ids = np.arange(n_node, dtype=np.int64)
        # a node with offset 0 must be a leaf (numerical, NaN threshold, and the
        # default direction the engine's step takes for NaN: left when offsets point to
        # left children) so that it stays on itself; every other node's two children
        # must exist
        child = entry.get("node_child")
        if child not in ("left", "right"):
            raise TreeEngineError(f"{self.name}: unknown node_child {child!r}")
        stays = offset == 0
        leaf_ok = (((meta[stays] & 1) == (child == "left")).all() and not is_cat[stays].any()
                   and np.isnan(a["nodes"]["thr"][stays]).all())
        last_child = ids + offset + (child == "left")
        if n_node and (not leaf_ok or last_child[~stays].max(initial=0) >= n_node
                       or feat.max() >= self.num_feature
                       or a["tree_root"].min() < 0 or a["tree_root"].max() >= n_node
                       or a["tree_class"].min() < 0 or a["tree_class"].max() >= self.num_class):
            raise TreeEngineError(f"{self.name}: node arrays index out of range")
        if is_cat.any() and (a["cat_begin"][is_cat] + a["cat_nwords"][is_cat]).max() > len(a["cat_bits"]):
            raise TreeEngineError(f"{self.name}: categorical bitsets out of range")

        self._forest = _Forest(
            *(a[k].ctypes.data for k in ("nodes", "leaf", "tree_root", "tree_depth", "tree_class",
                                          "base_score", "cat_bits", "cat_begin", "cat_nwords")),
            n_tree,
        )
        self._forest_ref = ctypes.byref(self._forest)
        # Single row: one input and one output buffer, and the arguments of the C call
        # (for margin, for transformed output) as ctypes objects, built once.  The
        # function objects come from lib[...] (fresh ones, without argtypes): ctypes then
        # passes the prepared objects as they are, the cheapest call it has.
        #   fecc_predict_one(const fecc_forest_t*, const double* x, int32_t margin, acc* out)
        #   fecc_predict_row(const double* x, int32_t margin, acc* out)
        self._row_in = np.zeros(self.num_feature, dtype=np.float64)
        self._row_pack = struct.Struct("=" + "d" * self.num_feature).pack_into
        acc = ctypes.c_float if self._acc_dtype == np.float32 else ctypes.c_double
        self._row_out = (acc * self.num_class)()
        self._row_out_np = np.frombuffer(self._row_out, dtype=self._acc_dtype)
        x_ptr = ctypes.c_void_p(self._row_in.ctypes.data)
        out_ptr = ctypes.c_void_p(ctypes.addressof(self._row_out))
        if self.row_engine == "array":
            self._row_fn = lib["fecc_predict_one"]
            self._row_args = ((self._forest_ref, x_ptr, 1, out_ptr), (self._forest_ref, x_ptr, 0, out_ptr))
        else:
            self._row_fn = lib["fecc_predict_row"]
            self._row_args = ((x_ptr, 1, out_ptr), (x_ptr, 0, out_ptr))
        self._row_fn.restype = None
        self._row_shape = (self.num_feature,)
        self._row_lock = threading.Lock()

    @property
    def forest(self) -> Any:
        """``ctypes.byref`` of the ``fecc_forest_t`` over this ensemble's node arrays (valid
        while this object lives): what ``fecc_predict_batch``/``fecc_predict_one`` take,
        here and in the bundle's ensemble library (:mod:`fecc_runtime.ensemble`)."""
        return self._forest_ref

    @property
    def node_layout(self) -> tuple[int, int]:
        """(bytes per node, feature bits of ``meta``) of the node arrays."""
        return int(self._arrays["nodes"].dtype.itemsize), int(self.entry["node_feat_bits"])

    # ------------------------------------------------------------------ batch

    def predict(self, X: np.ndarray, *, margin: bool = False) -> np.ndarray:
        """Score rows.

        Parameters
        ----------
        X : numpy.ndarray
            ``(n, num_feature)`` features; C-contiguous in the entry's ``feature_type``
            (float32 for XGBoost, float64 for LightGBM) is used as is, anything else is
            converted (a copy; float32 -> float64 is exact).  NaN means missing.
        margin : bool
            Return the raw sum of leaves plus base score, before the output transform.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(n,)`` for one output column, ``(n, num_class)`` otherwise.
        """
        X = np.ascontiguousarray(X, dtype=self._feat_dtype)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ValueError(f"{self.name}: expected X of shape (n, {self.num_feature}), got {X.shape}")
        n = X.shape[0]
        out = np.empty((n, self.num_class), dtype=self._acc_dtype)
        if n:
            self._run_batch(X, n, int(bool(margin)), out)
        out = out.astype(np.float64, copy=False)
        return out[:, 0] if self.num_class == 1 else out

    def _call(self, X: np.ndarray, lo: int, hi: int, margin: int, out: np.ndarray) -> None:
        xp = X.ctypes.data + lo * self.num_feature * X.itemsize
        op = out.ctypes.data + lo * self.num_class * out.itemsize
        if self.batch_engine == "ifelse":
            self._ifelse(xp, hi - lo, margin, op)
        else:
            self._batch(self._forest_ref, xp, hi - lo, margin, op)

    def _run_batch(self, X: np.ndarray, n: int, margin: int, out: np.ndarray) -> None:
        # Split into one contiguous range per thread, on block boundaries; below a
        # few blocks a thread pool costs more than it gains.
        n_parts = min(self.n_threads, max(1, n // (4 * self.block_rows)))
        if n_parts == 1:
            self._call(X, 0, n, margin, out)
            return
        per = -(-n // n_parts)
        per = -(-per // self.block_rows) * self.block_rows
        bounds = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
        pool = self._get_pool()
        futures = [pool.submit(self._call, X, lo, hi, margin, out) for lo, hi in bounds[1:]]
        self._call(X, *bounds[0], margin, out)  # this thread takes the first part
        for fut in futures:
            fut.result()

    def _get_pool(self) -> ThreadPoolExecutor:
        return self._workers.get(f"fecc-{self.name}")

    # ------------------------------------------------------------- single row

    def predict_row(self, x: np.ndarray, *, margin: bool = False) -> float | np.ndarray:
        """Score one row (the low-latency path; ``row_engine`` picks the C code).

        Parameters
        ----------
        x : numpy.ndarray, tuple or list
            ``num_feature`` numbers (any numeric dtype; in a sequence, None is missing
            too); NaN = missing.  Values are rounded to the entry's ``feature_type`` as
            numpy's ``astype`` would (float32 for XGBoost).
        margin : bool
            Return the margin instead of the transformed output.

        Returns
        -------
        float or numpy.ndarray
            A Python float for one output column, else a float64 array ``(num_class,)``.
        """
        with self._row_lock:  # one shared input and output buffer: no allocation per call
            if type(x) is np.ndarray and x.shape == self._row_shape:
                self._row_in[:] = x
            else:
                self._load_row(x)
            self._row_fn(*self._row_args[not margin])
            if self.num_class == 1:
                return self._row_out[0]
            return self._row_out_np.astype(np.float64)

    def _load_row(self, x: Any) -> None:
        """Copy a row that is not a ``(num_feature,)`` array into the input buffer."""
        if isinstance(x, (tuple, list)):
            try:  # floats and ints: one struct pack, no array
                self._row_pack(self._row_in, 0, *x)
                return
            except (struct.error, TypeError):
                pass
        arr = np.asarray(x, dtype=np.float64)  # None -> NaN, numeric strings, ...
        if arr.shape != self._row_shape:
            raise ValueError(f"{self.name}: expected x of shape ({self.num_feature},), got {arr.shape}")
        self._row_in[:] = arr

    def close(self) -> None:
        """Stop the worker threads (the library stays loaded until the process ends)."""
        self._workers.close()

    def __repr__(self) -> str:
        return (f"TreeEnsemble({self.name!r}, trees={self.entry['num_tree']}, "
                f"features={self.num_feature}, classes={self.num_class}, engine={self.batch_engine!r})")
