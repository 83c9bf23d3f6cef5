"""The stack automaton: which tokens may come next so that every sequence is a valid program.

The paper lets its decoders emit anything and reports the invalid rate; here decoding is
*constrained*: at every step the decoder may only pick a token this automaton allows,
and every state it allows has a completion, so every finished sequence parses into the
IR (zero invalid, by construction).  A state holds the operand stack of the current
program; each entry records whether it reads a feature, its tree depth and the unary
operator that made it.

Rules (with the caps of :class:`Limits`):

* a program starts with a feature; a constant may only be pushed onto an entry that reads
  a feature, and a unary operator only applies to one (no constant-only subtrees, so every
  program reads at least one feature and a binary operator always has a feature operand);
* the stack never holds more than ``max_stack`` entries, a program has at most
  ``max_len`` tokens, the tree at most ``max_depth`` levels: a token is allowed only when
  the cheapest completion after it (binary operators folding the stack right to left)
  still fits, so no state is a dead end;
* a few unary repeats that do nothing are refused (``neg neg``, ``abs abs``, ``abs`` of a
  value that is never negative, ``sign sign``), and so is the same leaf twice in a row
  (``$x $x sub`` is constant, ``$x $x mul`` is ``square``);
* ``SEP`` (another program follows, at most ``max_programs``) and ``END`` are allowed
  exactly when the stack holds one value; after ``END`` only ``<pad>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .vocab import BOS, END, K_BINARY, K_CONST, K_FEATURE, K_UNARY, PAD, SEP, Vocab

#: (operator that made the operand, next unary operator) pairs whose result is the operand.
REDUNDANT = frozenset({("neg", "neg"), ("abs", "abs"), ("sign", "sign"), ("square", "abs"), ("sqrt", "abs"),
                       ("exp", "abs"), ("log", "abs"), ("sigmoid", "abs")})


@dataclass(frozen=True)
class Limits:
    """Size caps of decoded programs."""

    max_len: int = 7          # tokens per program
    max_stack: int = 3        # operands on the stack at once
    max_depth: int = 4        # tree depth of a program (a leaf has depth 1)
    max_programs: int = 2     # programs per sequence

    def __post_init__(self):
        if self.max_len < 1 or self.max_stack < 1 or self.max_depth < 1 or self.max_programs < 1:
            raise ValueError(f"automaton limits must be positive: {self}")

    @property
    def max_tokens(self) -> int:
        """Longest sequence, ``BOS`` and ``END`` included."""
        return 1 + self.max_programs * (self.max_len + 1)


# one stack entry: (reads a feature, tree depth, unary op that made it or "", leaf token id or -1)
Entry = tuple[bool, int, str, int]


class State(NamedTuple):
    stack: tuple[Entry, ...] = ()
    prog_len: int = 0
    programs: int = 0         # programs finished (closed by SEP)
    done: bool = False        # END seen


def _fold_depth(stack: tuple[Entry, ...]) -> int:
    """Tree depth after folding the stack with binary operators, right to left (0 if empty)."""
    if not stack:
        return 0
    cur = stack[-1][1]
    for entry in reversed(stack[:-1]):
        cur = max(entry[1], cur) + 1
    return cur


class Automaton:
    """Allowed-token masks and transitions over a :class:`~fecc.transforms.vocab.Vocab`."""

    def __init__(self, vocab: Vocab, limits: Limits = Limits()):
        self.vocab = vocab
        self.limits = limits
        self.kinds = vocab.kind_array()
        self._cache: dict[State, np.ndarray] = {}
        self._next: dict[tuple[State, int], State] = {}
        self._options: dict[tuple, dict[State, tuple]] = {}
        self._feature_ids = np.flatnonzero(self.kinds == K_FEATURE)
        self._const_ids = np.flatnonzero(self.kinds == K_CONST)
        self._unary_ids = np.flatnonzero(self.kinds == K_UNARY)
        self._binary_ids = np.flatnonzero(self.kinds == K_BINARY)

    def initial(self) -> State:
        return State()

    # --- the rules --------------------------------------------------------------------
    def _fits(self, stack: tuple[Entry, ...], prog_len: int) -> bool:
        lim = self.limits
        left = lim.max_len - prog_len
        return (len(stack) <= lim.max_stack and left >= len(stack) - 1
                and _fold_depth(stack) <= lim.max_depth)

    def allowed(self, state: State) -> np.ndarray:
        """Boolean mask over the vocabulary: the tokens that may follow ``state``."""
        mask = self._cache.get(state)
        if mask is not None:
            return mask
        mask = np.zeros(len(self.vocab), dtype=bool)
        if state.done:
            mask[PAD] = True
            self._cache[state] = mask
            return mask
        st, n = state.stack, state.prog_len + 1
        top = st[-1] if st else None
        if self._fits(st + ((True, 1, "", -1),), n):
            mask[self._feature_ids] = True
        if top is not None and top[0] and self._fits(st + ((False, 1, "", -1),), n):
            mask[self._const_ids] = True
        if top is not None and top[3] >= 0:
            mask[top[3]] = False          # the same leaf twice in a row: a binary op on it is degenerate
        if top is not None and top[0] and self._fits(st[:-1] + ((True, top[1] + 1, "", -1),), n):
            mask[self._unary_ids] = True
            for t in self._unary_ids:
                if (top[2], self.vocab.tokens[t]) in REDUNDANT:
                    mask[t] = False
        if len(st) >= 2 and (st[-1][0] or st[-2][0]):
            merged = st[:-2] + ((True, max(st[-1][1], st[-2][1]) + 1, "", -1),)
            if self._fits(merged, n):
                mask[self._binary_ids] = True
        if len(st) == 1:
            mask[END] = True
            if state.programs + 1 < self.limits.max_programs:
                mask[SEP] = True
        self._cache[state] = mask
        return mask

    def step(self, state: State, token: int) -> State:
        """The state after ``token``; ``ValueError`` if the token is not allowed."""
        token = int(token)
        key = (state, token)
        nxt = self._next.get(key)
        if nxt is not None:
            return nxt
        if not self.allowed(state)[token]:
            raise ValueError(f"token {self.vocab.tokens[token]!r} is not allowed here")
        if token == PAD:
            nxt = state
        elif token == END:
            nxt = State(state.stack, state.prog_len, state.programs, True)
        elif token == SEP:
            nxt = State((), 0, state.programs + 1, False)
        else:
            kind = self.kinds[token]
            st = state.stack
            if kind == K_FEATURE:
                st = st + ((True, 1, "", token),)
            elif kind == K_CONST:
                st = st + ((False, 1, "", token),)
            elif kind == K_UNARY:
                st = st[:-1] + ((True, st[-1][1] + 1, self.vocab.tokens[token], -1),)
            else:
                st = st[:-2] + ((True, max(st[-1][1], st[-2][1]) + 1, "", -1),)
            nxt = State(st, state.prog_len + 1, state.programs, False)
        if len(self._next) < 1_000_000:
            self._next[key] = nxt
        return nxt

    def run(self, ids) -> State:
        """Feed a whole sequence (a leading ``BOS`` is skipped)."""
        state = self.initial()
        for t in ids:
            if int(t) == BOS:
                continue
            state = self.step(state, t)
        return state

    def accepts(self, ids) -> bool:
        """Whether ``ids`` is a complete sequence the automaton allows."""
        try:
            return self.run(ids).done
        except ValueError:
            return False

    def masks(self, states) -> np.ndarray:
        """Stacked masks of several states, shape ``(len(states), len(vocab))``."""
        return np.stack([self.allowed(s) for s in states])

    # --- sampling without a model ---------------------------------------------------
    def sample(self, rng: np.random.Generator, *, token_weights: np.ndarray | None = None,
               kind_weights: dict[int, float] | None = None) -> list[int]:
        """One random sequence: at each step a kind (feature, constant, ...) then a token.

        ``token_weights`` (one per vocabulary token) weights tokens within a kind;
        ``kind_weights`` weights the kinds (``END`` and ``SEP`` count as their own kinds,
        keys ``-END`` and ``-SEP``).
        """
        kw = {K_FEATURE: 1.0, K_CONST: 0.3, K_UNARY: 0.6, K_BINARY: 1.0, -END: 0.8, -SEP: 0.15}
        if kind_weights:
            kw.update(kind_weights)
        tw = np.ones(len(self.vocab)) if token_weights is None else np.asarray(token_weights, dtype=float)
        groups = {K_FEATURE: self._feature_ids, K_CONST: self._const_ids, K_UNARY: self._unary_ids,
                  K_BINARY: self._binary_ids, -END: np.array([END]), -SEP: np.array([SEP])}
        wkey = (hash(tw.tobytes()), tuple(sorted(kw.items())))
        cache = self._options.setdefault(wkey, {})
        if len(self._options) > 8:  # a few weightings at a time
            self._options = {wkey: cache}
        state, out = self.initial(), [BOS]
        while not state.done:
            entry = cache.get(state)
            if entry is None:
                mask = self.allowed(state)
                options, weights = [], []
                for kind, ids in groups.items():
                    ok = ids[mask[ids]]
                    if ok.size and kw.get(kind, 0.0) > 0:
                        w = tw[ok]
                        options.append((ok, np.cumsum(w / w.sum()) if w.sum() > 0 else None))
                        weights.append(kw[kind])
                if not options:  # every allowed kind has weight 0: any allowed token
                    options, weights = [(np.flatnonzero(mask), None)], [1.0]
                entry = (options, np.cumsum(np.asarray(weights) / np.sum(weights)))
                cache[state] = entry
            options, cw = entry
            ids, cum = options[min(int(np.searchsorted(cw, rng.random(), side="right")), len(options) - 1)]
            if cum is None:
                token = int(ids[int(rng.integers(ids.size))])
            else:
                token = int(ids[min(int(np.searchsorted(cum, rng.random(), side="right")), ids.size - 1)])
            out.append(token)
            state = self.step(state, token)
        return out
