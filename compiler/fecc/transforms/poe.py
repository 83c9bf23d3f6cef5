"""Product-of-experts decoding (seed 000 §3.5): the ML decoder and the student LLM vote together.

At every step, over the tokens the stack automaton allows,

    p(t) ∝ p_ML(t)^λ · p_LLM(t)^(1−λ)

where ``p_ML`` is the LSTM decoder's distribution (masked) and ``p_LLM`` the student's
probability of the token's *full string* after the prefix, renormalised over the allowed
tokens (:meth:`fecc.transforms.student.Student.logprobs`).  ``λ = 1`` is the ML decoder
alone, ``λ = 0`` the student alone (constrained by the same automaton).
"""
from __future__ import annotations

import numpy as np

from .vocab import PAD


def combine_logprobs(logp_ml: np.ndarray, logp_llm: np.ndarray, allowed: np.ndarray, lam: float) -> np.ndarray:
    """``log p`` of the product of experts over ``allowed`` (``-inf`` elsewhere), normalised.

    Both inputs are log-probabilities over the vocabulary (``-inf`` where impossible);
    ``lam`` weighs the ML expert.  ``lam == 1`` returns the ML distribution restricted to
    ``allowed``, ``lam == 0`` the LLM's.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    allowed = np.asarray(allowed, dtype=bool)
    ml = np.asarray(logp_ml, dtype=np.float64)
    llm = np.asarray(logp_llm, dtype=np.float64)
    if lam == 1.0:
        mix = np.where(allowed, ml, -np.inf)
    elif lam == 0.0:
        mix = np.where(allowed, llm, -np.inf)
    else:
        with np.errstate(invalid="ignore"):
            mix = np.where(allowed, lam * ml + (1.0 - lam) * llm, -np.inf)
    finite = np.isfinite(mix)
    if not finite.any():  # the experts disagree completely: fall back to the ML expert, then uniform
        mix = np.where(allowed, ml, -np.inf)
        finite = np.isfinite(mix)
        if not finite.any():
            mix = np.where(allowed, 0.0, -np.inf)
            finite = allowed
    out = np.full(mix.shape, -np.inf)
    out[finite] = mix[finite] - np.logaddexp.reduce(mix[finite])
    return out


class PoECombiner:
    """The ``combine`` hook of :meth:`fecc.transforms.model.TeamingModel.decode` for one batch.

    Keeps one student decoding (a key/value cache) per sequence, feeds it each token the
    batch chose, and mixes the two experts row by row.  ``calls`` counts the student's
    scoring passes.
    """

    def __init__(self, student, lam: float, n: int):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {lam}")
        self.student = student
        self.lam = float(lam)
        self.decs = student.begin(n) if lam < 1.0 else []
        self.fed = [1] * n          # tokens of each prefix already given to the student (BOS)
        self.calls = 0

    def __call__(self, prefixes, logp_ml, allowed):
        import torch

        if self.lam == 1.0:
            return logp_ml
        ml = logp_ml.detach().cpu().numpy().astype(np.float64)
        rows = []
        for i, prefix in enumerate(prefixes):
            new = prefix[self.fed[i]:]
            if allowed[i].sum() <= 1:         # finished (only <pad>) or forced: nothing to mix
                rows.append(np.where(allowed[i], ml[i], -np.inf))
                if not allowed[i][PAD]:       # forced but not finished: keep the prefix current
                    self.student.advance(self.decs[i], new)
                    self.fed[i] = len(prefix)
                continue
            llm = self.student.logprobs(self.decs[i], allowed[i], new)
            self.fed[i] = len(prefix)
            self.calls += 1
            rows.append(combine_logprobs(ml[i], llm, allowed[i], self.lam))
        return torch.as_tensor(np.stack(rows), dtype=logp_ml.dtype, device=logp_ml.device)
