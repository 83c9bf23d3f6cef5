"""The model zoo (tests/data/models) as compile-only bundles, compiled once per test session.

``tests/test_bundle_zoo.py`` (outputs against the producing library) and
``tests/test_bundle_pinned.py`` (bytes against pinned hashes) read the same bundles, so
the pins cost no extra compiles.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

MODELS = Path(__file__).parent / "data" / "models"
INDEX = json.loads((MODELS / "index.json").read_text())["fixtures"]
# every LightGBM kind of the newest version, every XGBoost kind of the oldest and newest
CHOSEN = [e for e in INDEX if e["path"].split("/")[0] in ("lightgbm-4.7.0", "xgboost-1.7.6", "xgboost-3.2.0")]

#: Extra targets pinned for a few models: (fixture path, CompileOptions fields).  The ONNX tree
#: lowering and the one-graph ONNX bundle read the same forest as the C engine.
VARIANTS = {
    "onnx-trees": {"trees": "onnx"},
    "emit-onnx": {"emit": "onnx"},
}
VARIANT_MODELS = {
    "onnx-trees": ("lightgbm-4.7.0/binary_categorical.txt", "xgboost-3.2.0/binary_pandas_categories.json",
                   "xgboost-3.2.0/multi_softprob.json", "xgboost-3.2.0/binary_logistic.ubj"),
    "emit-onnx": ("lightgbm-4.7.0/binary.txt", "xgboost-3.2.0/binary_logistic.json"),
}

_BUILT: dict[tuple[str, str], Path] = {}


def entry_for(path: str) -> dict:
    """The index entry of fixture ``path`` (relative to tests/data/models)."""
    return next(e for e in INDEX if e["path"] == path)


def zoo_table(entry: dict) -> pd.DataFrame:
    """The fixture's rows as a user's table: named columns, category values where the model stored them."""
    from fecc.frontend import load_legacy_model

    data = np.load(MODELS / entry["data"], allow_pickle=False)
    model = load_legacy_model(MODELS / entry["path"])
    names = list(model.feature_names or [f"f{i}" for i in range(model.num_feature)])
    df = pd.DataFrame(data["X"], columns=names)
    for i, cats in enumerate(model.categories or ()):
        if cats is not None:  # the model stored category values: the user's table holds values, not codes
            codes = df.iloc[:, i]
            df[names[i]] = [cats[int(c)] if not math.isnan(c) and 0 <= c < len(cats) and c == int(c) else None
                            for c in codes]
    return df


def zoo_bundle(entry: dict, root: Path, variant: str = "c") -> Path:
    """The compile-only bundle of ``entry`` (``variant``: ``"c"`` or a key of :data:`VARIANTS`),
    compiled into ``root`` on first use and reused for the rest of the session."""
    from fecc.driver import CompileOptions, compile_bundle

    key = (entry["path"], variant)
    if key not in _BUILT:
        work = Path(root) / f"{len(_BUILT):03d}"
        work.mkdir(parents=True)
        zoo_table(entry).to_parquet(work / "data.parquet")
        options = CompileOptions(search="none", **VARIANTS.get(variant, {}))
        compile_bundle(MODELS / entry["path"], work / "data.parquet", work / "bundle", options)
        _BUILT[key] = work / "bundle"
    return _BUILT[key]
