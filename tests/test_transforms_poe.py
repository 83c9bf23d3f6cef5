"""Product-of-experts decoding: p ∝ p_ML^λ · p_LLM^(1−λ) over the tokens the automaton allows."""
from __future__ import annotations

import numpy as np
import pytest

from fecc.transforms.poe import PoECombiner, combine_logprobs


def _dists(seed=0, V=12):
    rng = np.random.default_rng(seed)
    allowed = rng.random(V) < 0.6
    allowed[0] = False
    allowed[3] = True
    ml = rng.normal(size=V)
    ml = ml - np.logaddexp.reduce(ml)                     # ML over the whole vocabulary
    llm = np.where(allowed, rng.normal(size=V), -np.inf)  # LLM already over allowed
    llm = llm - np.logaddexp.reduce(llm[allowed])
    return ml, llm, allowed


def _restricted(logp, allowed):
    out = np.where(allowed, logp, -np.inf)
    return out - np.logaddexp.reduce(out[allowed])


def test_lambda_one_is_the_ml_distribution_over_allowed_tokens():
    ml, llm, allowed = _dists()
    got = combine_logprobs(ml, llm, allowed, 1.0)
    assert np.allclose(got[allowed], _restricted(ml, allowed)[allowed])
    assert np.isneginf(got[~allowed]).all()


def test_lambda_zero_is_the_llm_distribution_over_allowed_tokens():
    ml, llm, allowed = _dists(1)
    got = combine_logprobs(ml, llm, allowed, 0.0)
    assert np.allclose(got[allowed], _restricted(llm, allowed)[allowed])


@pytest.mark.parametrize("lam", [0.2, 0.5, 0.8])
def test_intermediate_lambda_is_the_normalised_geometric_mixture(lam):
    ml, llm, allowed = _dists(2)
    got = combine_logprobs(ml, llm, allowed, lam)
    p = np.where(allowed, np.exp(ml) ** lam * np.exp(llm) ** (1 - lam), 0.0)
    p /= p.sum()
    assert np.allclose(np.exp(got), p)
    assert np.isclose(np.exp(got).sum(), 1.0)


def test_both_experts_must_agree():
    # ML loves token 1, the LLM token 2; a token both like moderately wins under PoE
    allowed = np.array([False, True, True, True])
    ml = np.log(np.array([1e-9, 0.70, 0.01, 0.29]))
    llm = np.log(np.array([1e-9, 0.01, 0.70, 0.29]))
    got = np.exp(combine_logprobs(ml, llm, allowed, 0.5))
    assert got.argmax() == 3


def test_disagreement_everywhere_falls_back_and_lambda_is_checked():
    allowed = np.array([True, True, False])
    ml = np.array([np.log(0.5), np.log(0.5), -np.inf])
    llm = np.array([-np.inf, -np.inf, 0.0])
    got = combine_logprobs(ml, llm, allowed, 0.5)
    assert np.allclose(np.exp(got[:2]), 0.5) and np.isneginf(got[2])
    with pytest.raises(ValueError):
        combine_logprobs(ml, llm, allowed, 1.5)


def test_combiner_with_lambda_one_never_calls_the_student():
    torch = pytest.importorskip("torch")

    class Boom:
        def begin(self, n):
            raise AssertionError("the student is not needed at lambda = 1")

    comb = PoECombiner(Boom(), 1.0, 3)
    x = torch.log_softmax(torch.randn(3, 5), dim=-1)
    assert comb([[1], [1], [1]], x, np.ones((3, 5), dtype=bool)) is x
