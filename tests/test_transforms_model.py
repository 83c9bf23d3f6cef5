"""Seed 000's ML pipeline in torch: Bi-GRU encoder, MLP evaluator, LSTM decoder, gradient search."""
from __future__ import annotations

import numpy as np
import pytest

from fecc.transforms.automaton import Automaton
from fecc.transforms.model import TeamingModel, torch_device
from fecc.transforms.vocab import Vocab

torch = pytest.importorskip("torch")


def _data(n=96, seed=0):
    v = Vocab.build(["a", "b", "c"])
    auto = Automaton(v)
    rng = np.random.default_rng(seed)
    seqs = [auto.sample(rng) for _ in range(n)]
    # a learnable score: how many times feature "a" appears
    score = np.array([sum(t == v.index["$a"] for t in s) for s in seqs], dtype=float)
    return v, auto, seqs, score


def _tiny(auto, seed=0):
    return TeamingModel(auto, emb=16, hidden=32, latent=16, mlp=32, seed=seed)


def test_joint_training_lowers_both_losses():
    v, auto, seqs, score = _data()
    model = _tiny(auto)
    first = model.fit(seqs, score, epochs=1, batch=32, lr=5e-3)
    later = model.fit(seqs, score, epochs=25, batch=32, lr=5e-3)
    assert later.loss_rec < 0.7 * first.loss_rec
    assert later.loss_est < 0.7 * first.loss_est
    pred = model.predict(seqs)
    assert np.corrcoef(pred, score)[0, 1] > 0.6       # the evaluator learnt the score
    z = model.embed(seqs[:5])
    assert tuple(z.shape) == (5, 16)


def test_reconstruction_and_gradient_search_give_valid_programs_with_higher_predictions():
    v, auto, seqs, score = _data()
    model = _tiny(auto)
    model.fit(seqs, score, epochs=30, batch=32, lr=5e-3)
    order = np.argsort(score)
    starts = [seqs[i] for i in order[:8]]            # start from the worst ones
    z0 = model.embed(starts)
    path = model.gradient_search(starts, steps=5, step_size=0.5)
    assert tuple(path.shape) == (8 * 5, 16)
    with torch.no_grad():
        before = model.net.evaluate(z0).mean().item()
        after = model.net.evaluate(path[-8:]).mean().item()
    assert after > before                              # ascent on the evaluator
    decoded = model.decode(path, sample=False)
    for s in decoded:
        assert auto.accepts(s)
        v.parse(s)
    # greedy reconstruction of training sequences is mostly right
    recon = model.decode(model.embed(seqs[:32]), sample=False)
    exact = sum(r == s for r, s in zip(recon, seqs[:32]))
    assert exact >= 8


def test_same_seed_same_networks_and_samples():
    v, auto, seqs, score = _data(48)
    outs = []
    for _ in range(2):
        model = _tiny(auto, seed=3)
        model.fit(seqs, score, epochs=3, batch=16)
        outs.append((model.predict(seqs[:4]).tolist(), model.sample(16)))
    assert outs[0] == outs[1]


def test_device_choice():
    assert torch_device("cpu") == "cpu" and torch_device(None) == "cpu"
    assert torch_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            torch_device("cuda")
