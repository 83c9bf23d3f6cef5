"""Progress output of long commands: text lines, and one live bar per expert chain.

:class:`Reporter` is the ``progress`` callable the CLI hands to the library.  Called
with a string it prints a line; its :meth:`Reporter.chain_step` method takes the search's
:class:`~fecc.search.experts.ChainStep` events (duck-typed: this module imports nothing
from the search).  On a terminal a chain is one line redrawn in place::

    [fecc] chain 2/5 region_3 ██████░░░░░░░░░  6/15 proposals · 2 accepted · out-of-fold gain +0.42% of the legacy loss · LLM 41 s

and is closed with its outcome when the chain ends.  When stderr is not a terminal
(a log file, CI) every step is printed as its own short line instead, so logs stay
readable without carriage returns.
"""
from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 15


def _bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    total = max(total, 1)
    filled = min(width, round(width * min(done, total) / total))
    return "█" * filled + "░" * (width - filled)


def format_step(step, *, bar: bool) -> str:
    """One chain step as text (the bar form for terminals, the plain form for logs)."""
    head = f"chain {step.chain_no}/{step.n_chains} {step.chain}"
    if step.metric_name == "oof gain":  # the search's chains: out-of-fold share of the legacy loss removed
        score = f"out-of-fold gain {100 * step.best:+.2f}% of the legacy loss"
    else:
        score = f"{step.metric_name} {step.best:.4f} (legacy {step.legacy:.4f})"
    counts = (f"{step.proposal:>2}/{step.max_proposals} proposals · {step.accepted}/{step.iterations} accepted · "
              f"{score}")
    timing = f"LLM {step.llm_seconds:.0f} s · {step.seconds:.0f} s" if step.llm_seconds > 0 else f"{step.seconds:.0f} s"
    if bar:
        return f"{head} {_bar(step.proposal, step.max_proposals)} {counts} · {timing}"
    last = f" · last: {step.last}" if step.last and step.proposal else ""
    return f"{head}: {counts} · {timing}{last}"


class Reporter:
    """Prints progress to ``stream`` (stderr by default) with a ``[fecc]`` prefix.

    Parameters
    ----------
    stream : where to write.
    live : redraw a chain's bar in place; default: when ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, prefix: str = "[fecc] "):
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(self.stream.isatty()) if live is None else live
        self.prefix = prefix
        self._open = False   # a bar is drawn on the current line

    def __call__(self, message: str) -> None:
        self._close_bar()
        self.stream.write(f"{self.prefix}{message}\n")
        self.stream.flush()

    def chain_step(self, step) -> None:
        if self.live:
            text = format_step(step, bar=True)
            self.stream.write(f"\r\x1b[2K{self.prefix}{text}")
            self._open = True
            if step.done:
                self.stream.write(f"\n{self.prefix}  └ {step.outcome}\n")
                self._open = False
            self.stream.flush()
        elif step.done:
            self(f"{format_step(step, bar=False)} · {step.outcome}")
        elif step.proposal:
            self(format_step(step, bar=False))

    def rows(self, done: int, total: int | None, *, seconds: float = 0.0, label: str = "scoring") -> None:
        """Rows done of a batch job (``fecc score``): one bar redrawn in place on a terminal,
        nothing otherwise (logs get the closing summary line only)."""
        if not self.live:
            return
        rate = f" · {done / seconds / 1e6:.2f}M rows/s" if seconds > 0 else ""
        if total:
            text = f"{label} {_bar(done, total, 30)} {done:,}/{total:,} rows ({100 * done / total:.0f}%){rate}"
        else:
            text = f"{label} {done:,} rows{rate}"
        self.stream.write(f"\r\x1b[2K{self.prefix}{text}")
        self._open = True
        self.stream.flush()

    def _close_bar(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
