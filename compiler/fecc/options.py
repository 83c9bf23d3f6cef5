"""The options of ``fecc compile``: one validated object, and the registry of tree targets.

:class:`CompileOptions` is what the CLI builds and what :func:`fecc.compile` takes; it
checks every value when it is built — the search's options included, read into a
typed :class:`fecc.search.SearchOptions` — so a mistake is one line before any
expensive step (reading the data, gcc).  :data:`TREE_TARGETS` lists the ways tree
ensembles are lowered; the CLI's ``--trees`` choices, its help and the driver's
progress lines come from it.

This module imports nothing heavy at import time (the CLI reads it to declare its
options); the search and the LLM registry are imported when options are built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from .search.options import SearchOptions
    from .transforms.options import TransformOptions


@dataclass(frozen=True)
class TreeTarget:
    """One way to lower a tree ensemble (legacy model, aggregator).

    Attributes
    ----------
    name : the ``--trees`` value.
    label : the target in messages and the bundle README (``"C"``).
    help : what it is, for ``fecc compile --help``.
    lowering : ``"module:function"`` of the lowering, imported on first use (it may need
        an optional package).
    legacy_line : the progress line while the legacy trees are lowered.
    ensemble_library : the C ensemble library (:mod:`fecc.lower.ensemble`) can walk these
        trees' node arrays, so the experts and the aggregator join them in one library.
    """

    name: str
    label: str
    help: str
    lowering: str
    legacy_line: str
    ensemble_library: bool

    @property
    def lower(self) -> Callable[..., dict]:
        """The lowering function ``(forest, bundle_root, *, name) -> manifest entry`` (``forest``: :class:`fecc.forest.Forest`)."""
        module, _, function = self.lowering.partition(":")
        return getattr(import_module(module), function)


TREE_TARGETS: dict[str, TreeTarget] = {t.name: t for t in (
    TreeTarget("c", "C", "compiled C, gcc", "fecc.lower:lower_trees",
               "lowering legacy trees to C (treelite + tl2cgen) and compiling with gcc", ensemble_library=True),
    TreeTarget("onnx", "ONNX", "ai.onnx.ml TreeEnsemble graph, served by onnxruntime", "fecc.lower:lower_onnx",
               "lowering legacy trees to ONNX (ai.onnx.ml TreeEnsemble)", ensemble_library=False),
)}

#: ``--search``: NSR-Boost experts (seed 004), or the legacy model alone.
SEARCHES = ("nsr", "none")
#: ``--transforms``: the teaming transformation search (seed 000) before the experts, or none.
TRANSFORM_SEARCHES = ("none", "teaming")
#: ``--emit``: what the runtime scores (compiled C, or also the one ONNX graph).
EMITS = ("native", "onnx")
#: ``--categories``: categorical columns hold category values or the model's integer codes.
CATEGORY_MODES = ("values", "codes")


def one_of(names) -> str:
    """``'a', 'b' or 'c'``: the choices in an error message."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _check_choice(flag: str, value: str, choices) -> None:
    if value not in choices:
        raise UserError(f"{flag} must be {one_of(choices)}, got {value!r}")


def tree_target(name: str) -> TreeTarget:
    """The registered target called ``name``; a :class:`UserError` names the choices."""
    _check_choice("--trees", name, TREE_TARGETS)
    return TREE_TARGETS[name]


@dataclass(frozen=True)
class CompileOptions:
    """Options of ``fecc compile`` (the CLI and the API share this dataclass); every value is
    checked when it is built, and a bad one raises :class:`~fecc.errors.UserError`.

    Attributes
    ----------
    target : target column; ``None`` picks one by the rule in :func:`fecc.frontend.table.choose_target`.
    feature_names : table columns for the model's features, in model order (for models saved without names).
    search : ``"nsr"`` (NSR-Boost experts, seed 004) or ``"none"`` (compile the legacy model only).
    llm : proposer spec for the search: ``auto`` (the embedded local LLM when its weights are installed,
        else the grammar proposer), ``none`` (built-in grammar proposer), ``local[:KEY]``,
        ``openai:URL#model``, ``vllm:MODEL``, ``replay:FILE`` (see :mod:`fecc.llm.registry`).
    record : file to record every LLM prompt/answer pair to (JSONL), for replay.
    seed : seed for splits, search and sampling; same inputs + seed (+ replayed LLM) ⇒ same bundle.
    force : replace an existing bundle at the output path.
    search_options : the search's options: a :class:`fecc.search.SearchOptions`, or a mapping of its
        options by name (unknown names are rejected) that is read into one, with ``seed`` as its
        default seed.  Always a ``SearchOptions`` once built.
    llm_max_calls, llm_max_tokens, llm_max_seconds : the LLM's budget for the whole compile (``None``: no
        cap): backend requests, prompt + answer tokens, seconds spent answering.  Once spent, the chains
        stop asking and the search finishes with what it has.
    llm_temperature : sampling temperature of the LLM's first answer (seed 004: 0.1).
    trees : how tree ensembles (legacy, aggregator) are lowered, a key of :data:`TREE_TARGETS`: ``"c"``
        (treelite + tl2cgen C and fecc's array engine, compiled with gcc) or ``"onnx"`` (one ai.onnx.ml
        TreeEnsemble graph served by onnxruntime; see :mod:`fecc.lower.onnx_trees`).
    categories : how the table's categorical feature columns are read when the model stored category
        values: ``"values"`` (the category values; refused when most match no stored category) or
        ``"codes"`` (the integer codes the model was trained on).
    sign_key : Ed25519 private key (PEM file) that signs the bundle's manifest (``manifest.sig``).
    emit : what the runtime scores: ``"native"`` (compiled C: trees, and experts with their aggregator in
        one library, :mod:`fecc.lower.ensemble`) or ``"onnx"`` (also ``model.onnx``, the whole ensemble
        and its link as one graph that onnxruntime alone scores, :mod:`fecc.lower.onnx_graph`; the
        runtime then scores with it).
    transforms : ``"none"`` or ``"teaming"``: the transformation search of seed 000 runs before the
        experts, and the transforms it chooses (``tf_1`` …) become numeric features the experts and the
        aggregator read (and the gate, rerunning the choice in each outer fold, judges); needs
        ``search="nsr"``.  See :mod:`fecc.transforms`.
    transform_options : the transform search's options: a :class:`fecc.transforms.TransformOptions`
        or a mapping of them by name (``--transform-option``), with ``seed`` as the default seed.
    """

    target: str | None = None
    feature_names: tuple[str, ...] | None = None
    search: str = "nsr"
    llm: str = "none"
    record: str | None = None
    seed: int = 0
    force: bool = False
    search_options: "SearchOptions | Mapping[str, Any]" = field(default_factory=dict)
    llm_max_calls: int | None = None
    llm_max_tokens: int | None = None
    llm_max_seconds: float | None = None
    llm_temperature: float = 0.1
    trees: str = "c"
    categories: str = "values"
    sign_key: str | None = None
    emit: str = "native"
    transforms: str = "none"
    transform_options: "TransformOptions | Mapping[str, Any]" = field(default_factory=dict)

    def __post_init__(self):
        _check_choice("--search", self.search, SEARCHES)
        _check_choice("--transforms", self.transforms, TRANSFORM_SEARCHES)
        if self.transforms != "none" and self.search == "none":
            raise UserError("--transforms teaming feeds the expert search: it needs --search nsr")
        for flag, value in (("--llm-max-calls", self.llm_max_calls), ("--llm-max-tokens", self.llm_max_tokens),
                            ("--llm-max-seconds", self.llm_max_seconds)):
            if value is not None and not value > 0:
                raise UserError(f"{flag} must be positive, got {value!r}")
        if not 0.0 <= self.llm_temperature <= 2.0:
            raise UserError(f"--llm-temperature must be between 0 and 2, got {self.llm_temperature!r}")
        tree_target(self.trees)
        _check_choice("--categories", self.categories, CATEGORY_MODES)
        _check_choice("--emit", self.emit, EMITS)
        from .llm.registry import check_spec

        check_spec(self.llm, record=self.record)
        object.__setattr__(self, "search_options", _search_options(self.search_options, self.seed))
        object.__setattr__(self, "transform_options", _transform_options(self.transform_options, self.seed))

    @property
    def tree_target(self) -> TreeTarget:
        return TREE_TARGETS[self.trees]


def _search_options(value, seed: int) -> "SearchOptions":
    from .search.options import SearchOptions

    if isinstance(value, SearchOptions):
        return value
    try:
        return SearchOptions.from_dict({"seed": seed, **dict(value or {})})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad search option: {exc}") from None


def _transform_options(value, seed: int) -> "TransformOptions":
    from .transforms.options import TransformOptions

    if isinstance(value, TransformOptions):
        return value
    try:
        return TransformOptions.from_dict({"seed": seed, **dict(value or {})})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad transform option: {exc}") from None
