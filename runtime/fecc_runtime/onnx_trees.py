"""Score a tree ensemble lowered to ONNX (``trees/{name}.onnx``) with onnxruntime.

The graph (built by ``fecc.lower.onnx_trees``) returns the margin; this module applies
the output transform the manifest entry names, the same way the C engine does.
:class:`OnnxTreeEnsemble` has :class:`fecc_runtime.trees.TreeEnsemble`'s interface
(``predict``, ``predict_row``, ``close``), so a bundle scores the same through either.

onnxruntime is imported when an ONNX bundle is loaded, never at ``import fecc_runtime``:
the runtime still needs only numpy for C bundles.  Each session runs with one
onnxruntime thread and batches are split over this module's own threads: onnxruntime's
tree-parallel modes re-associate the sum of the leaves, one thread per call keeps the
model's order (and XGBoost's margins bit for bit).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError
from .trees import TreeEngineError
from .workers import WorkerPool

__all__ = ["OnnxTreeEnsemble", "postprocess"]

#: Rows below which a batch is not split over threads.
MIN_ROWS_PER_THREAD = 256


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BundleError(
            "this bundle scores its trees with ONNX and needs onnxruntime, which is not installed: "
            "pip install 'fecc-runtime[onnx]' (or recompile the bundle with --trees c)"
        ) from None
    return onnxruntime


def postprocess(margin: np.ndarray, kind: str, sigmoid_alpha: float = 1.0) -> np.ndarray:
    """The output transform of a tree entry (``postprocess``), in ``margin``'s dtype, as
    the C engine computes it; ``margin`` is ``(n, num_class)``."""
    dt = margin.dtype.type
    with np.errstate(over="ignore"):
        if kind in ("identity", "identity_multiclass"):
            return margin
        if kind in ("sigmoid", "multiclass_ova"):
            return dt(1) / (dt(1) + np.exp(-dt(sigmoid_alpha) * margin))
        if kind == "exponential":
            return np.exp(margin)
        if kind == "logarithm_one_plus_exp":
            return np.log1p(np.exp(margin))
        if kind == "softmax":
            e = np.exp(margin - margin.max(axis=1, keepdims=True))
            return e / e.astype(np.float64).sum(axis=1, keepdims=True).astype(margin.dtype)
    raise TreeEngineError(f"unknown output transform {kind!r}")


class OnnxTreeEnsemble:
    """An ONNX tree ensemble, ready to score.

    Parameters
    ----------
    bundle_dir : Path
        The bundle directory the entry's paths are relative to.
    entry : dict
        The manifest entry ``fecc.lower.onnx_trees.lower_onnx`` returned.
    n_threads : int, optional
        Threads for :meth:`predict`; default: the CPUs this process may use.

    Raises
    ------
    BundleError
        onnxruntime is not installed.
    TreeEngineError
        The graph is missing, cannot be loaded, or does not match the entry.
    """

    def __init__(self, bundle_dir: Path, entry: dict[str, Any], *, n_threads: int | None = None):
        ort = _import_onnxruntime()
        self.entry = entry
        self.name = entry["name"]
        self.num_feature = int(entry["num_feature"])
        self.num_class = int(entry["num_class"])
        self.batch_engine = "onnx"
        self._postprocess = entry["postprocess"]
        self._alpha = float(entry.get("sigmoid_alpha", 1.0))
        self._feat_dtype = np.dtype(np.float32 if entry["feature_type"] == "float32" else np.float64)
        self._workers = WorkerPool(n_threads)
        self.n_threads = self._workers.n_threads

        path = Path(bundle_dir) / entry["onnx"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            data = path.read_bytes()
            self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except OSError as exc:
            raise TreeEngineError(f"{self.name}: cannot read {path}: {exc}") from None
        except Exception as exc:  # onnxruntime raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TreeEngineError(f"{self.name}: onnxruntime {ort.__version__} cannot load {path.name}: {first} "
                                  "(ai.onnx.ml opset 5 TreeEnsemble needs onnxruntime >= 1.21)") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        want_type = "tensor(float)" if self._feat_dtype == np.float32 else "tensor(double)"
        if ([i.name for i in inputs] != [entry["input"]] or [o.name for o in outputs] != [entry["output"]]
                or inputs[0].type != want_type or inputs[0].shape[1:] != [self.num_feature]):
            raise TreeEngineError(f"{self.name}: {path.name} does not have the input/output the manifest names")
        self._input, self._outputs = entry["input"], [entry["output"]]

    # ------------------------------------------------------------------ batch

    def _margin(self, X: np.ndarray) -> np.ndarray:
        out = self._session.run(self._outputs, {self._input: X})[0]
        return out.reshape(len(X), self.num_class)

    def predict(self, X: np.ndarray, *, margin: bool = False) -> np.ndarray:
        """Score rows.

        Parameters
        ----------
        X : numpy.ndarray
            ``(n, num_feature)`` features, converted to the entry's ``feature_type``
            (float32 for XGBoost, float64 for LightGBM); NaN means missing.
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
        n_parts = min(self.n_threads, max(1, n // MIN_ROWS_PER_THREAD))
        if n == 0:
            out = np.zeros((0, self.num_class), dtype=self._feat_dtype)
        elif n_parts == 1:
            out = self._margin(X)
        else:
            per = -(-n // n_parts)
            parts = [X[lo:lo + per] for lo in range(0, n, per)]
            pool = self._get_pool()
            futures = [pool.submit(self._margin, p) for p in parts[1:]]
            out = np.concatenate([self._margin(parts[0])] + [f.result() for f in futures])
        if not margin:
            out = postprocess(out, self._postprocess, self._alpha)
        out = out.astype(np.float64, copy=False)
        return out[:, 0] if self.num_class == 1 else out

    def _get_pool(self) -> ThreadPoolExecutor:
        return self._workers.get(f"fecc-onnx-{self.name}")

    # ------------------------------------------------------------- single row

    def predict_row(self, x: np.ndarray, *, margin: bool = False) -> float | np.ndarray:
        """Score one row; a Python float for one output column, else a float64 ``(num_class,)`` array."""
        if x.dtype != self._feat_dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=self._feat_dtype)
        if x.shape != (self.num_feature,):
            raise ValueError(f"{self.name}: expected x of shape ({self.num_feature},), got {x.shape}")
        out = self._session.run(self._outputs, {self._input: x.reshape(1, self.num_feature)})[0]
        if margin and self.num_class == 1:
            return float(out[0])
        out = out.reshape(1, self.num_class)
        if not margin:
            out = postprocess(out, self._postprocess, self._alpha)
        return float(out[0, 0]) if self.num_class == 1 else out[0].astype(np.float64)

    def close(self) -> None:
        """Stop the worker threads."""
        self._workers.close()

    def __repr__(self) -> str:
        return (f"OnnxTreeEnsemble({self.name!r}, trees={self.entry['num_tree']}, "
                f"features={self.num_feature}, classes={self.num_class})")
