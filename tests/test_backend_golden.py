"""Golden text of the emitted expert C and of the ONNX graphs (``make golden`` rebuilds them).

A change in generated code shows up as a reviewed diff of ``tests/golden/c/`` and
``tests/golden/onnx/``; the golden C also compiles warning-free with the ensemble
library's flags and computes what the numba module computes.
"""
from __future__ import annotations

import ctypes
import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fecc.lower.ensemble import CFLAGS
from fecc.search import function_names
from fecc_runtime.experts import ExpertSet

GOLDEN = Path(__file__).parent / "golden"


def _generators():
    spec = importlib.util.spec_from_file_location("fecc_golden_regenerate", GOLDEN / "regenerate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.backend_c
def test_c_golden_text():
    for name, text in _generators().c_fixtures().items():
        assert text == (GOLDEN / "c" / name).read_text(), f"{name} differs from the golden file; run `make golden`"


@pytest.mark.backend_c
def test_c_golden_compiles_cleanly_and_matches_numba(tmp_path):
    gen = _generators()
    (tmp_path / "experts.c").write_text((GOLDEN / "c" / "experts_every_node.c").read_text())
    proc = subprocess.run(["gcc", *CFLAGS, "-Wall", "-Wextra", "-Werror", "-shared", "-o", "experts.so", "experts.c",
                           "-lm"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(tmp_path / "experts.so"))
    (tmp_path / "experts.py").write_text(gen.numba_fixtures()["experts_every_node.py"])
    entries = [{"name": n, **function_names(n)} for n in ("expert_1", "expert_2")]
    py = ExpertSet(tmp_path, entries, "experts.py", use_numba=False).module
    rng = np.random.default_rng(1)
    X = rng.normal(40, 20, size=(300, 4))
    X[::7, 1] = np.nan
    X[:, 2] = np.round(rng.uniform(0, 3, 300))
    X[::11, 3] = -0.0
    for k in (1, 2):
        for part, restype in (("region", ctypes.c_int32), ("correction", ctypes.c_double)):
            fn = getattr(lib, f"expert_{k}_{part}")
            fn.restype, fn.argtypes = restype, [ctypes.c_void_p]
            got = np.array([fn(X.ctypes.data + 32 * i) for i in range(len(X))], dtype=np.float64)
            ref = getattr(py, f"expert_{k}_{part}")
            with np.errstate(all="ignore"):
                want = np.array([ref(r) for r in X], dtype=np.float64)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            assert (np.isnan(want) | (got == want)).all(), (k, part)


@pytest.mark.backend_onnx
def test_onnx_golden_text():
    pytest.importorskip("onnx")
    for name, text in _generators().onnx_fixtures().items():
        assert text == (GOLDEN / "onnx" / name).read_text(), f"{name} differs from the golden file; run `make golden`"
