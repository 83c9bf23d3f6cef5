"""Loading, verifying and serving a fecc bundle.

A bundle is a directory with ``manifest.json`` at its root.  :func:`load` checks the
manifest's format version, the sha256 of every file it lists, then loads the compiled
libraries and replays the stored parity vectors; any difference refuses the bundle
with a :class:`BundleError` before a single request is served.

Scoring follows the manifest and nothing else:

1. legacy margin ``m = legacy(x)`` (compiled trees);
2. if the bundle has experts (the safety gate let them through), the base margin
   ``b = shift + scale · m`` (the aggregator's ``base_map``; the identity when absent) and,
   with the experts' features ``φ = [b, f_k, f_k − b, f_k / b …]`` (NaN outside each
   expert's region): ``margin = b + offset(φ) + aggregator_trees(concat(x, φ))``, where
   ``offset`` is ``Σ_k (f_k − b)`` over the experts whose region holds the row when the aggregator's
   ``base_margin`` is ``"legacy+experts"`` and 0 when it is ``"legacy"``, and the
   trees term is absent for a ``"sum"`` aggregator;
3. the task's link turns the margin into the output (sigmoid for binary models).

Which code computes it (the ``engine`` of :func:`load`; default: what the manifest says):

* ``"c"`` — ``experts_engine: "c"``: the bundle's ensemble library
  (``ensemble/ensemble.so``, :mod:`fecc_runtime.ensemble`) scores a row, or a batch, in
  one C call: legacy trees, experts lowered from their IR to C, aggregator trees;
* ``"numba"`` — the steps above one by one: the compiled trees, the numba module
  ``experts/experts.py`` (the readable reference; plain Python without numba) and numpy;
* ``"onnx"`` — ``emit: "onnx"``: the one graph ``model.onnx`` through onnxruntime
  (:mod:`fecc_runtime.onnx_graph`; nothing else of the bundle is executed);
* ``"trees"`` — a legacy-only bundle: the compiled trees alone.
"""
from __future__ import annotations

import json
import math
import operator
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import BundleError
# the format contract (re-exported: callers know these names from this module)
from .format import (FORMAT, FORMAT_VERSION, SUPPORTED_VERSIONS, base_map, base_margin,  # noqa: F401
                     category_code, category_lookup, format_version, input_layout, sha256_file)


def apply_link(margin: np.ndarray, link: str) -> np.ndarray:
    """Turn margins into outputs: ``logistic`` (per class too), ``identity``, ``exp``,
    ``softmax`` (last axis) or ``argmax`` (the class index, XGBoost ``multi:softmax``)."""
    m = np.asarray(margin, dtype=np.float64)
    if link == "logistic":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-m))
    if link == "identity":
        return m
    if link == "exp":
        with np.errstate(over="ignore"):
            return np.exp(m)
    if link == "softmax":
        z = m - m.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    if link == "argmax":
        return np.argmax(m, axis=-1).astype(np.float64)
    raise BundleError(f"unknown link function {link!r} in manifest")


def tree_engine(path: Path, entry: dict):
    """The engine a manifest tree entry names: ``"c"`` (the compiled library, the default)
    or ``"onnx"`` (onnxruntime, imported only then)."""
    engine = entry.get("engine", "c")
    if engine == "c":
        from .trees import TreeEnsemble  # numpy + ctypes only

        return TreeEnsemble(path, entry)
    if engine == "onnx":
        from .onnx_trees import OnnxTreeEnsemble

        return OnnxTreeEnsemble(path, entry)
    raise BundleError(f"unknown tree engine {engine!r} in manifest; this runtime knows 'c' and 'onnx'")


#: What :func:`load` takes as ``engine``: ``None`` (the manifest's choice), ``"native"``
#: (the compiled code: C, or numba for experts the bundle has no C for), ``"numba"``
#: (experts through the numba module) or ``"onnx"`` (``model.onnx``).
ENGINES = (None, "native", "numba", "onnx")


def choose_engine(manifest: dict, engine: str | None = None) -> str:
    """The engine that scores a bundle: ``"onnx"``, ``"c"``, ``"numba"`` or ``"trees"`` (see the module doc)."""
    if engine not in ENGINES:
        raise BundleError(f"engine must be one of {', '.join(repr(e) for e in ENGINES)}, got {engine!r}")
    emit = manifest.get("emit", "native")
    if emit not in ("native", "onnx"):
        raise BundleError(f"unknown emit {emit!r} in manifest; this runtime knows 'native' and 'onnx'")
    if engine == "onnx" or (engine is None and emit == "onnx"):
        if not manifest.get("onnx_model"):
            raise BundleError("this bundle has no ONNX graph (compile it with --emit onnx)")
        return "onnx"
    if not manifest.get("experts"):
        return "trees"
    if engine == "numba":
        return "numba"
    chosen = manifest.get("experts_engine") or "numba"
    if chosen not in ("c", "numba"):
        raise BundleError(f"unknown experts_engine {chosen!r} in manifest; this runtime knows 'c' and 'numba'")
    if chosen == "c" and not manifest.get("ensemble"):
        raise BundleError("manifest says experts_engine 'c' but lists no ensemble library")
    return chosen


class Bundle:
    """A verified, loaded bundle.  Create with :func:`fecc_runtime.load`.

    ``engine`` is what scores it (``"c"``, ``"numba"``, ``"onnx"`` or ``"trees"``, see
    the module doc).
    """

    #: fingerprint (``sha256:…``) of the trusted key whose signature was verified at load; ``None`` when
    #: no trusted keys were given (the bundle may still carry a ``manifest.sig``)
    signed_by: str | None = None

    def __init__(self, path: Path, manifest: dict, *, engine: str | None = None):
        try:
            self._setup(path, manifest, engine)
        except _MALFORMED as exc:  # a key missing, a value of the wrong type: never a traceback
            raise _malformed(path, exc) from None

    def _setup(self, path: Path, manifest: dict, engine: str | None = None) -> None:
        from .trees import TreeEngineError, TreeEnsemble

        self.path = path
        self.manifest = manifest
        self.task = manifest["task"]
        self.feature_names: tuple[str, ...] = tuple(f["name"] for f in manifest["features"])
        self._row_shape = (len(self.feature_names),)
        # a mapping's values in manifest order, as a tuple, in one C call
        self._values = (operator.itemgetter(*self.feature_names) if len(self.feature_names) > 1
                        else lambda r, n=self.feature_names[0]: (r[n],))
        self._index = {n: i for i, n in enumerate(self.feature_names)}
        self._categories = {
            f["name"]: category_lookup(f["categories"])
            for f in manifest["features"] if f.get("categories") is not None
        }
        self.link = self.task["link"]
        self.engine = choose_engine(manifest, engine)
        # the experts' input row: the features, then the transforms (format.input_layout checks the names)
        self.transform_names = tuple(input_layout(self.feature_names, manifest.get("transforms"))[
            len(self.feature_names):])
        self._experts = None
        self._ensemble = None
        self._graph = None
        self._row_scorer = None
        self._row_by_name = False
        self._offset = False
        if self.engine == "onnx":
            from .onnx_graph import OnnxGraph

            self._legacy = self._aggregator = None
            self._graph = OnnxGraph(path, manifest["onnx_model"])
            if self._graph.num_feature != len(self.feature_names):
                raise BundleError(f"manifest lists {len(self.feature_names)} features, but model.onnx reads "
                                  f"{self._graph.num_feature}")
            return
        agg = manifest.get("aggregator") or {}
        try:
            self._legacy = tree_engine(path, manifest["legacy"])
            self._aggregator = tree_engine(path, agg["trees"]) if agg.get("trees") else None
            if self.engine == "c":
                from .ensemble import CompiledEnsemble

                self._ensemble = CompiledEnsemble(path, manifest["ensemble"], self._legacy, self._aggregator)
        except BundleError:
            raise
        except (OSError, TreeEngineError) as exc:
            raise BundleError(
                f"cannot load the compiled library of {path}: {exc} "
                "(built for another CPU/OS? recompile the bundle on this platform)"
            ) from None
        n_legacy = getattr(self._legacy, "num_feature", len(self.feature_names))
        if n_legacy != len(self.feature_names):
            raise BundleError(f"manifest lists {len(self.feature_names)} features, but the compiled legacy "
                              f"trees read {n_legacy}")
        self._offset = agg.get("base_margin") == "legacy+experts"
        self._base_map = base_map(agg.get("base_map"))
        if manifest.get("experts") and agg.get("base_margin") not in ("legacy", "legacy+experts"):
            raise BundleError(f"unknown aggregator base_margin {agg.get('base_margin')!r} in manifest")
        if self._ensemble is not None and manifest["ensemble"].get("base_margin") != agg.get("base_margin"):
            raise BundleError("the ensemble library and the aggregator disagree on the base margin")
        if self._ensemble is not None and base_map(manifest["ensemble"].get("base_map")) != self._base_map:
            raise BundleError("the ensemble library and the aggregator disagree on the base map")
        # what scores one row in one call (None: the experts go through numba, step by step)
        self._row_scorer = self._ensemble if self._ensemble is not None else (
            self._legacy if self.engine == "trees" else None)
        # TreeEnsemble / CompiledEnsemble.predict_row take the values of a dict row as a tuple
        self._row_by_name = isinstance(self._row_scorer, TreeEnsemble) or self._ensemble is not None
        self._row_by_name = self._row_by_name and not self._categories
        if self.engine == "numba":
            from .experts import ExpertLoadError, ExpertSet

            try:
                self._experts = ExpertSet(path, manifest["experts"], manifest["experts_module"],
                                          transform_names=[t["name"] for t in manifest.get("transforms") or ()])
            except ExpertLoadError as exc:
                raise BundleError(str(exc)) from None

    # ------------------------------------------------------------------ inputs
    @property
    def uses_experts(self) -> bool:
        """True when the safety gate let the experts and aggregator into this bundle."""
        return bool(self.manifest.get("experts"))

    def _column(self, name: str, values, categories: str = "values") -> np.ndarray:
        cats = self._categories.get(name)
        if cats is not None and categories == "values":
            # category values map to the codes the legacy model was trained with;
            # unseen or missing categories become NaN, i.e. XGBoost's missing branch
            vals = np.asarray(values, dtype=object).ravel()
            return np.array([self._scalar(name, v) for v in vals], dtype=np.float64)
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            if cats is not None:
                raise BundleError(f"categorical feature {name!r} must hold integer category codes "
                                  "(categories='codes')") from None
            raise BundleError(f"feature {name!r} must be numeric") from None
        return arr

    def matrix(self, data: Any, *, categories: str = "values") -> np.ndarray:
        """Input rows as a float64 (n, n_features) matrix in manifest order (NaN = missing).

        ``data`` is a DataFrame or a mapping of columns (columns by name; extra columns
        ignored; categorical features hold their category values, or, with
        ``categories="codes"``, the integer codes the model was trained on), or a 2-D
        numeric array with the features in manifest order — the model's own input space,
        so categorical features there are already their integer codes.
        """
        if categories not in ("values", "codes"):
            raise BundleError(f"categories must be 'values' or 'codes', got {categories!r}")
        if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and data and isinstance(data[0], (list, tuple, np.ndarray))):
            try:
                arr = np.asarray(data)
            except (TypeError, ValueError, OverflowError):   # ragged rows
                raise BundleError(f"rows must all have {len(self.feature_names)} numeric values") from None
            if arr.dtype.kind == "c":   # casting would drop the imaginary part without a word
                raise BundleError("input array must be real numbers, not complex")
            if arr.ndim != 2 or arr.shape[1] != len(self.feature_names):
                raise BundleError(
                    f"expected a 2-D array with {len(self.feature_names)} columns in manifest order, got shape {arr.shape}"
                )
            try:
                return np.ascontiguousarray(arr, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise BundleError("input array must be numeric") from None
        if hasattr(data, "columns") or isinstance(data, Mapping):
            keys = set(data.columns) if hasattr(data, "columns") else set(data.keys())
            missing = [n for n in self.feature_names if n not in keys]
            if missing:
                shown = ", ".join(repr(m) for m in missing[:8])
                raise BundleError(f"input lacks {len(missing)} feature column(s): {shown}")
            cols = [self._column(n, data[n], categories) for n in self.feature_names]
            if cols and any(c.shape != cols[0].shape for c in cols):
                raise BundleError("input columns have different lengths")
            return np.ascontiguousarray(np.column_stack(cols) if cols else np.empty((0, 0)), dtype=np.float64)
        raise BundleError(f"cannot score a {type(data).__name__}; pass a DataFrame, a mapping of columns or a 2-D array")

    def row(self, row: Mapping[str, Any] | Sequence[float]) -> np.ndarray:
        """One input row as a float64 vector in manifest order.

        A dict (by name) or a list holds raw values (category values for categorical
        features); a 1-D numpy array is numeric model input (categorical codes).
        """
        if isinstance(row, np.ndarray):
            if row.shape != (len(self.feature_names),):
                raise BundleError(f"expected {len(self.feature_names)} values in manifest order, got shape {row.shape}")
            if row.dtype.kind == "c":
                raise BundleError("input row must be real numbers, not complex")
            try:
                return np.ascontiguousarray(row, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise BundleError("input row must be numeric") from None
        if isinstance(row, Mapping) and not self._categories:
            # one conversion for the whole row (None -> NaN, as _scalar does); anything
            # odd falls through to the per-value loop, which names the culprit
            try:
                out = np.array(self._values(row), dtype=np.float64)
                if out.shape == self._row_shape:
                    return out
            except (KeyError, TypeError, ValueError, OverflowError):
                pass
        out = np.empty(len(self.feature_names), dtype=np.float64)
        if isinstance(row, Mapping):
            for i, name in enumerate(self.feature_names):
                try:
                    v = row[name]
                except KeyError:
                    raise BundleError(f"input row lacks feature {name!r}") from None
                out[i] = self._scalar(name, v)
            return out
        values = list(row)
        if len(values) != len(self.feature_names):
            raise BundleError(f"expected {len(self.feature_names)} values in manifest order, got {len(values)}")
        for i, (name, v) in enumerate(zip(self.feature_names, values)):
            out[i] = self._scalar(name, v)
        return out

    def _scalar(self, name: str, v) -> float:
        cats = self._categories.get(name)
        if cats is not None:
            return category_code(cats, v, name)
        if v is None:
            return math.nan
        try:
            return float(v)
        except (TypeError, ValueError, OverflowError):
            raise BundleError(f"feature {name!r} must be numeric, got {_short(v)}") from None

    # ----------------------------------------------------------------- scoring
    def predict_margin_matrix(self, X: np.ndarray) -> np.ndarray:
        """Margins for a float64 matrix from :meth:`matrix` (or a float32 one in manifest order)."""
        if self._graph is not None:
            return self._graph.run(X)[1]
        if self._ensemble is not None:
            return self._ensemble.predict_margin(X)
        # each tree library converts to its own feature type: float32 for XGBoost
        # (it compares in float32), float64 for LightGBM
        margin = np.asarray(self._legacy.predict(X, margin=True), dtype=np.float64)
        if self._experts is None:
            return margin
        # experts are fitted on, and always see, float32-rounded features (and the transforms
        # computed from them, each rounded through float32: the input row of the format)
        X64 = self._experts.input_rows(np.ascontiguousarray(X, dtype=np.float32).astype(np.float64))
        base = base_margin(margin, *self._base_map)
        phi = self._experts.features(X64, base)
        out = base + self._experts.offset(phi) if self._offset else base
        if self._aggregator is not None:
            out += np.asarray(self._aggregator.predict(np.hstack([X64, phi]), margin=True), dtype=np.float64)
        return out

    def predict(self, data: Any, *, output: str = "prediction", categories: str = "values") -> np.ndarray:
        """Score many rows.

        Parameters
        ----------
        data : DataFrame, mapping of columns, or 2-D array in manifest order.
        output : ``"prediction"`` (probability for classifiers, value for regression)
            or ``"margin"`` (raw score before the link function).
        categories : how a DataFrame's or mapping's categorical columns are read:
            ``"values"`` (the category values, matched to the stored categories) or
            ``"codes"`` (the integer codes the model was trained on).  Arrays are codes.
        """
        if type(data) is np.ndarray and data.dtype == np.float32 and data.ndim == 2 and data.shape[1:] == self._row_shape:
            X = data  # float32 is exact in either feature type: no float64 copy
        else:
            X = self.matrix(data, categories=categories)
        if self._graph is not None and output == "prediction":
            return self._graph.run(X)[0]  # the graph's own link
        margin = self.predict_margin_matrix(X)
        if output == "margin":
            return margin
        if output != "prediction":
            raise BundleError(f"output must be 'prediction' or 'margin', got {output!r}")
        return apply_link(margin, self.link)

    def predict_one(self, row: Mapping[str, Any] | Sequence[float], *, output: str = "prediction"):
        """Score one row given as a dict (by feature name) or a sequence in manifest order."""
        scorer = self._row_scorer
        if scorer is None:  # numba experts, or the ONNX graph: a batch of one
            if self._graph is not None and output == "prediction":
                p = self._graph.run(self.row(row)[None, :])[0][0]
                return float(p) if np.ndim(p) == 0 else p
            m = self.predict_margin_matrix(self.row(row)[None, :])[0]
            m = float(m) if np.ndim(m) == 0 else m
        elif type(row) is np.ndarray and row.shape == self._row_shape and row.dtype.kind == "f":
            m = scorer.predict_row(row, margin=True)  # converted in the engine's own buffer
        elif self._row_by_name and isinstance(row, Mapping):
            try:  # the values by name straight into the engine's buffer
                m = scorer.predict_row(self._values(row), margin=True)
            except (KeyError, TypeError, ValueError, OverflowError):
                m = scorer.predict_row(self.row(row), margin=True)  # or row() names the culprit
        else:
            m = scorer.predict_row(self.row(row), margin=True)
        if output == "margin":
            return m
        if output != "prediction":
            raise BundleError(f"output must be 'prediction' or 'margin', got {output!r}")
        if isinstance(m, float) and self.link == "logistic":
            # scalar fast path (numpy on one value costs microseconds); same formula
            return 1.0 / (1.0 + math.exp(-m)) if m > -709.0 else 0.0
        out = apply_link(m, self.link)
        return out if np.ndim(out) else float(out)

    def __repr__(self):
        kind = "legacy + experts" if self.uses_experts else "legacy only"
        return (f"<fecc bundle {self.path} ({kind}, {len(self.feature_names)} features, {self.task['kind']}, "
                f"engine {self.engine})>")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: What reading a malformed manifest raises (a key missing, a value of the wrong type, a zero count ...)
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError)


def _malformed(path: Path, exc: BaseException) -> BundleError:
    if isinstance(exc, KeyError) and exc.args:
        what = f"no {exc.args[0]!r}"
    else:
        what = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
    return BundleError(f"manifest.json of {path} is malformed ({what}); recompile the bundle")


def _read_manifest_bytes(path: Path) -> bytes:
    mpath = path / "manifest.json"
    if not path.exists():
        raise BundleError(f"bundle not found: {path}")
    if not mpath.is_file():
        raise BundleError(f"{path} is not a fecc bundle (no manifest.json)")
    return mpath.read_bytes()


def _parse_manifest(path: Path, raw: bytes) -> dict:
    mpath = path / "manifest.json"
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"manifest.json of {path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a fecc bundle manifest")
    if manifest.get("format_version") not in SUPPORTED_VERSIONS:
        raise BundleError(
            f"bundle format version {manifest.get('format_version')!r} is not supported by this runtime "
            f"(supports {', '.join(map(str, SUPPORTED_VERSIONS))}); use a matching fecc_runtime"
        )
    needed = format_version(manifest)
    if needed > manifest["format_version"]:
        raise BundleError(f"{mpath} says format version {manifest['format_version']}, but its aggregator has a "
                          f"base_map (format version {needed}): the manifest was altered")
    return manifest


def _read_manifest(path: Path) -> dict:
    return _parse_manifest(path, _read_manifest_bytes(path))


def verify_files(path: Path, manifest: dict) -> None:
    """Check that every listed file exists and has its recorded sha256; nothing unlisted is executable code."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError("manifest lists no files")
    root = path.resolve()
    for rel, digest in sorted(files.items()):
        if not isinstance(digest, str) or not rel:
            raise BundleError(f"manifest lists {rel!r} without a sha256")
        target = (path / rel).resolve()
        if root not in target.parents:
            raise BundleError(f"manifest lists a file outside the bundle: {rel}")
        if not target.is_file():
            raise BundleError(f"bundle file missing: {rel}")
        actual = sha256_file(target)
        if actual != digest:
            raise BundleError(f"bundle file {rel} was modified: sha256 {actual[:12]}… differs from manifest {digest[:12]}…")


def replay_parity(bundle: Bundle) -> None:
    """Score the stored parity inputs and compare with the outputs recorded at compile time."""
    try:
        _replay_parity(bundle)
    except (*_MALFORMED, OSError, EOFError) as exc:  # the manifest's parity entry is unusable
        raise _malformed(bundle.path, exc) from None


def _replay_parity(bundle: Bundle) -> None:
    spec = bundle.manifest.get("parity")
    if not spec:
        raise BundleError("manifest has no parity vectors")
    inputs = np.load(bundle.path / spec["inputs"], allow_pickle=False)
    expected = np.load(bundle.path / spec["expected"], allow_pickle=False)
    got = bundle.predict(inputs, output=spec.get("output", "prediction"))
    if got.shape != expected.shape:
        raise BundleError(f"parity check failed: output shape {got.shape} != recorded {expected.shape}")
    diff = np.abs(got - expected)
    both_nan = np.isnan(got) & np.isnan(expected)
    diff[both_nan] = 0.0
    bad = ~(diff <= spec.get("atol", 1e-6))
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
        raise BundleError(
            f"parity check failed on {int(bad.reshape(len(bad), -1).any(axis=1).sum())} of {len(expected)} recorded rows "
            f"(row {i}: expected {expected[i]!r}, got {got[i]!r}); the compiled code does not reproduce "
            "compile-time predictions on this machine — refusing to serve"
        )


def load(path: str | Path, *, verify: bool = True, trusted_keys=None, engine: str | None = None) -> Bundle:
    """Load a bundle, verify every file's sha256 and replay its parity vectors.

    Parameters
    ----------
    engine : what scores the bundle: ``None`` (what the manifest says: the C ensemble
        library for experts compiled to C, ``model.onnx`` for a bundle compiled with
        ``--emit onnx``), ``"native"`` (the compiled code even when the bundle has an
        ONNX graph), ``"numba"`` (experts through the numba module, step by step) or
        ``"onnx"`` (the graph, through onnxruntime).  The parity vectors are replayed
        through the engine chosen.
    trusted_keys : Ed25519 public keys (PEM file paths, PEM bytes or key objects).  When
        given, the bundle must carry a ``manifest.sig`` made by one of them over the exact
        bytes of its manifest (see :mod:`fecc_runtime.signing`), and its files are always
        hash-checked.  ``None`` (the default) accepts signed and unsigned bundles alike and
        never imports ``cryptography``.

    Raises
    ------
    BundleError
        The bundle is missing, tampered with, of an unsupported format version, or its
        compiled code does not reproduce the recorded predictions on this machine.
    BundleSignatureError
        (a ``BundleError``) trusted keys are configured and the bundle is unsigned, its
        signature does not match its manifest, or its key is not one of them.
    """
    path = Path(path)
    raw = _read_manifest_bytes(path)
    signer = None
    if trusted_keys is not None:
        from .signing import verify_manifest

        # the signature covers these exact bytes, and these bytes are what gets parsed
        signer = verify_manifest(path, raw, trusted_keys)
    manifest = _parse_manifest(path, raw)
    if verify or signer is not None:
        verify_files(path, manifest)
    bundle = Bundle(path, manifest, engine=engine)
    bundle.signed_by = signer
    if verify:
        replay_parity(bundle)
    return bundle
