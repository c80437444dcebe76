"""Multi-query associative recall (MQAR; Arora, Eyuboglu et al. 2023, "Zoology: Measuring and
improving recall in efficient language models"), generated on device from PRNG keys.

Reference generator: HazyResearch/zoology `zoology/data/multiquery_ar.py` (`multiquery_ar`, NumPy
and PyTorch); the paper's Figure 2 settings are in its
`zoology/experiments/paper_configs/iclr24_zoology_figure2/configs.py`. Written afresh in JAX:
`MultiQueryAssociativeRecall` says where and why seqbench differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.tasks.base import Batch, SyntheticTaskConfig, TaskSpec
from seqbench.tasks.choice import UNSCORED, LabelsAtSteps


@dataclass
class MQARConfig(SyntheticTaskConfig):
    """Options of multi-query associative recall (`task=mqar`)."""

    #: T, the tokens of each sequence (the key-value pairs, then the queries among filler)
    length: int = 64
    #: N, the key-value pairs of each sequence, each queried once (length >= 4 N)
    num_kv_pairs: int = 4
    #: V, the vocabulary: keys from [1, V // 2), values from [V // 2, V) (V >= 2 N + 2)
    vocab_size: int = 64
    #: a, the power law of the query placement: gap g in [0, (T - 2N) // 2) has weight
    #: (g + 1) ** (a - 1) (1.0: uniform; zoology's 0.01 puts the queries mostly early)
    power_a: float = 0.01
    #: true: the positions between queries hold random tokens (never a key of the example);
    #: false: they hold token 0
    random_non_queries: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.num_kv_pairs
        require(n >= 1, "task.num_kv_pairs", f"must be positive, got {n}")
        require(
            self.length >= 4 * n,
            "task.length",
            f"must be at least 4 * task.num_kv_pairs = {4 * n} (2 N tokens of pairs, then N "
            f"queries at distinct even offsets), got {self.length}",
        )
        require(
            self.vocab_size >= 2 * n + 2,
            "task.vocab_size",
            f"must be at least 2 * task.num_kv_pairs + 2 = {2 * n + 2} (N distinct keys in "
            f"[1, V // 2), N distinct values in [V // 2, V)), got {self.vocab_size}",
        )
        require(
            math.isfinite(self.power_a) and self.power_a > 0,
            "task.power_a",
            f"must be positive and finite, got {self.power_a}",
        )


class MultiQueryAssociativeRecall(LabelsAtSteps):
    """Recall the value bound to each queried key (zoology's `multiquery_ar`, num_passes=1).

    With T = `length`, N = `num_kv_pairs` and V = `vocab_size`: N distinct keys drawn uniformly
    from [1, V // 2) and N distinct values from [V // 2, V) (disjoint halves, 0 never a key or
    value) open the sequence as the pairs k_1 v_1 ... k_N v_N (positions 0..2N - 1). The other
    T - 2N positions hold the N queries, every key once: key k_j sits at position 2N + 2 g_j,
    where the gaps g_1..g_N are drawn without replacement from [0, S), S = (T - 2N) // 2, with
    weights proportional to (g + 1) ** (a - 1), a = `power_a` (Gumbel top-k: the distribution of
    NumPy's `choice(replace=False, p=...)` that the reference calls). Every other position holds
    filler: token 0, or, with `random_non_queries`, a token drawn uniformly from the V - N tokens
    that are not keys of the example (0 and the values included).
    Targets: v_j at the position of the query of k_j (the model answers as it reads the key, an
    every_step readout), -1 (unscored) at every other position.
    Inputs (B, T) int32 tokens in [0, V); targets (B, T) int32 in [0, V) or -1; output_dim V.
    Metrics (per example, over its N scored positions): accuracy (argmax) and cross-entropy; every
    example has N of them, so examples weigh equally. Loss: the batch's mean cross-entropy.

    The memoryless predictor (uniform over the V - V // 2 values: the value of a query is
    independent of everything a predictor without memory sees) scores accuracy 1 / (V - V // 2)
    and cross-entropy ln(V - V // 2).
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.

    Where seqbench differs from the reference:
      - The reference's filler (`random_non_queries=True`) is drawn from the whole vocabulary,
        so it can repeat a key of the example (the filler problem cited as zoology issue 29):
        that key then occurs a third time, followed by a random token, and reads as a second,
        conflicting binding. Here the
        filler is never a key of the example: each key occurs exactly twice, in its pair and in
        its query, and every value is recovered from the key's first occurrence.
      - The reference asserts T even and V > T. Neither is needed by the construction, so an odd
        T is accepted (S rounds down: its last two positions are filler) and V need only hold N
        keys and N values (V >= 2N + 2); T >= 4N is the reference's own condition (S >= N).
      - Unscored targets are -1 (the reference: -100, PyTorch's ignore_index); the scored
        positions are the same (the reference shifts its labels by one for next-token loss).
      - A fresh batch every training step, not a fixed set of `num_examples` sequences.
      - No `num_passes` (the JRT repetition of the pairs): one pass, as in the Zoology paper.
    """

    name = "mqar"
    config: MQARConfig

    def __init__(self, config: MQARConfig):
        super().__init__(config)
        self.num_kv_pairs = config.num_kv_pairs
        self.vocab_size = config.vocab_size
        self.power_a = config.power_a
        self.random_non_queries = config.random_non_queries
        #: S, the even offsets after the pairs where a query can go
        self.n_gaps = (config.length - 2 * config.num_kv_pairs) // 2
        self.spec = TaskSpec(
            "tokens", config.vocab_size, config.vocab_size, config.length, "every_step"
        )

    @property
    def n_values(self) -> int:
        """|values| = V - V // 2, the tokens a value is drawn from."""
        return self.vocab_size - self.vocab_size // 2

    @property
    def n_choices(self) -> int:
        """The values: what the memoryless predictor guesses among."""
        return self.n_values

    @property
    def variant_note(self) -> str:
        defaults = MQARConfig()
        notes = []
        if self.num_kv_pairs != defaults.num_kv_pairs:
            notes.append(f"{self.num_kv_pairs} pairs")
        if self.vocab_size != defaults.vocab_size:
            notes.append(f"V={self.vocab_size}")
        if self.power_a != defaults.power_a:
            notes.append(f"a={self.power_a:g}")
        if self.random_non_queries != defaults.random_non_queries:
            notes.append("zero filler")
        return ", ".join(notes)

    def _distinct(self, key: jax.Array, batch_size: int, n_tokens: int) -> jax.Array:
        """(B, N) int32: per row, N distinct integers drawn uniformly from [0, n_tokens): the
        indices of the N largest of n_tokens random 31-bit scores (a tie, at odds below
        n_tokens ** 2 / 2 ** 32, goes to the lower index)."""
        scores = jax.random.bits(key, (batch_size, n_tokens), jnp.uint32) >> 1
        return jax.lax.top_k(scores.astype(jnp.int32), self.num_kv_pairs)[1].astype(jnp.int32)

    def query_gaps(self, key: jax.Array, batch_size: int) -> jax.Array:
        """(B, N) int32: per row, N distinct gaps in [0, S), drawn without replacement with
        weights (g + 1) ** (power_a - 1) (Gumbel top-k); the j-th query goes to 2N + 2 g_j."""
        log_weights = (self.power_a - 1.0) * jnp.log(
            jnp.arange(1, self.n_gaps + 1, dtype=jnp.float32)
        )
        scores = jax.random.gumbel(key, (batch_size, self.n_gaps)) + log_weights
        return jax.lax.top_k(scores, self.num_kv_pairs)[1].astype(jnp.int32)

    def filler(self, key: jax.Array, keys: jax.Array) -> jax.Array:
        """(B, T) int32 tokens drawn uniformly from the V - N tokens that are not among each
        row's `keys` (B, N): draw r in [0, V - N) and take the r-th such token, r plus the
        number of sorted keys s_i (i = 0..N-1) with s_i - i <= r."""
        n = self.num_kv_pairs
        batch_size = keys.shape[0]
        r = jax.random.randint(
            key, (batch_size, self.length), 0, self.vocab_size - n, dtype=jnp.int32
        )
        below = jnp.sort(keys, axis=1) - jnp.arange(n, dtype=jnp.int32)  # non-keys below s_i
        skipped = jnp.sum(below[:, None, :] <= r[:, :, None], axis=-1, dtype=jnp.int32)
        return r + skipped

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        n, half = self.num_kv_pairs, self.vocab_size // 2
        key_key, value_key, gap_key, filler_key = jax.random.split(key, 4)
        keys = 1 + self._distinct(key_key, batch_size, half - 1)
        values = half + self._distinct(value_key, batch_size, self.n_values)
        pairs = jnp.stack([keys, values], axis=2).reshape(batch_size, 2 * n)
        if self.random_non_queries:
            inputs = self.filler(filler_key, keys)
        else:
            inputs = jnp.zeros((batch_size, self.length), jnp.int32)
        inputs = inputs.at[:, : 2 * n].set(pairs)
        positions = 2 * n + 2 * self.query_gaps(gap_key, batch_size)
        rows = jnp.arange(batch_size)[:, None]
        inputs = inputs.at[rows, positions].set(keys)
        targets = jnp.full((batch_size, self.length), UNSCORED, jnp.int32)
        targets = targets.at[rows, positions].set(values)
        return Batch(inputs, targets)
