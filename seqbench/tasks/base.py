"""The interface every seqbench task implements, synthetic or real.

A task owns its data, its loss and its metrics. Training batches are made inside the jitted training
step by `train_batch(data, key, step, batch_size)`, a pure function of the task's on-device training
data (`train_data()`, passed into the jitted program as an argument, never baked in as a constant),
a per-seed key and the step number: the data order is a function of (seed, step) alone, so a resumed
run sees the same batches. Synthetic tasks draw a fresh batch from `fold_in(key, step)`; data-set
tasks shuffle once per epoch (see `seqbench.tasks.dataset`). Two held-out evaluation sets, "val"
(for choosing the evaluation step and the configuration) and "test" (the number reported), are
drawn once from fixed keys (or read from disk) and kept on device.

Each task's options are a dataclass beside its code (a `TaskConfig`, checked once in
`__post_init__`), and the task is built from them: `AddingProblem(AddingConfig(length=100))`.
`seqbench.tasks.registry` names every task's Hydra schema and builds a task from its config.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import jax

from seqbench.config import ConfigError, check_seed, require

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


@dataclass
class TaskConfig:
    """The options of a task: each task subclasses it beside its code, with a comment per field and
    the value checks in `__post_init__` (raising `ConfigError` with `task.<field>` keys)."""


def length_split(length: int) -> str:
    """The held-out split of the test examples drawn at another length: `test@<length>`."""
    return f"test@{length}"


@dataclass
class SyntheticTaskConfig(TaskConfig):
    """A task generated from PRNG keys, `length` steps long (the length reports sweep)."""

    #: T, the swept sequence length (each task gives its default and says what T measures)
    length: int
    #: examples in each held-out split ("val" and "test")
    n_eval: int = 1000
    #: the seed the held-out splits are drawn from (one key per split)
    eval_seed: int = 12345
    #: length generalisation: each L adds a held-out split `test@L` of n_eval test examples drawn
    #: with task.length=L (metrics `test@L/<name>`); training and selection stay at `length`
    eval_lengths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(self.length > 0, "task.length", f"must be positive, got {self.length}")
        require(self.n_eval > 0, "task.n_eval", f"must be positive, got {self.n_eval}")
        check_seed(self.eval_seed, "task.eval_seed")
        lengths = list(self.eval_lengths)
        require(
            len(set(lengths)) == len(lengths),
            "task.eval_lengths",
            f"lists a length twice: {lengths}",
        )
        for length in lengths:
            try:  # each evaluation length must make a valid task of its own
                self.at_length(length)
            except ConfigError as error:
                raise ConfigError(
                    f"task.eval_lengths: {length} is not a valid length ({error})"
                ) from None

    def at_length(self, length: int) -> SyntheticTaskConfig:
        """The same options with task.length=`length` and no evaluation lengths."""
        return dataclasses.replace(self, length=length, eval_lengths=[])


#: the share of the trivial baseline below which a loss counts as solved (a loss ten times smaller
#: than the memoryless predictor's): the success rule of the regression tasks and the memory
#: horizon's default threshold (`seqbench.report.horizon`)
BASELINE_FRACTION = 0.1
#: the accuracy at or above which a seed solves a task scored by accuracy
SOLVED_ACCURACY = 0.99


@dataclass(frozen=True)
class SuccessRule:
    """When one seed solves its task, judged on its value of `metric` (a bare name; reports read
    the test value): below `below_baseline_fraction` × the metric's trivial baseline (a loss to
    minimise; the ratio value / baseline is compared, as the memory horizon does), or at least
    `at_least` (an accuracy). Exactly one of the two is set."""

    metric: str
    below_baseline_fraction: float | None = None
    at_least: float | None = None

    def __post_init__(self) -> None:
        if (self.below_baseline_fraction is None) == (self.at_least is None):
            raise ValueError("a success rule sets one of below_baseline_fraction and at_least")

    def solves(self, value: float | None, baseline: float | None = None) -> bool:
        """Whether a seed whose value of `metric` is `value` solves the task (False for a missing
        or non-finite value, or a baseline rule without a positive baseline)."""
        if value is None or not math.isfinite(value):
            return False
        if self.at_least is not None:
            return value >= self.at_least
        if baseline is None or not baseline > 0:
            return False
        return value / baseline < self.below_baseline_fraction

    def describe(self) -> str:
        """`mse < 0.1 × baseline`, `accuracy ≥ 0.99`."""
        if self.at_least is not None:
            return f"{self.metric} ≥ {self.at_least:g}"
        return f"{self.metric} < {self.below_baseline_fraction:g} × baseline"


class Task(abc.ABC):
    """A sequence task: data, loss, metrics and the trivial baseline to beat, built from its
    checked options (`config`, a `TaskConfig`)."""

    config: TaskConfig
    name: str
    spec: TaskSpec
    #: every metric the task reports, with the direction in which it improves
    metric_directions: dict[str, Direction]
    #: the metric that ranks runs and picks the best evaluation
    primary_metric: str
    #: the metric figures draw by default (None: the primary metric)
    figure_metric: str | None = None
    #: training examples of a fixed data set (None: generated afresh every step)
    n_train: int | None = None
    #: when one seed solves the task (the tables' "k/n solved"); None: no such threshold (the
    #: real data sets, whose scores have no natural "solved")
    success: ClassVar[SuccessRule | None] = None

    def __init__(self, config: TaskConfig):
        self.config = config

    @property
    def label(self) -> str:
        """How tables name the task, e.g. `adding (T=600)`."""
        return self.name

    @property
    @abc.abstractmethod
    def family(self) -> str:
        """The task without its swept sequence length, e.g. `adding (arjovsky)`, `copy_memory
        (n=5)`, `seq_mnist (pixel)`: what a report's rows or panels group by."""

    @property
    @abc.abstractmethod
    def length(self) -> int | None:
        """The swept sequence-length option (`task.length`), or None for a task without one (the
        data sets)."""

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
            "family": self.family,
            "length": self.length,
            "spec": self.spec.__dict__,
            "metrics": dict(self.metric_directions),
            "primary_metric": self.primary_metric,
            "figure_metric": self.figure_metric or self.primary_metric,
            "baseline": self.baseline(),
        }


class StatefulTask(Task):
    """A task trained by truncated backpropagation through time: the recurrent state carries from
    one training step to the next, and each held-out stream is read segment by segment with the
    state carried through (see `seqbench.train.program.make_train`).

    Training batches: inputs and targets (B, K); evaluation sets: (S, L) streams, L a multiple of
    `eval_segment`.
    """

    @abc.abstractmethod
    def starts_sequence(self, data: Any, step: jax.Array, batch_size: int) -> jax.Array:
        """bool (): the batch of `step` (int32 ()) starts its streams afresh, so the carried
        state is reset to zeros (pure, jittable; `data` is `train_data()` on device)."""

    @property
    @abc.abstractmethod
    def eval_segment(self) -> int:
        """Steps per evaluation segment: the held-out streams are read this many steps at a time,
        the state carried from one segment to the next."""
