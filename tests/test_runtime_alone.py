"""fecc_runtime serves a bundle with nothing but the standard library and numpy importable.

The child interpreter starts with ``-S -E`` (no site-packages, no environment) and a
``sys.path`` of the standard library, a folder holding only numpy, and ``runtime/``:
importing the compiler, xgboost, treelite, tl2cgen, pandas or torch there would fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from fecc.driver import CompileOptions, compile_bundle
from _models import make_table, train_xgb

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"

CHILD = r"""
import json, sys
import fecc_runtime
b = fecc_runtime.load(sys.argv[1])
X = json.loads(sys.argv[2])
out = {"pred": b.predict(__import__("numpy").array(X)).tolist(),
       "one": b.predict_one(X[0]),
       "modules": sorted(m.split(".")[0] for m in sys.modules)}
print(json.dumps(out))
"""


def _numpy_only_dir(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    np_dir = Path(np.__file__).parent
    os.symlink(np_dir, site / "numpy")
    libs = np_dir.parent / "numpy.libs"
    if libs.exists():
        os.symlink(libs, site / "numpy.libs")
    return site


def test_runtime_needs_only_numpy(tmp_path):
    df = make_table(n=200, seed=5)
    model = train_xgb(df, tmp_path / "model.json")
    df.to_parquet(tmp_path / "data.parquet")
    compile_bundle(model, tmp_path / "data.parquet", tmp_path / "b", CompileOptions(search="none"))
    stdlib = sysconfig.get_paths()["stdlib"]
    std_paths = [p for p in sys.path if p == stdlib or p.endswith(("lib-dynload", ".zip"))]
    sys_path = std_paths + [str(_numpy_only_dir(tmp_path)), str(RUNTIME)]
    X = df.drop(columns=["y"]).head(5).to_numpy()
    X = np.where(np.isnan(X), None, X).tolist()
    code = f"import sys; sys.path[:] = {sys_path!r}\n" + CHILD
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", code, str(tmp_path / "b"), json.dumps(X)],
                          capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    forbidden = {"fecc", "xgboost", "treelite", "tl2cgen", "pandas", "torch", "sklearn", "optuna", "numba"}
    assert not forbidden & set(out["modules"])
    import fecc_runtime

    ref = fecc_runtime.load(tmp_path / "b").predict(np.array(X, dtype=float))
    assert np.allclose(out["pred"], ref, atol=0, rtol=0)
    # the single-row path may round differently from the batch path, within parity tolerance
    assert out["one"] == pytest.approx(ref[0], abs=1e-6)
