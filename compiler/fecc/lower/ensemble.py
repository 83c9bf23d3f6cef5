"""Lower a bundle's whole ensemble (legacy trees, experts, aggregator) into one C library.

What ends up in the bundle, under ``out_dir/ensemble/``:

``experts.c``
    The experts, from their IR (:mod:`fecc.lower.c_backend`): one function per region
    and per correction, with comments quoting each region rule and correction, and
    ``fecc_experts_phi``, the aggregator's expert inputs of one row.
``legacy_engine.c``, ``aggregator_engine.c``
    The trees' array engines (``templates/c/engine.c.j2``, the very code of
    ``trees/{name}_engine.c``), without tl2cgen's if/else code and with their public
    names prefixed ``fecc_legacy_`` / ``fecc_agg_`` so both fit in one library.  They
    walk the node arrays ``lower_trees`` wrote (``trees/legacy.npz``,
    ``trees/aggregator.npz``), which the runtime passes in.
``ensemble.c``
    The glue (``templates/c/ensemble.c.j2``): ``fecc_ensemble_one`` scores one row and
    ``fecc_ensemble_batch`` many, end to end, in margin space.
``ensemble.so``
    All four compiled with gcc (:data:`CFLAGS`: no fast-math, no floating-point
    contraction) in a scratch directory, so the same inputs give the same bytes.

One row then costs one ctypes call instead of a tree call, a numba call per expert,
numpy for the interaction features and a second tree call.  The numba module
(``experts/experts.py``) stays in the bundle as the readable reference and the
runtime's fallback (``fecc_runtime.load(..., engine="numba")``).

Why one row always walks the node arrays here, even when the legacy entry's
``row_engine`` is ``"ifelse"``: tl2cgen's code defines the same global names for every
model, so two ensembles' if/else code cannot share a library.  The array walk adds the
leaves in XGBoost's order, so the margins are the batch engine's, bit for bit.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from fecc_runtime.format import check_base_map

from ..errors import UserError
from ..forest import Forest
from ..templating import render
from .c_backend import PHI_FUNCTION, TRANSFORMS_FUNCTION, emit_experts_c
from .cbuild import CFLAGS as TREE_CFLAGS, LDFLAGS, gcc
from .trees import array_engine_source
from .expert_source import ExpertSource

__all__ = ["lower_ensemble", "CFLAGS", "ENSEMBLE_ABI"]

#: gcc flags of the ensemble library: the trees' (fixed, no -march) plus explicit IEEE
#: semantics for the experts' arithmetic: -fno-fast-math (no reassociation, NaN and
#: signed zeros honoured) and -ffp-contract=off (a * b + c is never fused into fma).
CFLAGS = (*TREE_CFLAGS, "-fno-fast-math", "-ffp-contract=off")
#: Version of the interface between ``ensemble.so`` and ``fecc_runtime.ensemble``.
ENSEMBLE_ABI = 1
#: Stack budget of one batch block's aggregator input (float32 values).
BLOCK_STACK_BYTES = 32 * 1024
#: Rows per block of the batch path, at most (the legacy engines' block size).
MAX_BLOCK_ROWS = 64
#: Manifest ``aggregator.base_margin`` values and the head of the margin each gives.
_HEADS = {"legacy+experts": ("m + offset", "(m) + offset_"), "legacy": ("m", "(m)")}


def lower_ensemble(out_dir: Path, *, legacy: Forest, experts: Sequence[Any], feature_names: Sequence[str],
                   base_margin: str, aggregator: Forest | None, name: str = "ensemble",
                   transforms: Sequence[Any] = (), base_map: tuple[float, float] = (1.0, 0.0)) -> dict[str, Any]:
    """Compile the ensemble into ``out_dir/ensemble/`` and describe it for the manifest.

    Parameters
    ----------
    out_dir : Path
        The bundle directory.
    legacy : Forest
        The legacy forest (as given to :func:`fecc.lower.lower_trees`, which must have
        written ``trees/legacy.npz`` from it).
    experts : sequence
        :class:`~fecc.lower.expert_source.ExpertSource` (or the search's ``Expert``), in
        the manifest's order.
    feature_names : sequence of str
        Model features, in model order.
    base_margin : str
        The aggregator's ``base_margin``: ``"legacy+experts"`` (margin = m + offset + t)
        or ``"legacy"`` (m + t).
    aggregator : Forest or None
        The aggregator booster's forest (the one ``trees/aggregator.npz`` was lowered
        from); ``None`` for a ``"sum"`` aggregator.
    base_map : (scale, shift)
        The experts' base margin ``shift + scale · m`` (the aggregator's ``base_map``;
        ``fecc_runtime.format.base_margin``); the identity writes the code it always did.
    transforms : sequence
        The transforms the experts and the aggregator read after the features (the
        manifest's ``transforms``; :class:`~fecc.lower.expert_source.TransformSource` or the
        search's ``Transform``); computed in C from the float32-rounded row, each rounded
        through float32.

    Returns
    -------
    dict
        The manifest entry: ``library``, ``sources``, ``abi``, ``num_feature``,
        ``experts``, ``aggregator_feature``, ``base_margin``, ``formula``,
        ``feature_type`` (of the batch input: the legacy trees'), ``block_rows``,
        ``source_hash``, ``compiler``.

    Raises
    ------
    UserError
        A model or expert the ensemble cannot take (multi-output legacy model, feature
        counts that do not match).
    CompileError
        gcc failed or is missing.
    """
    out_dir = Path(out_dir)
    experts = [ExpertSource.of(e) for e in experts]
    feature_names = [str(f) for f in feature_names]
    if base_margin not in _HEADS:
        raise UserError(f"unknown aggregator base_margin {base_margin!r}; expected one of {sorted(_HEADS)}")
    lib_name = f"{name}.so"
    legacy_src, linfo = array_engine_source(legacy, name="legacy", api_prefix="fecc_legacy_", library=lib_name)
    if linfo["num_class"] != 1:
        raise UserError(f"the ensemble library takes a single-output legacy model, not {linfo['num_class']} outputs")
    if linfo["num_feature"] != len(feature_names):
        raise UserError(f"the legacy model reads {linfo['num_feature']} features, the bundle lists {len(feature_names)}")
    n_agg = len(feature_names) + len(transforms) + 1 + 3 * len(experts)
    sources: dict[str, str] = {}
    lowered = emit_experts_c(experts, feature_names, transforms)
    sources["experts.c"] = lowered.text
    sources["legacy_engine.c"] = legacy_src
    agg_sha = None
    if aggregator is not None:
        agg_src, ainfo = array_engine_source(aggregator, name="aggregator", api_prefix="fecc_agg_", library=lib_name)
        if ainfo["num_feature"] != n_agg or ainfo["num_class"] != 1 or ainfo["feature_type"] != "float32" \
                or ainfo["leaf_type"] != "float32":
            raise UserError(f"the aggregator reads {ainfo['num_feature']} {ainfo['feature_type']} features with "
                            f"{ainfo['num_class']} output(s); the ensemble gives it {n_agg} float32 features, one output")
        sources["aggregator_engine.c"] = agg_src
        agg_sha = aggregator.sha256
    block_rows = max(1, min(MAX_BLOCK_ROWS, BLOCK_STACK_BYTES // (4 * n_agg)))
    try:
        scale, shift = check_base_map(*base_map)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    identity = (scale, shift) == (1.0, 0.0)
    formula, head_expr = _HEADS[base_margin]
    if aggregator is not None:
        formula += " + t"
    c_type = {"float32": "float", "float64": "double"}
    sources["ensemble.c"] = render(
        "c/ensemble.c.j2", library=lib_name, abi=ENSEMBLE_ABI, source_hash=lowered.source_hash,
        legacy_sha256=legacy.sha256, aggregator_sha256=agg_sha, aggregator=aggregator is not None, n_features=len(feature_names), n_experts=len(experts),
        block_rows=block_rows, legacy_feat_t=c_type[linfo["feature_type"]], legacy_acc_t=c_type[linfo["leaf_type"]],
        phi_function=PHI_FUNCTION, formula=formula, head=formula.replace(" + t", ""), head_expr=head_expr,
        n_transforms=len(transforms), transforms_function=TRANSFORMS_FUNCTION,
        base_map=None if identity else (repr(scale), repr(shift)),
    )
    target = out_dir / name
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fecc-ensemble-") as tmp:
        build = Path(tmp)
        for fname, text in sources.items():
            (build / fname).write_text(text)
            (target / fname).write_text(text)
        cc_version = gcc(build, list(sources), lib_name, cflags=CFLAGS)
        shutil.copyfile(build / lib_name, target / lib_name)
    return {
        "library": f"{name}/{lib_name}",
        "sources": [f"{name}/{f}" for f in sources],
        "abi": ENSEMBLE_ABI,
        "num_feature": len(feature_names),
        "experts": [e.name for e in experts],
        "aggregator_feature": n_agg if aggregator is not None else 0,
        "aggregator_trees": aggregator is not None,
        "base_margin": base_margin,
        "formula": f"margin = {formula} (m: {'legacy margin' if identity else 'base margin shift + scale * legacy margin'}, "
                   "offset: experts' sum of f_k - m, t: aggregator trees)",
        "feature_type": linfo["feature_type"],
        "leaf_type": linfo["leaf_type"],
        "block_rows": block_rows,
        "source_hash": lowered.source_hash,
        "compiler": {"cc": "gcc", "version": cc_version, "flags": list(CFLAGS), "ldflags": list(LDFLAGS)},
        # only when there are transforms (an entry without the key is the same library as before)
        **({"transforms": [t.name for t in transforms]} if transforms else {}),
        **({} if identity else {"base_map": {"scale": scale, "shift": shift}}),
    }
