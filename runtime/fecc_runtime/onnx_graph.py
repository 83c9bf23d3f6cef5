"""Score a bundle through its one ONNX graph (``model.onnx``, ``fecc compile --emit onnx``).

The graph (built by ``fecc.lower.onnx_graph``) holds the legacy trees, the experts, the
aggregator and the link: input ``X`` ``[N, features]`` float32 in manifest order,
outputs ``prediction`` and ``margin``.  Nothing else of the bundle runs: no compiled
library is loaded, so such a bundle scores wherever onnxruntime does.

onnxruntime is imported when such a bundle is loaded, never at ``import
fecc_runtime``.  Sessions run on one intra-op thread (onnxruntime's tree-parallel
modes would re-associate the sums of the leaves, one thread keeps XGBoost's order);
batches are split over this module's own threads instead.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError
from .format import feature_rows
from .workers import WorkerPool

__all__ = ["OnnxGraph"]

#: Rows below which a batch is not split over threads.
MIN_ROWS_PER_THREAD = 256


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BundleError(
            "this bundle scores through its ONNX graph (model.onnx) and needs onnxruntime, which is not installed: "
            "pip install 'fecc-runtime[onnx]', or load it with engine='native'"
        ) from None
    return onnxruntime


class OnnxGraph:
    """``model.onnx``, ready to score.

    Parameters
    ----------
    bundle_dir : Path
        The bundle directory.
    entry : dict
        The manifest's ``onnx_model`` entry.
    n_threads : int, optional
        Threads for a batch; default: the CPUs this process may use.

    Raises
    ------
    BundleError
        onnxruntime is missing, or the graph cannot be loaded or does not match the entry.
    """

    def __init__(self, bundle_dir: Path, entry: dict[str, Any], *, n_threads: int | None = None):
        ort = _import_onnxruntime()
        self.entry = entry
        self.num_feature = int(entry["num_feature"])
        self.num_class = int(entry.get("num_class", 1))
        path = Path(bundle_dir) / entry["path"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(entry.get("threads", 1))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(path.read_bytes(), opts, providers=["CPUExecutionProvider"])
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc}") from None
        except Exception as exc:  # onnxruntime raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(f"onnxruntime {ort.__version__} cannot load {path.name}: {first} "
                              "(ai.onnx.ml opset 5 TreeEnsemble needs onnxruntime >= 1.21)") from None
        outs = entry["outputs"]
        self._input = entry["input"]
        self._outputs = [outs["prediction"], outs["margin"]]
        inputs = self._session.get_inputs()
        names = [o.name for o in self._session.get_outputs()]
        if ([i.name for i in inputs] != [self._input] or inputs[0].type != "tensor(float)"
                or inputs[0].shape[1:] != [self.num_feature] or sorted(names) != sorted(self._outputs)):
            raise BundleError(f"{path.name} does not have the input and outputs the manifest names")
        self._workers = WorkerPool(n_threads)
        self.n_threads = self._workers.n_threads

    def _run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred, margin = self._session.run(self._outputs, {self._input: X})
        return pred, margin

    def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(prediction, margin)`` of rows ``X`` (``(n, num_feature)``, converted to float32 as the
        compiled trees read it), float64, ``(n,)`` or ``(n, num_class)``."""
        try:
            X = feature_rows(X, self.num_feature)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        n = X.shape[0]
        if n == 0:
            shape = (0,) if self.num_class == 1 else (0, self.num_class)
            return np.zeros(shape), np.zeros(shape)
        n_parts = min(self.n_threads, max(1, n // MIN_ROWS_PER_THREAD))
        if n_parts == 1:
            pred, margin = self._run(X)
        else:
            per = -(-n // n_parts)
            parts = [X[lo:lo + per] for lo in range(0, n, per)]
            pool = self._get_pool()
            futures = [pool.submit(self._run, p) for p in parts[1:]]
            done = [self._run(parts[0])] + [f.result() for f in futures]
            pred = np.concatenate([d[0] for d in done])
            margin = np.concatenate([d[1] for d in done])
        return pred.astype(np.float64, copy=False), margin.astype(np.float64, copy=False)

    def _get_pool(self) -> ThreadPoolExecutor:
        return self._workers.get("fecc-onnx-graph")

    def close(self) -> None:
        """Stop the worker threads."""
        self._workers.close()
