"""Induction heads (Gu & Dao 2023, "Mamba", section 4.1; the phenomenon: Olsson et al. 2022, "In-context
Learning and Induction Heads"): after a trigger token appears again at the end of a random sequence,
name the token that followed its first occurrence.

Reference generator: HazyResearch/safari `src/dataloaders/synthetics.py`, `generate_induction_head`
with its defaults `induction_len=1`, `induction_num_triggers=1` (as `ICLDataModule` builds it), the
generator of the Mamba paper's task (vocabulary 16, trained at length 256). seqbench follows its
definition: `input_seq_len` = L tokens drawn uniformly from the data symbols, the token at a
position p drawn uniformly from [0, L - 2) replaced by the trigger (`copy_prefix`), the trigger
appended at the end; the answer is the token at p + 1. The vocabulary size counts the reference's two
special symbols (the trigger "=>" and the no-op "." that induction heads never emits): V - 2 data
symbols.

Where seqbench differs, and why:
  - ids: the reference numbers its tokens by sorting their strings ("." "0" "1" "10" ... "=>");
    seqbench gives the data symbols ids 0..V-3, the trigger V - 2 and the (unused) no-op V - 1, so a
    data symbol's class is its id. The model's embedding has V rows, as the reference's.
  - what is scored: the reference trains next-token prediction at every step (its training labels
    are not masked) and tests only the final answer. Every other label is an independent uniform
    token (the one after the first trigger too), which no model can predict better than chance, so
    seqbench trains and tests on the final answer alone: readout "last", V - 2 classes.
  - data: the reference draws fixed training and test sets (deduplicated within each) with NumPy;
    seqbench draws a fresh training batch every step on device (as the Mamba paper describes its
    training: "randomly generating data every step") and fixed held-out sets from `eval_seed`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.tasks.base import Batch, SyntheticTaskConfig, TaskSpec
from seqbench.tasks.choice import LabelAtEnd


@dataclass
class InductionHeadsConfig(SyntheticTaskConfig):
    """Options of induction heads (`task=induction_heads`)."""

    #: L, the random tokens before the final trigger (the reference's input_seq_len; input L + 1)
    length: int = 64
    #: V, the vocabulary including the trigger (id V - 2) and an unused no-op (id V - 1)
    vocab_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.length >= 3,
            "task.length",
            f"induction heads needs at least 3 steps (trigger, answer, one more), got {self.length}",
        )
        require(
            self.vocab_size >= 3,
            "task.vocab_size",
            f"must be at least 3 (trigger, no-op and one data symbol), got {self.vocab_size}",
        )


#: the defaults the label leaves out
_DEFAULT = InductionHeadsConfig()


class InductionHeads(LabelAtEnd):
    """Recall the token that followed the trigger, when the trigger comes again at the end.

    With L = `length` and V = `vocab_size` (safari's `generate_induction_head`, see the module
    docstring): L tokens drawn uniformly and independently from the V - 2 data symbols (ids
    0..V-3); the token at a position p drawn uniformly from [0, L - 2) becomes the trigger (id V - 2),
    which occurs nowhere else in those L steps; then the trigger again at step L. The answer is the
    token at step p + 1 (so p + 1 <= L - 2: the step before the final trigger is never the answer).
    Inputs (B, L + 1) int32 tokens in [0, V - 1) (id V - 1, the reference's no-op, never occurs).
    Targets (B,) int32 classes in [0, V - 2): the answer's id. Readout "last", V - 2 outputs.
    Metrics (per example): accuracy (argmax) and cross-entropy. Loss: the mean cross-entropy.

    The memoryless predictor (uniform over the V - 2 data symbols) scores accuracy 1/(V - 2) and
    cross-entropy ln(V - 2).
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.
    """

    name = "induction_heads"
    config: InductionHeadsConfig

    def __init__(self, config: InductionHeadsConfig):
        super().__init__(config)
        self.vocab_size = config.vocab_size
        self.n_choices = config.vocab_size - 2
        #: the trigger id (the reference's copy_prefix "=>")
        self.trigger = config.vocab_size - 2
        self.spec = TaskSpec("tokens", self.vocab_size, self.n_choices, config.length + 1, "last")

    @property
    def variant_note(self) -> str:
        return f"V={self.vocab_size}" if self.vocab_size != _DEFAULT.vocab_size else ""

    def trigger_positions(self, key: jax.Array, batch_size: int) -> jax.Array:
        """(B,) int32 position p of the first trigger, uniform on [0, L - 2)."""
        return jax.random.randint(key, (batch_size,), 0, self.length - 2, jnp.int32)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        token_key, position_key = jax.random.split(key)
        L = self.length
        tokens = jax.random.randint(token_key, (batch_size, L), 0, self.n_choices, jnp.int32)
        position = self.trigger_positions(position_key, batch_size)
        rows = jnp.arange(batch_size)
        answers = tokens[rows, position + 1]
        prefix = tokens.at[rows, position].set(self.trigger)
        final = jnp.full((batch_size, 1), self.trigger, jnp.int32)
        return Batch(jnp.concatenate([prefix, final], axis=1), answers)
