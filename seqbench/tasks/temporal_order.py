"""The temporal order problem (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Neural
Computation 9(8), section 5.6, experiments 6a and 6b).

There is no reference code: the definition is the paper's text (quoted in /work/shared/REFERENCE.md,
section 1 and its published anchors). A sequence of T symbols from {a, b, c, d, X, Y, B, E} starts
with E, ends with the trigger B and is otherwise random distractors from {a, b, c, d}, except for
two (6a) or three (6b) relevant symbols, each X or Y, at random positions inside fixed windows. The
class is the order of the relevant symbols (6a: XX, XY, YX, YY; 6b: XXX ... YYY), read out after B.

Where seqbench differs from the paper, and why:
  - Loss and success criterion: the paper trains 4 (or 8) sigmoid output units by squared error and
    counts a sequence right when every unit's absolute error is below 0.3; seqbench trains a softmax
    over the classes by cross-entropy and reports argmax accuracy (the benchmark's common metric).
    The paper's 0.3 criterion is not reproduced.
  - Length: the paper fixes T in [100, 110]. Here `length` is the shortest T; each T is uniform on
    [length, length + length // 10] and each window [lo, hi] of the paper (positions at T=100)
    becomes [lo * length // 100, hi * length // 100], so `eval_lengths` test longer sequences with
    the same relative layout. At length=100 this is exactly the paper's layout.
  - Positions are counted from 1 as in the paper (E is position 1, B position T): a relevant symbol
    at position t is at index t - 1 of the input array.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from seqbench.config import choice, require
from seqbench.tasks.base import Batch, SyntheticTaskConfig, TaskSpec
from seqbench.tasks.choice import LabelAtEnd

#: the input symbols, in token order (token id = index)
SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
#: the distractors a, b, c, d are the tokens [0, DISTRACTORS)
DISTRACTORS = 4
#: token ids of X (Y is X_TOKEN + 1), of the trigger B and of the start symbol E
X_TOKEN, B_TOKEN, E_TOKEN = 4, 6, 7
#: each variant's windows of the relevant symbols, as 1-based positions at T = 100 (the paper's)
WINDOWS: dict[str, tuple[tuple[int, int], ...]] = {
    "6a": ((10, 20), (50, 60)),
    "6b": ((10, 20), (33, 43), (66, 76)),
}
#: the shortest `length` whose scaled windows stay apart and leave position 1 to E
MIN_LENGTH = 20


def scaled_windows(variant: str, length: int) -> tuple[tuple[int, int], ...]:
    """The 1-based position windows [lo, hi] of the relevant symbols at shortest length `length`:
    the paper's windows scaled by length / 100 (rounded down); the paper's own at length=100."""
    return tuple((lo * length // 100, hi * length // 100) for lo, hi in WINDOWS[variant])


@dataclass
class TemporalOrderConfig(SyntheticTaskConfig):
    """Options of the temporal order problem (`task=temporal_order`)."""

    #: the shortest sequence length (100 in the paper); each T is uniform on
    #: [length, length + length // 10] and the symbol windows scale with length / 100
    length: int = 100
    #: "6a" (two relevant symbols, 4 classes) or "6b" (three, 8 classes)
    variant: str = "6a"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.length >= MIN_LENGTH,
            "task.length",
            f"temporal_order needs at least {MIN_LENGTH} steps, got {self.length}",
        )
        choice(self.variant, "task.variant", tuple(WINDOWS))


class TemporalOrder(LabelAtEnd):
    """Classify the order of two or three widely separated X/Y symbols (Hochreiter & Schmidhuber
    1997, experiments 6a and 6b; definition and deviations in the module docstring).

    With L = `length`, each sequence's T is uniform on [L, L + L // 10]: E at position 1, B at
    position T, the relevant symbols (X or Y, uniformly) at positions drawn uniformly from the
    windows of `scaled_windows` (6a at L=100: [10, 20] and [50, 60]; 6b: [10, 20], [33, 43],
    [66, 76]), every other position a distractor uniform on {a, b, c, d}.
    Inputs (B, L + L // 10) int32 tokens in [0, 8) (a b c d X Y B E), padded with 0 after T;
    seq_lengths (B,) int32 the T of each sequence. Targets (B,) int32 classes in [0, 2^k) for k
    relevant symbols, the binary number they spell (X = 0, Y = 1, first symbol most significant:
    6a XX=0, XY=1, YX=2, YY=3), scored at the last valid step (readout "last").
    Metrics per example: "accuracy" (argmax right) and "cross_entropy" (softmax over the classes).

    The memoryless predictor (the class prior, uniform: the classes are equally likely) scores
    accuracy 1 / 2^k and cross-entropy ln 2^k (6a: 1/4 and ln 4; 6b: 1/8 and ln 8).
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.
    """

    name = "temporal_order"
    vocab_size = len(SYMBOLS)
    config: TemporalOrderConfig

    def __init__(self, config: TemporalOrderConfig):
        super().__init__(config)
        self.variant = config.variant
        self.windows = scaled_windows(config.variant, config.length)
        self.n_relevant = len(self.windows)
        self.n_choices = 2**self.n_relevant
        self.max_length = config.length + config.length // 10
        self.spec = TaskSpec("tokens", self.vocab_size, self.n_choices, self.max_length, "last")

    @property
    def variant_note(self) -> str:
        return self.variant if self.variant != "6a" else ""

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        length_key, distractor_key, position_key, symbol_key = jax.random.split(key, 4)
        L, T = self.config.length, self.max_length
        lengths = jax.random.randint(length_key, (batch_size,), L, T + 1, dtype=jnp.int32)
        tokens = jax.random.randint(distractor_key, (batch_size, T), 0, DISTRACTORS, jnp.int32)
        index = jnp.arange(T)[None, :]
        tokens = jnp.where(index == 0, E_TOKEN, tokens)
        tokens = jnp.where(index == lengths[:, None] - 1, B_TOKEN, tokens)
        tokens = jnp.where(index >= lengths[:, None], 0, tokens)
        bits = jax.random.randint(symbol_key, (batch_size, self.n_relevant), 0, 2, jnp.int32)
        rows = jnp.arange(batch_size)
        for k, ((lo, hi), k_key) in enumerate(
            zip(self.windows, jax.random.split(position_key, self.n_relevant), strict=True)
        ):
            position = jax.random.randint(k_key, (batch_size,), lo, hi + 1)  # 1-based
            tokens = tokens.at[rows, position - 1].set(X_TOKEN + bits[:, k])
        weights = 2 ** jnp.arange(self.n_relevant - 1, -1, -1, dtype=jnp.int32)
        targets = jnp.sum(bits * weights, axis=1).astype(jnp.int32)
        return Batch(tokens, targets, lengths)
