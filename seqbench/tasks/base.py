"""The interface every seqbench task implements, synthetic or real.

A task owns its data, its loss and its metrics. Training batches are made inside the jitted training
step by `train_batch(data, key, step, batch_size)`, a pure function of the task's on-device training
data (`train_data()`, passed into the jitted program as an argument, never baked in as a constant),
a per-seed key and the step number: the data order is a function of (seed, step) alone, so a resumed
run sees the same batches. Synthetic tasks draw a fresh batch from `fold_in(key, step)`; data-set
tasks shuffle once per epoch (see `seqbench.tasks.dataset`). Two held-out evaluation sets, "val"
(for choosing the evaluation step and the configuration) and "test" (the number reported), are
drawn once from fixed keys (or read from disk) and kept on device.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax

Direction = Literal["min", "max"]
#: the held-out splits every task provides: selection happens on "val", reporting on "test"
EVAL_SPLITS = ("val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """What a model must accept and produce for a task.

    input_kind: "real" (inputs are float (B, T, input_dim)) or "tokens" (int (B, T) in [0, input_dim)).
    input_dim: feature count for real inputs, vocabulary size for tokens.
    output_dim: width of the model's readout.
    seq_len: T, the (maximum) sequence length.
    readout: "last" (one prediction per sequence) or "every_step" (one per time step).
    """

    input_kind: Literal["real", "tokens"]
    input_dim: int
    output_dim: int
    seq_len: int
    readout: Literal["last", "every_step"]


class Batch(NamedTuple):
    """A batch of examples (a pytree, so it can cross `jit`, `vmap` and `lax.scan`).

    inputs: (B, T, F) float or (B, T) int.
    targets: task-specific, leading axis B.
    seq_lengths: (B,) int32 valid lengths, or None when every sequence has length T.
    """

    inputs: jax.Array
    targets: jax.Array
    seq_lengths: jax.Array | None = None


class Task(abc.ABC):
    """A sequence task: data, loss, metrics and the trivial baseline to beat."""

    name: str
    spec: TaskSpec
    #: every metric the task reports, with the direction in which it improves
    metric_directions: dict[str, Direction]
    #: the metric that ranks runs and picks the best evaluation
    primary_metric: str
    #: training examples of a fixed data set (None: generated afresh every step)
    n_train: int | None = None
    #: trained by truncated backpropagation through time: the recurrent state carries from one
    #: step to the next (such tasks also define `starts_sequence` and `eval_segment`)
    stateful: bool = False

    @property
    def label(self) -> str:
        """How tables name the task, e.g. `adding (T=600)`."""
        return self.name

    @abc.abstractmethod
    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """Draw a batch of `batch_size` examples from `key` (pure, jittable)."""

    def train_data(self) -> Any:
        """The training data as a pytree of arrays (None for generated tasks); the trainer puts it
        on the device once and passes it to every jitted chunk."""
        return None

    def train_batch(self, data: Any, key: jax.Array, step: jax.Array, batch_size: int) -> Batch:
        """The training batch of `step` (int32 ()) for the seed whose data key is `key` (pure,
        jittable). `data` is what `train_data()` returned, on device. Default: a fresh sample."""
        del data
        return self.sample(jax.random.fold_in(key, step), batch_size)

    def example_weights(self, batch: Batch) -> jax.Array | None:
        """(B,) weight of each example in the evaluation means (e.g. its number of scored time
        steps, so that a per-step metric is averaged over steps, not sequences); None: equal."""
        del batch
        return None

    @abc.abstractmethod
    def eval_set(self, split: str) -> Batch:
        """The fixed held-out set of `split` ("val" or "test"); the same on every call."""

    def eval_sets(self) -> dict[str, Batch]:
        """Every held-out split, keyed as in `EVAL_SPLITS`."""
        return {split: self.eval_set(split) for split in EVAL_SPLITS}

    @abc.abstractmethod
    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Scalar training loss of model `outputs` on `batch`."""

    @abc.abstractmethod
    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """Per-example metric values, each of shape (B,), keyed as in `metric_directions`."""

    @abc.abstractmethod
    def baseline(self) -> dict[str, float]:
        """The score of the trivial (memoryless or constant) predictor for each metric."""

    def describe(self) -> dict:
        """A JSON-ready summary for run records."""
        return {
            "name": self.name,
            "label": self.label,
            "spec": self.spec.__dict__,
            "metrics": dict(self.metric_directions),
            "primary_metric": self.primary_metric,
            "baseline": self.baseline(),
        }
