"""Tasks over fixed data sets: the arrays live on the device and batches are gathered inside the jitted
training step, with one reshuffle per epoch drawn from the seed.

A data-set task holds three `ArraySplit`s, "train", "val" and "test", as host NumPy arrays; the trainer
puts the training split on the device once (`train_data`) and passes it into every jitted chunk, so no
training step touches the host. Step s of a seed with data key k uses epoch e = s // E (E = steps per
epoch = N // B, the last partial batch of an epoch dropped) and takes batch s mod E of the permutation
drawn from fold_in(k, e).

Every data-set task reads its data the same way (`DatasetTask.__init__`, the template): its config
says where from, `source` "offline" (the copy shipped inside a PyPI package, `load_offline`) or
"files" (the standard files under `data_dir`, `load_files`); `prepare` turns what was loaded into
the splits. A task without an offline copy lists only "files" in its config's `sources`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqbench.config import PathsConfig, check_seed, choice
from seqbench.tasks.base import EVAL_SPLITS, Batch, Task, TaskConfig
from seqbench.tasks.formats.files import DataError

#: where a data set can come from: the copy shipped in a package, or the standard files
SOURCES = ("offline", "files")


@dataclass
class DatasetTaskConfig(TaskConfig):
    """Options every real data set shares."""

    #: "offline": the copy shipped in a PyPI package (seqbench[data]; see the task), "files": the
    #: standard files under data_dir
    source: str = "offline"
    #: the folder the "files" source reads (each task its own sub-folder); YAML: paths.data_dir
    data_dir: str = PathsConfig.data_dir
    #: the folder preprocessed arrays are cached in (tasks that cache); YAML: paths.cache_dir
    cache_dir: str = PathsConfig.cache_dir
    #: fixes how validation (and, where the source has none, test) examples are held out
    split_seed: int = 0
    #: the sources this data set has (a task without an offline copy lists only "files")
    sources: ClassVar[tuple[str, ...]] = SOURCES

    def __post_init__(self) -> None:
        choice(self.source, "task.source", self.sources)
        check_seed(self.split_seed, "task.split_seed")


@dataclass(frozen=True)
class ArraySplit:
    """One split of a data set, as host NumPy arrays.

    inputs: (N, T, F) float32 or (N, T) int32 tokens, padded to a common T.
    targets: (N, ...) task-specific.
    lengths: (N,) int32 valid lengths, or None when every example has length T.
    """

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.inputs)
        if len(self.targets) != n or (self.lengths is not None and len(self.lengths) != n):
            raise ValueError("inputs, targets and lengths must have one entry per example")

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, index: np.ndarray) -> ArraySplit:
        lengths = None if self.lengths is None else self.lengths[index]
        return ArraySplit(self.inputs[index], self.targets[index], lengths)

    def batch(self) -> Batch:
        lengths = None if self.lengths is None else self.lengths.astype(np.int32)
        return Batch(self.inputs, self.targets, lengths)


def hold_out(split: ArraySplit, n_held: int, seed: int) -> tuple[ArraySplit, ArraySplit]:
    """(rest, held): `n_held` examples drawn without replacement by a NumPy generator seeded with
    `seed`; both keep the original order of their examples."""
    if not 0 < n_held < len(split):
        raise ValueError(f"cannot hold out {n_held} of {len(split)} examples")
    chosen = np.zeros(len(split), bool)
    chosen[np.random.default_rng(seed).permutation(len(split))[:n_held]] = True
    return split.take(np.flatnonzero(~chosen)), split.take(np.flatnonzero(chosen))


def pad_sequences(
    sequences: list[np.ndarray], length: int | None = None, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length (T_i, ...) arrays into (N, T, ...) zero-padded at the end, with (N,)
    int32 lengths; T = `length` or the longest sequence (longer ones are refused)."""
    lengths = np.array([len(s) for s in sequences], np.int32)
    total = int(lengths.max()) if length is None else length
    if lengths.max() > total:
        raise ValueError(f"a sequence of length {lengths.max()} exceeds {total}")
    shape = (len(sequences), total, *np.asarray(sequences[0]).shape[1:])
    out = np.zeros(shape, dtype)
    for i, sequence in enumerate(sequences):
        out[i, : len(sequence)] = sequence
    return out, lengths


class DatasetTask(Task):
    """Base of the real-data tasks: fixed splits on device, per-epoch shuffling from the seed.

    Subclasses implement `load_files` (and `load_offline` where the data set ships in a package)
    and `prepare` (the loaded data -> {"train", "val", "test"}: ArraySplit), set `spec` and the
    metric attributes, and implement `loss`, `metrics` and `baseline`. Their label is their family:
    a data set has no swept length.
    """

    config: DatasetTaskConfig
    splits: dict[str, ArraySplit]

    def __init__(self, config: DatasetTaskConfig):
        super().__init__(config)
        if config.source == "offline":
            loaded = self.load_offline(config)
        else:
            loaded = self.load_files(Path(config.data_dir).expanduser(), config)
        self.splits = self.prepare(loaded)

    def load_offline(self, config: DatasetTaskConfig) -> Any:
        """The data set's copy shipped in a package (source "offline"), in the form `prepare`
        takes. Only for tasks whose config lists "offline" among its `sources`."""
        raise DataError(f"{type(self).__name__}: no offline copy (task.source=files)")

    @abc.abstractmethod
    def load_files(self, data_dir: Path, config: DatasetTaskConfig) -> Any:
        """The data set's standard files under `data_dir` (source "files", `~` expanded), in the
        form `prepare` takes; DataError naming the expected files when they are missing."""

    def prepare(self, loaded: Any) -> dict[str, ArraySplit]:
        """The splits {"train", "val", "test"} of what a loader returned (default: it is them)."""
        return loaded

    @property
    def family(self) -> str:
        return self.label

    @property
    def length(self) -> None:
        return None

    @property
    def n_train(self) -> int:
        return len(self.splits["train"])

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def train_data(self) -> Batch:
        return self.splits["train"].batch()

    def train_batch(self, data: Batch, key: jax.Array, step: jax.Array, batch_size: int) -> Batch:
        n = data.inputs.shape[0]
        per_epoch = max(n // batch_size, 1)
        epoch, position = step // per_epoch, step % per_epoch
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        index = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
        return jax.tree_util.tree_map(lambda x: jnp.take(x, index, axis=0), data)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        index = jax.random.randint(key, (batch_size,), 0, self.n_train)
        return jax.tree_util.tree_map(
            lambda x: jnp.take(jnp.asarray(x), index, axis=0), self.splits["train"].batch()
        )

    def eval_set(self, split: str) -> Batch:
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
        return self.splits[split].batch()

    def describe(self) -> dict:
        return {**super().describe(), "sizes": self.sizes()}


class ClassificationTask(DatasetTask):
    """Sequence classification: one of `n_classes` labels per sequence, read from the last step.

    targets (N,) int32. Metrics: cross-entropy (nats) and accuracy; accuracy ranks runs. Baseline:
    the constant predictor that always gives the training class frequencies (its cross-entropy and
    majority-class accuracy, measured on the test split).
    """

    metric_directions = {"cross_entropy": "min", "accuracy": "max"}  # noqa: RUF012
    primary_metric = "accuracy"

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        return {
            "cross_entropy": optax.softmax_cross_entropy_with_integer_labels(
                outputs, batch.targets
            ),
            "accuracy": (jnp.argmax(outputs, axis=-1) == batch.targets).astype(jnp.float32),
        }

    def baseline(self) -> dict[str, float]:
        n_classes = self.spec.output_dim
        prior = np.bincount(self.splits["train"].targets, minlength=n_classes) / self.n_train
        test = self.splits["test"].targets
        with np.errstate(divide="ignore"):
            log_prior = np.log(prior)
        return {
            "cross_entropy": float(-np.mean(log_prior[test])),
            "accuracy": float(np.mean(test == int(np.argmax(prior)))),
        }


def check_finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise DataError(f"{name}: contains NaN or infinite values")
