"""The NSR-Boost search (seed 004): hard regions → expert chains → aggregator → safety gate.

>>> result = run_search(X=X, y=y, legacy_margin=m, task="binary", splits=splits,
...                     proposer=GrammarProposer(), options=SearchOptions(), workdir=tmp)
>>> result.gate.decision, [e.region_rule for e in result.experts]
"""
from .driver import SearchResult, function_names, run_search
from .experts import Expert
from .options import SearchOptions

__all__ = ["run_search", "SearchOptions", "SearchResult", "Expert", "function_names"]
