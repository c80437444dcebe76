"""Synthetic long-dependency tasks, generated on device from PRNG keys.

Definitions follow Bai, Kolter & Koltun 2018 (locuslab/TCN) unless a variant says otherwise. Each
task is built from its options: `AddingProblem(AddingConfig(length=100))`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from seqbench.config import choice, require
from seqbench.tasks.base import (
    BASELINE_FRACTION,
    EVAL_SPLITS,
    SOLVED_ACCURACY,
    Batch,
    Direction,
    SuccessRule,
    SyntheticTaskConfig,
    Task,
    TaskSpec,
    length_split,
)


def split_key(eval_seed: int, split: str) -> jax.Array:
    """The PRNG key a synthetic task draws held-out split `split` from (distinct per split)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
    return jax.random.fold_in(jax.random.key(eval_seed), EVAL_SPLITS.index(split))


#: where the adding problem's two markers go (see AddingProblem)
ADDING_VARIANTS = ("tcn", "arjovsky")


class SyntheticTask(Task):
    """A task generated from PRNG keys: a fresh training batch every step, and held-out splits of
    `n_eval` examples each drawn from keys derived from `eval_seed` (see `split_key`).

    Its label is `<name> (T=<length>[, <variant>])`; its family the same without the length.
    """

    config: SyntheticTaskConfig

    @property
    def length(self) -> int:
        return self.config.length

    @property
    def n_eval(self) -> int:
        return self.config.n_eval

    @property
    def variant_note(self) -> str:
        """What sets this task apart from its default variant ("" for the default)."""
        return ""

    @property
    def family(self) -> str:
        note = self.variant_note
        return f"{self.name} ({note})" if note else self.name

    @property
    def label(self) -> str:
        note = f", {self.variant_note}" if self.variant_note else ""
        return f"{self.name} (T={self.length}{note})"

    def eval_set(self, split: str) -> Batch:
        return self.sample(split_key(self.config.eval_seed, split), self.n_eval)

    def at_length(self, length: int) -> SyntheticTask:
        """The same task at task.length=`length` (without evaluation lengths)."""
        return type(self)(self.config.at_length(length))

    def eval_sets(self) -> dict[str, Batch]:
        """ "val" and "test", then `test@L` for each of `config.eval_lengths`: the test examples
        drawn (from the test split's key) at length L."""
        sets = super().eval_sets()
        for length in self.config.eval_lengths:
            sets[length_split(length)] = self.at_length(length).eval_set("test")
        return sets

    def describe(self) -> dict:
        lengths = self.config.eval_lengths
        return {
            **super().describe(),
            "eval_lengths": list(lengths),
            # each test@L split's trivial score (it may depend on the length)
            "eval_baselines": {str(n): self.at_length(n).baseline() for n in lengths},
        }


@dataclass
class AddingConfig(SyntheticTaskConfig):
    """Options of the adding problem (`task=adding`)."""

    #: T, the steps of each sequence (at least 2: one per marker)
    length: int = 200
    #: where the two markers go: "tcn" (anywhere) or "arjovsky" (one in each half)
    variant: str = "tcn"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.length >= 2, "task.length", f"adding needs at least 2 steps, got {self.length}"
        )
        choice(self.variant, "task.variant", ADDING_VARIANTS)


class AddingProblem(SyntheticTask):
    """Sum the two marked values of a sequence.

    Inputs (B, T, 2) float: channel 0 is uniform on [0, 1); channel 1 is zero except for exactly two 1s.
    Targets (B, 1): the sum of the two channel-0 values under the markers, read from the last step.

    Variants (where the two markers go):
      "tcn": two distinct positions drawn uniformly from the whole sequence (Bai et al. 2018).
      "arjovsky": the first in [0, T/2), the second in [T/2, T) (Arjovsky, Shah & Bengio 2016).

    The trivial predictor (always 1) scores MSE = Var(U1 + U2) = 1/6.
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.
    """

    name = "adding"
    metric_directions: ClassVar[dict[str, Direction]] = {"mse": "min"}
    primary_metric = "mse"
    #: solved: test MSE under 10% of the trivial baseline's (the memory horizon's rule)
    success = SuccessRule("mse", below_baseline_fraction=BASELINE_FRACTION)
    config: AddingConfig

    def __init__(self, config: AddingConfig):
        super().__init__(config)
        self.variant = config.variant
        self.spec = TaskSpec("real", 2, 1, config.length, "last")

    @property
    def variant_note(self) -> str:
        return self.variant if self.variant != "tcn" else ""

    def marker_positions(self, key: jax.Array, batch_size: int) -> jax.Array:
        """(B, 2) int32 positions of the two markers."""
        k1, k2 = jax.random.split(key)
        T = self.length
        if self.variant == "tcn":
            first = jax.random.randint(k1, (batch_size,), 0, T)
            second = jax.random.randint(k2, (batch_size,), 0, T - 1)
            second = second + (second >= first)  # uniform over the T - 1 other positions
        else:
            half = T // 2
            first = jax.random.randint(k1, (batch_size,), 0, half)
            second = jax.random.randint(k2, (batch_size,), half, T)
        return jnp.stack([first, second], axis=1).astype(jnp.int32)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        value_key, marker_key = jax.random.split(key)
        values = jax.random.uniform(value_key, (batch_size, self.length))
        positions = self.marker_positions(marker_key, batch_size)
        markers = (
            jnp.zeros((batch_size, self.length))
            .at[jnp.arange(batch_size)[:, None], positions]
            .set(1.0)
        )
        targets = jnp.sum(values * markers, axis=1, keepdims=True)
        return Batch(jnp.stack([values, markers], axis=-1), targets)

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(self.metrics(outputs, batch)["mse"])

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        return {"mse": jnp.mean((outputs - batch.targets) ** 2, axis=-1)}

    def baseline(self) -> dict[str, float]:
        return {"mse": 1.0 / 6.0}


@dataclass
class CopyMemoryConfig(SyntheticTaskConfig):
    """Options of the copy-memory task (`task=copy_memory`)."""

    #: T, the blank between the digits and the recall signal
    length: int = 100
    #: n, the digits to memorize (10 in the paper)
    n_memorize: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_memorize > 0, "task.n_memorize", f"must be positive, got {self.n_memorize}")


class CopyMemory(SyntheticTask):
    """Recall a string of digits after a long blank (Bai et al. 2018, locuslab/TCN).

    With T = `length` (the blank) and n = `n_memorize` (10 in the paper), an input of T + 2n tokens:
    n digits drawn uniformly from 1..8, then T - 1 zeros, then n + 1 nines (the first nine is the
    delimiter that says "start recalling"). Targets: T + n zeros, then the n digits.
    Inputs (B, T + 2n) int32 tokens in [0, 10); targets (B, T + 2n) int32 classes in [0, 10).
    Loss: cross-entropy over all T + 2n positions and 10 classes.

    The memoryless predictor (zeros, then uniform over the 8 digits) scores n ln 8 / (T + 2n), and
    recalls a digit correctly 1/8 of the time.
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.
    """

    name = "copy_memory"
    metric_directions: ClassVar[dict[str, Direction]] = {
        "cross_entropy": "min",
        "recall_accuracy": "max",
    }
    primary_metric = "cross_entropy"
    #: what a reader of a figure asks of copy memory: how many digits come back
    figure_metric = "recall_accuracy"
    #: solved: at least 99% of the n digits recalled (the recall positions only)
    success = SuccessRule("recall_accuracy", at_least=SOLVED_ACCURACY)
    vocab_size = 10
    config: CopyMemoryConfig

    def __init__(self, config: CopyMemoryConfig):
        super().__init__(config)
        self.n_memorize = config.n_memorize
        self.total_length = config.length + 2 * config.n_memorize
        self.spec = TaskSpec(
            "tokens", self.vocab_size, self.vocab_size, self.total_length, "every_step"
        )

    @property
    def variant_note(self) -> str:
        return f"n={self.n_memorize}" if self.n_memorize != 10 else ""

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        n, T = self.n_memorize, self.length
        digits = jax.random.randint(key, (batch_size, n), 1, 9, dtype=jnp.int32)
        blank = jnp.zeros((batch_size, T - 1), jnp.int32)
        recall = jnp.full((batch_size, n + 1), 9, jnp.int32)
        inputs = jnp.concatenate([digits, blank, recall], axis=1)
        targets = jnp.concatenate([jnp.zeros((batch_size, T + n), jnp.int32), digits], axis=1)
        return Batch(inputs, targets)

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(self.metrics(outputs, batch)["cross_entropy"])

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets)
        n = self.n_memorize
        recalled = jnp.argmax(outputs[:, -n:], axis=-1) == batch.targets[:, -n:]
        return {
            "cross_entropy": jnp.mean(ce, axis=1),
            "recall_accuracy": jnp.mean(recalled, axis=1),
        }

    def baseline(self) -> dict[str, float]:
        return {
            "cross_entropy": self.n_memorize * math.log(8) / self.total_length,
            "recall_accuracy": 1.0 / 8.0,
        }
