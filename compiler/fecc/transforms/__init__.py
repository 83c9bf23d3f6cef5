"""The teaming transformation search (seed 000): new features written as postfix programs.

A stage of its own, between region finding and the expert search: it finds up to a few
numeric features (IR expressions over the table's columns) that raise the frozen legacy
model's out-of-fold metric.  It imports the IR, the LLM layer and the search's metrics,
never the expert search.

>>> from fecc.transforms import search_transforms, TransformOptions
>>> result = search_transforms(X, y, legacy_margin, "binary", folds, TransformOptions(seed=0))
>>> [t.to_dict() for t in result.transforms], result.stats["evaluated"]

Modules: :mod:`.vocab` (tokens), :mod:`.automaton` (valid-by-construction decoding),
:mod:`.evaluate` (cross-fitted gain), :mod:`.archive` (experience archive),
:mod:`.teacher` (golden examples), :mod:`.model` (Bi-GRU / MLP / LSTM and the gradient
search, torch), :mod:`.student` (LoRA student LLM), :mod:`.poe` (product-of-experts
decoding), :mod:`.ranking` (learned ranking, Kendall's τ), :mod:`.search` (the stage).
"""
from .options import TransformOptions
from .search import Transform, TransformResult, search_transforms

__all__ = ["search_transforms", "TransformOptions", "TransformResult", "Transform"]
