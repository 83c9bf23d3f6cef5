"""A whole compile driven by recorded answers of the real embedded model: byte-identical
bundles offline, LLM budgets, and the budget flags' user errors.

The recording (``tests/data/replay/compile/small.jsonl``) comes from
``tests/data/replay/record_compile.py`` (Qwen2.5-Coder-0.5B, grammar-constrained).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _replay_compile import ARGS, RECORDING, inputs
from fecc.cli import main
from fecc.llm.replay import replay_records


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return inputs(tmp_path_factory.mktemp("replay-compile"))


def compile_(files, out: Path, *extra):
    model, data = files
    result = CliRunner().invoke(main, ["compile", str(model), str(data), "-o", str(out),
                                       "--llm", f"replay:{RECORDING}", *ARGS, *map(str, extra)])
    return result.exit_code, result.stdout, result.stderr


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_replayed_compile_is_byte_identical_and_reports_llm_usage(files, tmp_path):
    code, out, err = compile_(files, tmp_path / "a")
    assert code == 0, err
    code2, out2, err2 = compile_(files, tmp_path / "b")
    assert code2 == 0, err2
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    summary = json.loads(out)
    llm = summary["llm"]
    assert 1 <= llm["calls"] <= len(replay_records(RECORDING))
    assert llm["calls"] == json.loads(out2)["llm"]["calls"]
    assert llm["prompt_tokens"] > 1000 and llm["completion_tokens"] > 50  # the recorded usage
    assert "LLM usage:" in err and "chain 1/1 region_1" in err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    chains = manifest["search"]["chains"]
    assert len(chains) == 1 and chains[0]["proposals"] == 2
    proposer = manifest["search"]["proposer"]
    assert proposer["name"] == "llm:replay:small.jsonl"
    assert proposer["usage"]["calls"] == llm["calls"] and "seconds" not in proposer["usage"]


def test_the_llm_call_budget_stops_the_search(files, tmp_path):
    code, out, err = compile_(files, tmp_path / "c", "--llm-max-calls", 1)
    assert code == 0, err
    assert json.loads(out)["llm"]["calls"] == 1
    assert "call budget spent (1 of 1 calls); the chain stops here" in err


@pytest.mark.parametrize("flag, value, fragment", [
    ("--llm-max-calls", 0, "--llm-max-calls must be positive"),
    ("--llm-max-seconds", -5, "--llm-max-seconds must be positive"),
    ("--llm-temperature", 7, "--llm-temperature must be between 0 and 2"),
    ("--llm-max-tokens", "many", "'many' is not a valid integer"),
])
def test_bad_budget_flags_are_one_line_errors(files, tmp_path, flag, value, fragment):
    code, out, err = compile_(files, tmp_path / "d", flag, value)
    assert code == 2, (out, err)
    assert fragment in err and "Traceback" not in err


def test_a_failing_llm_backend_is_a_warning_with_its_reason(files, tmp_path):
    """Every call refused by the endpoint (HTTP 400, not retried): the compile finishes and says
    why, instead of silently running the search without the LLM."""
    from test_llm_openai import Stub

    model, data = files
    with Stub([(400, 0)] * 200) as stub:
        result = CliRunner().invoke(main, ["compile", str(model), str(data), "-o", str(tmp_path / "e"),
                                           "--llm", f"openai:{stub.url}#stub-model", *ARGS])
    assert result.exit_code == 0, result.stderr
    llm = json.loads(result.stdout)["llm"]
    assert llm["calls"] >= 1 and llm["backend_errors"] == llm["calls"]
    assert (f"warning: the LLM backend failed on {llm['calls']} of {llm['calls']} calls (last: HTTP 400 from "
            f"{stub.url}") in result.stderr
