"""The ML half of the team (seed 000 §3.3): encoder, evaluator, decoder, gradient-steered search.

* **Encoder** — token embedding → bidirectional GRU → the last states of both directions
  → a linear map to the embedding ``z`` of a sequence.
* **Evaluator** — a 2-layer MLP ``z → score`` (the real score, standardised).
* **Decoder** — an LSTM whose initial state comes from ``z`` and whose input at each step
  is the previous token's embedding concatenated with ``z``.  Its logits are masked by
  the stack automaton when decoding, so it only emits tokens a valid program allows; it
  is trained on the bare logits (the syntax is learnt, as in the paper), so decoding
  without the mask measures how often it alone would be invalid.

Trained jointly on ``L_rec + α·L_est`` (masked cross-entropy of the reconstruction plus
the evaluator's squared error).  The gradient-steered search starts from the embeddings
of the best sequences seen so far, ascends the evaluator's gradient (normalised steps of
``step_size`` times the embeddings' typical spread) and decodes the embeddings along the
way.  Everything runs on the CPU by default and on ``cuda`` when asked and available.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .automaton import Automaton
from .vocab import BOS, END, PAD


def torch_device(device: str | None) -> str:
    """``"cpu"``, or ``"cuda"`` when asked (``"auto"``: when torch sees a GPU)."""
    import torch

    if device in (None, "cpu"):
        return "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but torch sees no CUDA GPU")
    return str(device)


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run torch CPU ops with ``n`` threads inside the block (``None``/0: leave as is).

    The networks here are tiny: on a busy 2-core machine torch's thread pool spends more
    time waiting than computing (measured: 0.045 s per training step on one thread,
    4.5 s on two), so the model runs single-threaded on the CPU by default.
    """
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _single_threaded(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with cpu_threads(self.cpu_threads if self.device == "cpu" else None):
            return method(self, *args, **kwargs)

    return wrapper


def _nn():
    import torch
    from torch import nn

    class TeamingNet(nn.Module):
        def __init__(self, vocab_size: int, emb: int, hidden: int, latent: int, mlp: int):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, emb, padding_idx=PAD)
            self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
            self.to_z = nn.Linear(2 * hidden, latent)
            self.evaluator = nn.Sequential(nn.Linear(latent, mlp), nn.ReLU(), nn.Linear(mlp, 1))
            self.init_h = nn.Linear(latent, hidden)
            self.init_c = nn.Linear(latent, hidden)
            self.decoder = nn.LSTM(emb + latent, hidden, batch_first=True)
            self.out = nn.Linear(hidden, vocab_size)

        def encode(self, ids, lengths):
            x = self.embed(ids)
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.encoder(packed)               # (2, B, hidden)
            return self.to_z(torch.cat([h[0], h[1]], dim=-1))

        def evaluate(self, z):
            return self.evaluator(z).squeeze(-1)

        def init_state(self, z):
            return (torch.tanh(self.init_h(z)).unsqueeze(0).contiguous(),
                    torch.tanh(self.init_c(z)).unsqueeze(0).contiguous())

        def decode_logits(self, z, inputs, state=None):
            """Logits for every position of ``inputs`` (teacher forcing or one step)."""
            if state is None:
                state = self.init_state(z)
            x = self.embed(inputs)
            zz = z.unsqueeze(1).expand(-1, x.shape[1], -1)
            h, state = self.decoder(torch.cat([x, zz], dim=-1), state)
            return self.out(h), state

    return TeamingNet


@dataclass
class TrainStats:
    epochs: int
    loss_rec: float
    loss_est: float
    seconds: float


class TeamingModel:
    """Encoder–evaluator–decoder over one vocabulary, with its automaton.

    Parameters
    ----------
    automaton : the stack automaton (it carries the vocabulary).
    emb, hidden, latent, mlp : layer sizes.
    seed : seeds torch's generator for the weights and the sampling.
    device : ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    cpu_threads : torch threads on the CPU while the model works (0: torch's setting).
    """

    def __init__(self, automaton: Automaton, *, emb: int = 32, hidden: int = 64, latent: int = 32, mlp: int = 64,
                 seed: int = 0, device: str | None = "cpu", cpu_threads: int = 1):
        import torch

        self.torch = torch
        self.automaton = automaton
        self.vocab = automaton.vocab
        self.device = torch_device(device)
        self.cpu_threads = int(cpu_threads)
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        self.net = _nn()(len(self.vocab), emb, hidden, latent, mlp).to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        self.score_mean, self.score_std = 0.0, 1.0
        self.trained_epochs = 0
        self._masks: dict[tuple[int, ...], np.ndarray] = {}

    # --- tensors ---------------------------------------------------------------------
    def _batch(self, seqs: Sequence[Sequence[int]]):
        """Padded ids (with BOS), lengths, and automaton masks of every next-token position."""
        torch = self.torch
        T = max(len(s) for s in seqs)
        ids = np.full((len(seqs), T), PAD, dtype=np.int64)
        masks = np.zeros((len(seqs), max(T - 1, 1), len(self.vocab)), dtype=bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            key = tuple(int(t) for t in s)
            m = self._masks.get(key)
            if m is None:
                state = self.automaton.initial()
                rows = []
                for t in s[1:]:
                    rows.append(self.automaton.allowed(state))
                    state = self.automaton.step(state, t)
                m = np.stack(rows)
                self._masks[key] = m
            masks[i, : m.shape[0]] = m
        lengths = torch.tensor([len(s) for s in seqs])
        return (torch.from_numpy(ids).to(self.device), lengths,
                torch.from_numpy(masks).to(self.device))

    @_single_threaded
    def embed(self, seqs: Sequence[Sequence[int]]):
        """Embeddings ``z`` of sequences (no gradient)."""
        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            ids, lengths, _ = self._batch(seqs)
            return self.net.encode(ids, lengths)

    @_single_threaded
    def predict(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """The evaluator's predicted real score of each sequence (de-standardised)."""
        if not seqs:
            return np.zeros(0)
        torch = self.torch
        with torch.no_grad():
            z = self.embed(seqs)
            s = self.net.evaluate(z).cpu().numpy().astype(np.float64)
        return s * self.score_std + self.score_mean

    # --- training --------------------------------------------------------------------
    @_single_threaded
    def fit(self, seqs: Sequence[Sequence[int]], scores: Sequence[float], *, epochs: int = 30, batch: int = 32,
            lr: float = 3e-3, alpha: float = 1.0, weight_decay: float = 1e-5, masked: bool = False) -> TrainStats:
        """Joint training on ``L_rec + α·L_est`` (scores are standardised on these examples).

        ``masked`` applies the automaton's mask to the reconstruction logits too; by
        default the decoder learns the syntax itself (as in the paper), so that its
        invalid rate *before* the automaton can be measured; decoding is masked either way.
        """
        import time

        torch = self.torch
        F = torch.nn.functional
        start = time.perf_counter()
        seqs = [list(s) for s in seqs]
        y = np.asarray(scores, dtype=np.float64)
        self.score_mean = float(y.mean())
        self.score_std = float(y.std()) or 1.0
        target = torch.tensor((y - self.score_mean) / self.score_std, dtype=torch.float32, device=self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        rng = np.random.default_rng(self.seed + self.trained_epochs)
        n = len(seqs)
        last_rec = last_est = float("nan")
        self.net.train()
        for _ in range(epochs):
            order = rng.permutation(n)
            tot_rec = tot_est = 0.0
            for b in range(0, n, batch):
                idx = order[b: b + batch]
                ids, lengths, masks = self._batch([seqs[i] for i in idx])
                z = self.net.encode(ids, lengths)
                logits, _ = self.net.decode_logits(z, ids[:, :-1])
                if masked:
                    logits = logits.masked_fill(~masks, -1e9)
                tgt = ids[:, 1:]
                valid = tgt != PAD
                rec = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
                rec = (rec * valid.reshape(-1)).sum() / valid.sum()
                est = F.mse_loss(self.net.evaluate(z), target[torch.as_tensor(idx, device=self.device)])
                loss = rec + alpha * est
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
                opt.step()
                tot_rec += float(rec.detach()) * len(idx)
                tot_est += float(est.detach()) * len(idx)
            last_rec, last_est = tot_rec / n, tot_est / n
            self.trained_epochs += 1
        self.net.eval()
        return TrainStats(epochs, last_rec, last_est, time.perf_counter() - start)

    # --- search ----------------------------------------------------------------------
    @_single_threaded
    def gradient_search(self, starts: Sequence[Sequence[int]], *, steps: int = 8, step_size: float = 0.25):
        """Embeddings along the evaluator's gradient from each start: a tensor ``(starts·steps, latent)``.

        Each step moves every embedding by ``step_size`` × (the starts' per-dimension
        spread, summed as a norm) along the normalised gradient of the predicted score.
        """
        torch = self.torch
        z0 = self.embed(starts)
        scale = float(z0.std(dim=0).norm()) if z0.shape[0] > 1 else float(z0.norm(dim=1).mean())
        scale = scale or 1.0
        z = z0.clone().requires_grad_(True)
        path = []
        self.net.eval()
        for _ in range(steps):
            score = self.net.evaluate(z).sum()
            (g,) = torch.autograd.grad(score, z)
            with torch.no_grad():
                g = g / (g.norm(dim=1, keepdim=True) + 1e-12)
                z = (z + step_size * scale * g).detach().requires_grad_(True)
                path.append(z.detach().clone())
        return torch.cat(path, dim=0) if path else z0

    @_single_threaded
    def decode(self, z, *, sample: bool = True, temperature: float = 1.0, constrained: bool = True,
               combine: Callable | None = None) -> list[list[int]]:
        """Decode embeddings into token sequences (each starts with ``BOS``).

        ``constrained`` masks the logits with the automaton (every result is a valid
        program); without it, any token but ``<pad>``/``<bos>`` may come next and the
        sequence stops at ``END`` or the length cap — how invalid the bare decoder is.
        ``combine(prefixes, logp_ml, allowed) -> logp`` replaces the ML log-probabilities
        at each step (product-of-experts decoding, :mod:`.poe`).
        """
        torch = self.torch
        B = int(z.shape[0])
        auto = self.automaton
        states = [auto.initial() for _ in range(B)]
        seqs = [[BOS] for _ in range(B)]
        done = np.zeros(B, dtype=bool)
        free = np.ones(len(self.vocab), dtype=bool)
        free[[PAD, BOS]] = False
        with torch.no_grad():
            state = self.net.init_state(z)
            inp = torch.full((B, 1), BOS, dtype=torch.long, device=self.device)
            for _ in range(auto.limits.max_tokens - 1):
                logits, state = self.net.decode_logits(z, inp, state)
                logits = logits[:, -1, :]
                if constrained:
                    allowed = auto.masks(states)
                else:
                    allowed = np.tile(free, (B, 1))
                    allowed[done] = False
                    allowed[done, PAD] = True
                mask_t = torch.from_numpy(allowed).to(self.device)
                logp = torch.log_softmax(logits.masked_fill(~mask_t, float("-inf")), dim=-1)
                if combine is not None:
                    logp = combine([s for s in seqs], logp, allowed)
                if temperature != 1.0:   # on the mixture, so that it tempers both experts
                    logp = torch.log_softmax(logp / max(temperature, 1e-6), dim=-1)
                if sample:
                    probs = torch.exp(logp).nan_to_num(0.0)
                    probs = probs / probs.sum(dim=-1, keepdim=True)
                    tok = torch.multinomial(probs, 1, generator=self.gen).squeeze(1)
                else:
                    tok = logp.argmax(dim=-1)
                toks = tok.cpu().numpy()
                for i in range(B):
                    if done[i]:
                        continue
                    t = int(toks[i])
                    seqs[i].append(t)
                    if constrained:
                        states[i] = auto.step(states[i], t)
                    if t == END:
                        done[i] = True
                if done.all():
                    break
                inp = tok.unsqueeze(1)
        return seqs

    @_single_threaded
    def sample(self, n: int, *, temperature: float = 1.0, constrained: bool = True) -> list[list[int]]:
        """Decode ``n`` random embeddings drawn around the training embeddings' distribution."""
        torch = self.torch
        latent = self.net.to_z.out_features
        z = torch.randn((n, latent), generator=self.gen, device=self.device)
        return self.decode(z, sample=True, temperature=temperature, constrained=constrained)
