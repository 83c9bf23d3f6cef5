"""Record the embedded model's answers for the small compile of ``tests/_replay_compile.py``.

    .venv/bin/python tests/data/replay/record_compile.py

Runs ``fecc compile --llm local --record tests/data/replay/compile/small.jsonl`` on the
shared inputs; ``tests/test_llm_compile_replay.py`` replays the file.  Not run by the
tests (it needs the weights; minutes on two busy cores).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/

from click.testing import CliRunner  # noqa: E402

from _replay_compile import ARGS, RECORDING, inputs  # noqa: E402
from fecc.cli import main as fecc_main  # noqa: E402


def main() -> int:
    RECORDING.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model, data = inputs(Path(tmp))
        result = CliRunner().invoke(fecc_main, ["compile", str(model), str(data), "-o", str(Path(tmp) / "b"),
                                                "--llm", "local", "--record", str(RECORDING), *ARGS])
        print(result.stderr, file=sys.stderr)
        print(result.stdout)
        return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
