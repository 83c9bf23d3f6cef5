"""Golden text of the emitted experts module, and that it imports and runs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fecc_runtime.format import function_names
from fecc_runtime.experts import ExpertSet

pytestmark = pytest.mark.backend_numba

GOLDEN = Path(__file__).parent / "golden"


def _generators():
    spec = importlib.util.spec_from_file_location("fecc_golden_regenerate", GOLDEN / "regenerate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_numba_golden_text():
    for name, text in _generators().numba_fixtures().items():
        want = (GOLDEN / "numba" / name).read_text()
        assert text == want, f"{name} differs from the golden file; run `make golden` and review the diff"


def test_golden_module_runs_in_both_modes(tmp_path):
    text = _generators().numba_fixtures()["experts_every_node.py"]
    (tmp_path / "experts.py").write_text(text)
    entries = [{"name": n, **function_names(n)} for n in ("expert_1", "expert_2")]
    rng = np.random.default_rng(1)
    X = rng.normal(40, 20, size=(50, 4))
    X[::7, 1] = np.nan
    X[:, 2] = np.round(rng.uniform(0, 3, 50))
    base = rng.normal(size=50)
    jit = ExpertSet(tmp_path, entries, "experts.py", use_numba=True).features(X, base)
    py = ExpertSet(tmp_path, entries, "experts.py", use_numba=False).features(X, base)
    np.testing.assert_allclose(jit, py, rtol=1e-14, equal_nan=True)
    compile(text, "experts.py", "exec")
