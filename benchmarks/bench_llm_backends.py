"""LLM backends on this machine: llama.cpp (grammar lazy / grammar-first / plain) vs transformers.

    .venv/bin/python benchmarks/bench_llm_backends.py [--model qwen0.5b] [--contexts credit,heart,housing]
                                                      [--configs llama-lazy,llama-first,llama-plain,hf]

Each configuration runs in its own child process (so peak RSS is its own): it loads the
embedded model, then answers the seed-004 prompt of each realistic context of
``tests/llm_contexts.py`` once (temperature 0.1, seed 0, at most 300 answer tokens), and
reports load time, peak RSS, prompt/answer tokens, seconds per answer, answer tokens
per second (decode speed, prompt time excluded via a 1-token prefill call first) and
whether the answer parses into valid IR.  Not a test: it needs the weights and minutes.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "llama-lazy": "llama.cpp, GBNF grammar checked lazily (fecc's default)",
    "llama-first": "llama.cpp, GBNF grammar over the whole vocabulary (llama-cpp-python's order)",
    "llama-plain": "llama.cpp, no grammar",
    "hf": "transformers (GGUF dequantised, float32 CPU / bf16 CUDA), no grammar",
}


def child(config: str, model: str, contexts: list[str]) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_contexts import ALL_CONTEXTS

    from fecc.llm.grammar_gbnf import make_gbnf
    from fecc.llm.prompts import render_messages
    from fecc.llm.answer import AnswerError, parse_answer

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if config == "hf":
        from fecc.llm.hf_backend import TransformersBackend

        backend = TransformersBackend(model)
        device = backend.device
    else:
        from fecc.llm.local import LocalBackend

        backend = LocalBackend(model, lazy_grammar=(config != "llama-first"))
        device = "gpu" if backend.n_gpu_layers else "cpu"
    load = time.perf_counter() - t0
    rows = []
    for name in contexts:
        ctx = ALL_CONTEXTS[name](seed=0)
        messages = render_messages(ctx, example=True)
        grammar = make_gbnf(tuple(ctx.features)) if config in ("llama-lazy", "llama-first") else None
        t = time.perf_counter()
        pre = backend.complete(messages, grammar=None, temperature=0.1, max_tokens=1, seed=0)
        prefill = time.perf_counter() - t
        if config == "hf":  # no prompt cache: the answer's own call pays the prompt again
            prefill_in_answer = prefill
        else:
            prefill_in_answer = 0.0
        t = time.perf_counter()
        done = backend.complete(messages, grammar=grammar, temperature=0.1, max_tokens=300, seed=0)
        seconds = time.perf_counter() - t
        try:
            parse_answer(done.text, features=ctx.features, frozen=ctx.current_params)
            valid = True
        except AnswerError:
            valid = False
        rows.append({"context": name, "prompt_tokens": pre.prompt_tokens, "prefill_s": round(prefill, 2),
                     "answer_tokens": done.completion_tokens, "answer_s": round(seconds, 2),
                     "decode_tok_s": round(done.completion_tokens / max(seconds - prefill_in_answer, 1e-9), 1),
                     "seconds_per_answer": round(prefill + seconds - prefill_in_answer, 2), "valid": valid})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": config, "device": device, "load_s": round(load, 2), "rss_gb": round((rss - rss0) / 2**20, 2),
            "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen0.5b")
    ap.add_argument("--contexts", default="credit,heart,housing")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    contexts = args.contexts.split(",")
    if args.child:
        print(json.dumps(child(args.child, args.model, contexts)))
        return 0
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"model {args.model}; load average at start {' '.join(load)}", flush=True)
    results = []
    for config in args.configs.split(","):
        if config not in CONFIGS:
            raise SystemExit(f"unknown config {config!r}; known: {', '.join(CONFIGS)}")
        proc = subprocess.run([sys.executable, __file__, "--child", config, "--model", args.model,
                               "--contexts", args.contexts], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{config}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        n = len(r["rows"])
        mean = lambda k: sum(x[k] for x in r["rows"]) / n  # noqa: E731
        print(f"{config:12s} {r['device']:4s} load {r['load_s']:5.1f} s  RSS {r['rss_gb']:4.1f} GB  "
              f"prompt {mean('prompt_tokens'):5.0f} tok in {mean('prefill_s'):5.1f} s  "
              f"answer {mean('answer_tokens'):4.0f} tok at {mean('decode_tok_s'):5.1f} tok/s  "
              f"{mean('seconds_per_answer'):5.1f} s/answer  valid {sum(x['valid'] for x in r['rows'])}/{n}",
              flush=True)
    with open("/proc/loadavg") as fh:
        print(f"load average at end {' '.join(fh.read().split()[:3])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
