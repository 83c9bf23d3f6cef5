"""Seed 000's vocabulary and stack automaton: every decoded sequence is a valid postfix program."""
from __future__ import annotations

import numpy as np
import pytest

from fecc.ir import OPS, parse_postfix, validate
from fecc.transforms.automaton import Automaton, Limits
from fecc.transforms.model import TeamingModel
from fecc.transforms.vocab import BOS, END, K_BINARY, K_UNARY, PAD, SEP, Vocab, numeric_ops

FEATURES = ["x1", "x2", "capital gain", "age"]


def _vocab():
    return Vocab.build(FEATURES)


def _check_all_parse(vocab: Vocab, automaton: Automaton, seqs) -> None:
    lim = automaton.limits
    for s in seqs:
        assert s[0] == BOS and s[-1] == END, s
        assert automaton.accepts(s)
        exprs = vocab.parse(s)                    # raises if any program does not parse
        assert 1 <= len(exprs) <= lim.max_programs
        for e in exprs:
            validate(e, features=FEATURES, expect="num")


def test_vocabulary_is_the_ir_operator_table():
    v = _vocab()
    assert v.tokens[:4] == ("<pad>", "<bos>", "SEP", "END")
    assert (PAD, BOS, SEP, END) == (0, 1, 2, 3)
    unary = [t for t, k in zip(v.tokens, v.kinds) if k == K_UNARY]
    binary = [t for t, k in zip(v.tokens, v.kinds) if k == K_BINARY]
    assert unary == list(numeric_ops(1)) and binary == list(numeric_ops(2))
    assert set(unary) | set(binary) <= set(OPS)
    assert "where" not in v.tokens and "lt" not in v.tokens     # boolean ops are not features
    assert "$capital%20gain" in v.tokens                       # the IR's own feature token
    with pytest.raises(ValueError):
        Vocab.build(["x"], unary=["lt"])
    with pytest.raises(ValueError):
        Vocab.build([])


def test_encode_and_parse_round_trip():
    v = _vocab()
    ids = [BOS] + v.encode(["$x1 $x2 mul", "$capital%20gain log"])
    assert v.programs(ids) == ["$x1 $x2 mul", "$capital%20gain log"]
    assert [str(e) for e in v.parse(ids)] == ["$x1 $x2 mul", "$capital%20gain log"]
    with pytest.raises(KeyError):
        v.encode_program("$nope")


@pytest.mark.parametrize("limits", [Limits(), Limits(3, 2, 2, 1), Limits(9, 4, 5, 2), Limits(1, 1, 1, 1)])
def test_no_reachable_state_is_a_dead_end(limits):
    v = Vocab.build(["a", "b"], constants=(1.0,))
    auto = Automaton(v, limits)
    seen, frontier = {auto.initial()}, [auto.initial()]
    while frontier:
        state = frontier.pop()
        mask = auto.allowed(state)
        assert mask.any()
        if state.done:
            assert mask.sum() == 1 and mask[PAD]
        else:
            assert not mask[PAD] and not mask[BOS]
            assert state.prog_len <= limits.max_len and len(state.stack) <= limits.max_stack
        for tok in np.flatnonzero(mask):
            nxt = auto.step(state, int(tok))
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)


def test_rules_refuse_degenerate_programs():
    v = _vocab()
    auto = Automaton(v)
    start = auto.allowed(auto.initial())
    assert not start[v.index["1.0"]] and not start[END] and not start[v.index["log"]]   # starts with a feature
    s = auto.run([BOS, v.index["$x1"]])
    m = auto.allowed(s)
    assert not m[v.index["$x1"]]                  # the same leaf twice in a row
    assert m[v.index["$x2"]] and m[v.index["1.0"]] and m[END]
    s = auto.run([BOS, v.index["$x1"], v.index["neg"]])
    assert not auto.allowed(s)[v.index["neg"]]    # neg neg
    with pytest.raises(ValueError):
        auto.step(auto.initial(), v.index["add"])


def test_10000_automaton_samples_all_parse():
    v = _vocab()
    auto = Automaton(v)
    rng = np.random.default_rng(0)
    seqs = [auto.sample(rng) for _ in range(10_000)]
    _check_all_parse(v, auto, seqs)
    assert len({tuple(s) for s in seqs}) > 3000    # and they are varied


def test_10000_decodes_from_untrained_and_trained_decoders_all_parse():
    import torch

    v = _vocab()
    auto = Automaton(v)
    model = TeamingModel(auto, emb=8, hidden=16, latent=8, mlp=16, seed=0)
    z = torch.randn((10_000, 8), generator=torch.Generator().manual_seed(0))
    untrained = model.decode(z, sample=True)
    _check_all_parse(v, auto, untrained)

    rng = np.random.default_rng(1)
    train = [auto.sample(rng) for _ in range(64)]
    model.fit(train, rng.normal(size=64), epochs=3, batch=32)
    trained = model.decode(z, sample=True, temperature=1.5)
    _check_all_parse(v, auto, trained)
    greedy = model.decode(z[:200], sample=False)
    _check_all_parse(v, auto, greedy)


def test_without_the_automaton_the_bare_decoder_is_often_invalid():
    import torch

    v = _vocab()
    auto = Automaton(v)
    model = TeamingModel(auto, emb=8, hidden=16, latent=8, mlp=16, seed=0)
    z = torch.randn((300, 8), generator=torch.Generator().manual_seed(0))
    bare = model.decode(z, sample=True, constrained=False)
    bad = 0
    for s in bare:
        try:
            ok = s[-1] == END and all(parse_postfix(p) is not None for p in v.programs(s)) and v.programs(s)
        except ValueError:
            ok = False
        bad += not ok
    assert bad > 100          # an untrained decoder without the mask writes mostly garbage
