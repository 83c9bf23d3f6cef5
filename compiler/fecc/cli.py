"""``fecc`` command line: parses arguments and calls the library (:func:`fecc.compile`,
:func:`fecc.score`, :func:`fecc.inspect`, :func:`fecc.audit`); choices come from
:mod:`fecc.options`.

A user mistake prints one line, ``fecc: error: ...``, on stderr and exits with 2.
"""
from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import CompileError, UserError
from .options import CATEGORY_MODES, EMITS, SEARCHES, TRANSFORM_SEARCHES, TREE_TARGETS


def _progress(quiet: bool):
    """Progress lines on stderr; a live bar per expert chain when stderr is a terminal."""
    if quiet:
        return None
    from .progress import Reporter

    return Reporter(sys.stderr)


def _run(fn):
    """Call ``fn``; turn UserError into one line on stderr and exit status 2."""
    try:
        return fn()
    except UserError as exc:
        click.echo(f"fecc: error: {exc}", err=True)
        sys.exit(2)
    except CompileError as exc:
        click.echo(f"fecc: compile failed: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("fecc: interrupted", err=True)
        sys.exit(130)


def _parse_set(values: tuple[str, ...], flag: str = "--set") -> dict:
    out = {}
    for item in values:
        if "=" not in item:
            raise UserError(f"{flag} expects NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fecc")
def main():
    """fecc: compile a frozen legacy gradient-boosted model (plus repairs) into a servable bundle."""


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle directory to write.")
@click.option("--target", default=None, help="Target column (default: target/label/y/class, or the one non-feature column).")
@click.option("--feature-names", default=None, help="Comma-separated table columns for the model's features, in model order.")
@click.option("--search", type=click.Choice(SEARCHES), default="nsr", show_default=True,
              help="nsr: search experts that repair hard regions (seed 004); none: compile the legacy model only.")
@click.option("--llm", default="none", show_default=True,
              help="Proposer: none (built-in grammar), auto (local LLM if installed, else none), local[:smollm2|qwen0.5b|"
                   "qwen1.5b] (llama.cpp), hf[:KEY] (transformers, GPU when present), openai:URL#model, "
                   "vllm:MODEL, replay:FILE.")
@click.option("--record", default=None, type=click.Path(dir_okay=False), help="Record LLM prompts/answers (JSONL) for replay.")
@click.option("--llm-max-calls", default=None, type=int, help="Budget: most LLM requests per compile.")
@click.option("--llm-max-tokens", default=None, type=int, help="Budget: most LLM tokens (prompt + answer) per compile.")
@click.option("--llm-max-seconds", default=None, type=float, help="Budget: most seconds the LLM may spend answering.")
@click.option("--llm-temperature", default=0.1, show_default=True, type=float,
              help="Sampling temperature of the LLM's first answer (corrections sample more freely).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--regions", default=None, type=int, help="Number of hard regions (K).")
@click.option("--iterations", default=None, type=int, help="Successful iterations per expert chain.")
@click.option("--time-budget", default=None, type=float, help="Wall-clock budget of the search, seconds.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE", help="Any search option, e.g. --set optuna_trials=30.")
@click.option("--transforms", type=click.Choice(TRANSFORM_SEARCHES), default="none", show_default=True,
              help="teaming: search new features (postfix programs over the columns, seed 000) that the experts "
                   "and the aggregator read, lowered into the bundle; none: the model's features only.")
@click.option("--transform-option", "transform_settings", multiple=True, metavar="NAME=VALUE",
              help="Any transform search option, e.g. --transform-option rounds=2.")
@click.option("--trees", type=click.Choice(list(TREE_TARGETS)), default="c", show_default=True,
              help="Tree target: " + " or ".join(f"{t.name} ({t.help})" for t in TREE_TARGETS.values()) + ".")
@click.option("--emit", type=click.Choice(EMITS), default="native", show_default=True,
              help="native: compiled C (trees, and experts with the aggregator in one library); onnx: also "
                   "model.onnx, the whole ensemble and its link as one graph onnxruntime scores alone.")
@click.option("--categories", type=click.Choice(CATEGORY_MODES), default="values", show_default=True,
              help="Categorical columns hold the category values (matched to the model's stored categories) "
                   "or the integer codes the model was trained on.")
@click.option("--sign-key", default=None, type=click.Path(dir_okay=False),
              help="Ed25519 private key (PEM, as `openssl genpkey -algorithm ed25519` writes it) that signs the "
                   "bundle's manifest (manifest.sig).")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def compile_cmd(model, data, out, target, feature_names, search, llm, record, llm_max_calls, llm_max_tokens,
                llm_max_seconds, llm_temperature, seed, regions, iterations,
                time_budget, settings, transforms, transform_settings, trees, emit, categories, sign_key, force,
                quiet):
    """Compile MODEL (XGBoost JSON or LightGBM model.txt) with labelled DATA (parquet/CSV) into a bundle."""
    import fecc

    def go():
        extra = _parse_set(settings)
        for key, value in (("n_regions", regions), ("iterations", iterations), ("time_budget_s", time_budget)):
            if value is not None:
                extra[key] = value
        names = tuple(n.strip() for n in feature_names.split(",")) if feature_names else None
        opts = fecc.CompileOptions(target=target, feature_names=names, search=search, llm=llm, record=record,
                                   seed=seed, force=force, search_options=extra, llm_max_calls=llm_max_calls,
                                   llm_max_tokens=llm_max_tokens, llm_max_seconds=llm_max_seconds,
                                   llm_temperature=llm_temperature, trees=trees, categories=categories,
                                   sign_key=sign_key, emit=emit, transforms=transforms,
                                   transform_options=_parse_set(transform_settings, "--transform-option"))
        summary = fecc.compile(model, data, out, opts, progress=_progress(quiet))
        click.echo(json.dumps(summary, indent=2, sort_keys=True))

    _run(go)


@main.command("score")
@click.argument("bundle", type=click.Path())
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="Scores file (.parquet or .csv), written atomically.")
@click.option("--keep", multiple=True, help="Copy this input column into the output (repeatable), e.g. an id.")
@click.option("--margin", is_flag=True, help="Write raw margins instead of probabilities/values.")
@click.option("--categories", type=click.Choice(CATEGORY_MODES), default="values", show_default=True,
              help="Categorical columns hold the category values or the integer codes the model was trained on.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM) whose signature the bundle must carry (repeatable: any one of them).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def score_cmd(bundle, data, out, keep, margin, categories, trusted_keys, quiet):
    """Score DATA with BUNDLE through fecc_runtime (verifies the bundle first).

    Streams DATA (parquet row groups, CSV chunks) with bounded memory; a progress bar
    on a terminal.
    """
    import fecc

    _run(lambda: fecc.score(bundle, data, out, keep=tuple(keep), output="margin" if margin else "prediction",
                            categories=categories, trusted_keys=tuple(trusted_keys) or None, progress=_progress(quiet)))


@main.command("inspect")
@click.argument("bundle", type=click.Path())
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM) whose signature the bundle must carry (repeatable).")
def inspect_cmd(bundle, trusted_keys):
    """Verify BUNDLE and print what it contains (task, features, gate decision, experts)."""
    import fecc

    _run(lambda: click.echo(fecc.inspect(bundle, trusted_keys=tuple(trusted_keys) or None)))


@main.command("audit")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(),
              help="Write the report here: a self-contained HTML page, or Markdown for a .md path.")
@click.option("--no-verify", is_flag=True, help="Do not check the files' sha256 against the manifest first.")
def audit_cmd(bundle, out, no_verify):
    """Print what BUNDLE does (legacy model, regions, experts, gate, metrics); -o writes the full report."""
    import fecc

    def go():
        result = fecc.audit(bundle, out, verify=not no_verify)
        click.echo(result.text, nl=False)
        if result.written is not None:
            click.echo(f"report written to {result.written}")

    _run(go)


@main.command("serve")
@click.argument("bundle", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind; 0 picks a free one.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes sharing the port.")
@click.option("--name", default=None, help="Model name in the URLs (default: the bundle directory's name).")
@click.option("--max-body-mb", default=64.0, show_default=True, type=float, help="Largest request body, MiB.")
@click.option("--shutdown-timeout", default=30.0, show_default=True, type=float,
              help="Seconds to finish requests in flight after SIGTERM/SIGINT.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Ed25519 public key (PEM); the bundle must be signed by one of them (repeatable).")
@click.option("--access-log", is_flag=True, help="Log every request (costs latency).")
def serve_cmd(bundle, host, port, workers, name, max_body_mb, shutdown_timeout, trusted_keys, access_log):
    """Serve BUNDLE over the Open Inference Protocol v2 (KServe/Triton REST) until SIGTERM/SIGINT.

    Needs the runtime's serve extra: pip install 'fecc-runtime[serve]'.
    """
    import fecc_runtime
    from fecc_runtime.serve import ServeError, serve

    def go():
        try:
            serve(bundle, host=host, port=port, workers=workers, name=name, max_body_mb=max_body_mb,
                  shutdown_timeout=shutdown_timeout, access_log=access_log,
                  trusted_keys=list(trusted_keys) or None)
        except (fecc_runtime.BundleError, ServeError) as exc:
            raise UserError(str(exc)) from None

    _run(go)


if __name__ == "__main__":  # pragma: no cover
    main()
