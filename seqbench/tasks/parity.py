"""Parity of a bit string, with length generalisation (Delétang et al. 2023, "Neural Networks and
the Chomsky Hierarchy"; reference google-deepmind/neural_networks_chomsky_hierarchy
`tasks/regular/parity_check.py`; the xLSTM setting NX-AI/xlstm `experiments/parity_xlstm01.yaml`
with its generator `experiments/data/formal_language/tasks/parity.py`).

The reference draws each bit uniformly from {0, 1} and labels the string with the number of 1s
modulo 2 (class 0 even, class 1 odd). Seqbench follows that definition; where it differs:
  - Lengths: the reference draws one length per batch (Delétang: uniform on 1..40 for training,
    41..500 for testing); seqbench draws one per example, uniform on [min_length, length], pads the
    batch to `length` and sets `Batch.seq_lengths` (xLSTM's form: 3..40 for training).
  - Inputs are int32 tokens (the reference one-hots them; the model embeds tokens itself).
  - Evaluation lengths: each `test@L` split holds strings of exactly L bits (`at_length` sets
    min_length = length = L); xLSTM instead tests on lengths uniform on 40..256.
  - xLSTM's generator writes tokens {1, 2} (0 is its padding and answer slot), counts the 2s and
    counts the answer slot in its sequence length, so its lengths 3..40 hold 2..39 bits; seqbench's
    `length` counts bits only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.tasks.base import Batch, SyntheticTaskConfig, TaskSpec
from seqbench.tasks.choice import LabelAtEnd


@dataclass
class ParityConfig(SyntheticTaskConfig):
    """Options of the parity task (`task=parity`)."""

    #: the longest training string, in bits (40 in Delétang et al. and xLSTM)
    length: int = 40
    #: the shortest training string, in bits (each string's length is uniform on
    #: [min_length, length]; the test@L splits use exactly L bits)
    min_length: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.min_length > 0, "task.min_length", f"must be positive, got {self.min_length}")
        require(
            self.min_length <= self.length,
            "task.min_length",
            f"must be at most task.length={self.length}, got {self.min_length}",
        )

    def at_length(self, length: int) -> ParityConfig:
        """The same options with strings of exactly `length` bits (min_length = length = `length`)
        and no evaluation lengths: what each `test@L` split is drawn from."""
        return dataclasses.replace(self, length=length, min_length=length, eval_lengths=[])


class Parity(LabelAtEnd):
    """Is the number of 1s in a bit string odd? (Delétang et al. 2023; definition, reference and
    deviations in the module docstring.)

    With L = `length` and m = `min_length`, each string's length n is uniform on [m, L] and its bits
    uniform on {0, 1}. Inputs (B, L) int32 tokens in {0, 1}, padded with 0 after n; seq_lengths
    (B,) int32 the n of each string. Targets (B,) int32: the number of 1s among the n bits, mod 2,
    scored at the last valid step (readout "last").
    Metrics per example: "accuracy" (argmax right) and "cross_entropy" (softmax over 2 classes).

    The memoryless predictor (the class prior: both classes equally likely at every length) scores
    accuracy 1/2 and cross-entropy ln 2.
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`;
    each of `eval_lengths` adds `test@L`, n_eval strings of exactly L bits.
    """

    name = "parity"
    vocab_size = 2
    n_choices = 2
    config: ParityConfig

    def __init__(self, config: ParityConfig):
        super().__init__(config)
        self.min_length = config.min_length
        self.spec = TaskSpec("tokens", self.vocab_size, self.n_choices, config.length, "last")

    @property
    def variant_note(self) -> str:
        return f"min {self.min_length}" if self.min_length != 3 else ""

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        length_key, bit_key = jax.random.split(key)
        L = self.config.length
        lengths = jax.random.randint(
            length_key, (batch_size,), self.min_length, L + 1, dtype=jnp.int32
        )
        bits = jax.random.randint(bit_key, (batch_size, L), 0, 2, dtype=jnp.int32)
        bits = jnp.where(jnp.arange(L)[None, :] < lengths[:, None], bits, 0)
        targets = (jnp.sum(bits, axis=1) % 2).astype(jnp.int32)
        return Batch(bits, targets, lengths)
