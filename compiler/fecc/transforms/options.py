"""Options of the teaming transformation search (seed 000); one frozen dataclass, validated.

The defaults are sized for the stage to take about a minute on two CPU cores for up to
10k compile rows with the ML decoder, and to stay under five minutes with the student
LLM (SmolLM2-135M) on the CPU; ``time_budget_s`` is the hard stop.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..option_values import options_from_mapping

DECODERS = ("ml", "student", "teaming")
TEACHERS = ("grammar", "proposer")


@dataclass(frozen=True)
class TransformOptions:
    """Every knob of :func:`fecc.transforms.search_transforms`.

    Attributes
    ----------
    seed : seed of every random choice (folds, teacher, networks, sampling).
    folds : K of the stratified folds made when the caller gives none.
    max_features : the vocabulary's features: the columns most related to the legacy
        residual, at most this many.
    constants : the vocabulary's constants.
    unary, binary : the vocabulary's operators (IR names); empty = every numeric one.
    max_len, max_stack, max_depth, max_programs : automaton caps (tokens per program,
        operand stack, tree depth, programs per sequence).
    teacher : ``"grammar"`` (random valid sequences, no model) or ``"proposer"`` (the
        configured :class:`~fecc.llm.base.Proposer`; falls back to grammar without one).
    golden : golden examples (sequences) the teacher writes and that are evaluated for real.
    teacher_calls : with the proposer teacher, at most this many proposals (an LLM answer
        takes seconds on a CPU); the other golden examples come from the grammar teacher.
    emb, hidden, latent, mlp : network sizes; epochs, batch, lr, alpha : joint training
        (``alpha`` weighs the evaluator's loss); refit_epochs : training after each round.
    rounds : search rounds (gradient search → decode → rank → evaluate → retrain).
    starts : best sequences whose embeddings start the gradient search; grad_steps,
        step_size : its steps; temperature : sampling temperature of the decoder.
    decoder : ``"ml"`` (the LSTM decoder), ``"student"`` (the LoRA student alone) or
        ``"teaming"`` (product of experts with weight ``lam`` on the ML expert).
    lam : λ of the product of experts, ``p ∝ p_ML^λ · p_LLM^(1−λ)``.
    student_model : packaged GGUF model of the student (a key of ``fecc.llm.local.MODELS``
        or a path); student_steps, student_batch, student_lr, lora_r : its LoRA training;
    student_rank : use the student's predicted score in the ranking (when it exists).
    llm_decodes : sequences decoded per round when the student decodes (it is slow on a CPU).
    eval_top : candidates evaluated for real per round (the rest are ranked out);
        audit : random ranked-out candidates evaluated anyway, to measure Kendall's τ.
    max_transforms : at most this many transforms are chosen.
    min_gain : a transform must raise the OOF metric by at least this much over legacy
        plus the ones chosen before it (AUC points; for regression a fraction of the
        legacy RMSE).
    min_z : ... with a paired z of the OOF loss reduction at least this large,
    min_folds_positive : ... and a positive gain on at least this many folds.
    pool : best single candidates the greedy selection considers.
    ridge : L2 penalty of the evaluation's correction.
    probe_invalid : sequences decoded *without* the automaton at the end, to report how
        often each decoder alone would have been invalid (0: skip).
    device : ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when torch sees a GPU).
    threads : torch CPU threads for the networks and the student (0: one; on a busy
        2-core machine torch's thread pool waits more than it computes).
    time_budget_s : wall-clock cap; past it the search stops starting rounds.
    """

    seed: int = 0
    folds: int = 5
    max_features: int = 24
    constants: tuple[float, ...] = (0.5, 1.0, 2.0)
    unary: tuple[str, ...] = ()
    binary: tuple[str, ...] = ()
    max_len: int = 7
    max_stack: int = 3
    max_depth: int = 4
    max_programs: int = 2
    teacher: str = "grammar"
    golden: int = 200
    teacher_calls: int = 16
    emb: int = 32
    hidden: int = 64
    latent: int = 32
    mlp: int = 64
    epochs: int = 40
    refit_epochs: int = 10
    batch: int = 32
    lr: float = 3e-3
    alpha: float = 1.0
    rounds: int = 3
    starts: int = 16
    grad_steps: int = 6
    step_size: float = 0.3
    temperature: float = 0.8
    decoder: str = "ml"
    lam: float = 0.5
    student_model: str = "smollm2"
    student_steps: int = 30
    student_batch: int = 8
    student_lr: float = 2e-3
    lora_r: int = 8
    student_rank: bool = True
    llm_decodes: int = 24
    eval_top: int = 40
    audit: int = 8
    max_transforms: int = 3
    min_gain: float = 0.0005
    min_z: float = 2.5
    min_folds_positive: int = 4
    pool: int = 24
    ridge: float = 2.0
    probe_invalid: int = 64
    device: str = "cpu"
    threads: int = 0
    time_budget_s: float = 300.0

    def __post_init__(self):
        positive = ("folds", "teacher_calls", "max_features", "max_len", "max_stack", "max_depth", "max_programs", "golden", "emb",
                    "hidden", "latent", "mlp", "epochs", "batch", "starts", "grad_steps", "student_batch",
                    "lora_r", "llm_decodes", "eval_top", "pool")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("rounds", "refit_epochs", "student_steps", "audit", "max_transforms", "probe_invalid",
                     "threads", "min_folds_positive"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.min_folds_positive > self.folds:
            raise ValueError(f"min_folds_positive ({self.min_folds_positive}) exceeds folds ({self.folds})")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam!r}")
        for name in ("lr", "student_lr", "step_size", "temperature", "time_budget_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("alpha", "min_gain", "ridge"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        object.__setattr__(self, "constants", tuple(float(c) for c in self.constants))
        object.__setattr__(self, "unary", tuple(self.unary))
        object.__setattr__(self, "binary", tuple(self.binary))

    @property
    def uses_student(self) -> bool:
        return self.decoder in ("student", "teaming")

    @property
    def effective_lambda(self) -> float:
        """λ actually used: 1 for the ML decoder alone, 0 for the student alone."""
        return {"ml": 1.0, "student": 0.0}.get(self.decoder, self.lam)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "TransformOptions":
        """From a mapping (e.g. ``--transform-option k=v``); unknown keys raise ``ValueError``
        (see :func:`fecc.option_values.options_from_mapping`)."""
        return options_from_mapping(cls, values, kind="transform option")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
