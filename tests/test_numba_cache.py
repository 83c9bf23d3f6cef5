"""The numba engine's cache works across processes (the emitted module is importable by name).

Before the module was registered in ``sys.modules``, numba cached its functions against
a "<dynamic>" module and every later process failed to load them
(``ModuleNotFoundError: No module named '<dynamic>'``): a bundle served by numba worked
once per cache directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fecc.lower.numba_backend import write_module
from fecc.search import function_names

from test_numba_parity import EXPERTS, FEATURES

pytestmark = pytest.mark.backend_numba

pytest.importorskip("numba")

CHILD = r"""
import json, sys
import numpy as np
from fecc_runtime.experts import ExpertSet
entries = json.loads(sys.argv[2])
es = ExpertSet(sys.argv[1], entries, "experts.py", use_numba=True)
X = np.linspace(-3, 3, 40).reshape(10, 4)[:, :3].copy()
v = es.values(X, np.zeros(10))
hits = sum(sum(getattr(es.module, e["batch_function"]).stats.cache_hits.values()) for e in entries)
print(json.dumps({"values": np.nan_to_num(v, nan=1234.5).tolist(), "hits": hits}))
"""


def test_second_process_loads_the_cached_functions(tmp_path):
    write_module(EXPERTS[:4], FEATURES, tmp_path / "b")
    entries = [{"name": e.name, **function_names(e.name)} for e in EXPERTS[:4]]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "b"), json.dumps(entries)],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout))
    assert runs[0]["values"] == runs[1]["values"]
    assert runs[0]["hits"] == 0 and runs[1]["hits"] > 0
