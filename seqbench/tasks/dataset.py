"""Tasks over fixed data sets: the arrays live on the device and batches are gathered inside the jitted
training step, with one reshuffle per epoch drawn from the seed.

A data-set task holds three `ArraySplit`s, "train", "val" and "test", as host NumPy arrays; the trainer
puts the training split on the device once (`train_data`) and passes it into every jitted chunk, so no
training step touches the host. Step s of a seed with data key k uses epoch e = s // E (E = steps per
epoch = N // B, the last partial batch of an epoch dropped) and takes batch s mod E of the permutation
drawn from fold_in(k, e).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqbench.tasks.base import EVAL_SPLITS, Batch, Task


class DataError(ValueError):
    """A data file that is missing, truncated or not in the expected format (one line)."""


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


def require_files(directory: Path, names: list[str], what: str, alternative: str) -> list[Path]:
    """The paths of `names` in `directory` (each may also be gzipped: `name.gz`); DataError naming
    every expected file, where, and the offline alternative when one is missing."""
    found, missing = [], []
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            missing.append(name)
    if missing:
        raise DataError(
            f"{what}: missing {', '.join(missing)} (or .gz) in {directory}; "
            f"expected {', '.join(names)}. {alternative}"
        )
    return found


def read_maybe_gzipped(path: Path) -> bytes:
    """The bytes of `path`, decompressed when it is gzipped (by content, not by name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: corrupt or truncated gzip file ({error})") from None
    return raw


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when it is missing or unreadable (then rebuilt)."""
    if not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed .npz through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class DatasetTask(Task):
    """Base of the real-data tasks: fixed splits on device, per-epoch shuffling from the seed.

    Subclasses set `splits` ({"train", "val", "test"}: ArraySplit), `spec`, the metric attributes
    and implement `loss`, `metrics` and `baseline`.
    """

    splits: dict[str, ArraySplit]

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
