"""Record real answers of the embedded model for the replay tests, and measure it.

    .venv/bin/python tests/data/replay/record.py [--model qwen0.5b] [--seeds 4] [--plain]

For each realistic context of ``tests/llm_contexts.py`` (credit, heart, housing) and
each seed, runs :class:`~fecc.llm.llm_proposer.LLMProposer` on the local model with
``--record`` semantics, writing ``<model>_<mode>.jsonl`` (the prompt/answer pairs) and
``<model>_<mode>.meta.json`` (the contexts, the outcomes the replay test must reproduce,
and the measurements: tokens/s, seconds per answer, validity first try / after
corrections).  ``--plain`` records without the grammar, to measure what it buys.
Not run by the tests; it needs the weights and takes minutes on two cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for llm_contexts

from llm_contexts import ALL_CONTEXTS  # noqa: E402

from fecc.ir import to_postfix  # noqa: E402
from fecc.llm.base import ProposalError  # noqa: E402
from fecc.llm.llm_proposer import LLMProposer  # noqa: E402
from fecc.llm.local import LocalBackend  # noqa: E402
from fecc.llm.replay import RecordingBackend  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen0.5b")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="no grammar")
    ap.add_argument("--max-corrections", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=350)
    ap.add_argument("--contexts", default=",".join(ALL_CONTEXTS))
    args = ap.parse_args()
    mode = "plain" if args.plain else "grammar"
    stem = HERE / f"{args.model.replace('.', '')}_{mode}"
    out = stem.with_suffix(".jsonl")
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    local = LocalBackend(args.model)
    load = time.perf_counter() - t0
    proposer = LLMProposer(RecordingBackend(local, out), max_corrections=args.max_corrections,
                           max_tokens=args.max_tokens, use_grammar=not args.plain)
    contexts, outcomes = [], []
    for name in args.contexts.split(","):
        for seed in range(args.seeds):
            ctx = ALL_CONTEXTS[name](seed=seed)
            contexts.append({"name": name, "seed": seed})
            try:
                prop = proposer.propose(ctx)
                outcomes.append(to_postfix(prop.expr))
                print(f"{name}/{seed}: OK after {prop.usage['calls']} call(s): {prop.intent!r}", flush=True)
            except ProposalError as exc:
                outcomes.append("error: " + exc.reason)
                print(f"{name}/{seed}: FAILED: {exc.reason}", flush=True)
    u = proposer.usage
    records = [json.loads(line) for line in out.read_text().splitlines()]
    gen_seconds = sum(r["usage"]["seconds"] for r in records)
    meta = {
        "model": args.model, "use_grammar": not args.plain, "max_corrections": args.max_corrections,
        "max_tokens": args.max_tokens, "temperature": proposer.temperature, "contexts": contexts,
        "outcomes": outcomes,
        "measured": {
            "load_seconds": round(load, 2), "proposals": u.proposals, "accepted": u.accepted, "calls": u.calls,
            "valid_first_try": u.valid_first_try, "rejected_answers": u.rejected_answers, "reasons": u.reasons,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "seconds_per_answer": round(gen_seconds / max(u.calls, 1), 2),
            "completion_tokens_per_answer": round(u.completion_tokens / max(u.calls, 1), 1),
            "overall_tokens_per_second": round((u.prompt_tokens + u.completion_tokens) / max(gen_seconds, 1e-9), 1),
            "n_gpu_layers": local.n_gpu_layers,
        },
    }
    stem.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta["measured"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
