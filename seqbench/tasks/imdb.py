"""IMDB movie-review sentiment (Maas et al. 2011): the example this project grew out of.

Reads the standard `aclImdb` folder from `<data_dir>/aclImdb/` ({train, test}/{pos, neg}/*.txt, one
review per file; 25,000 + 25,000 reviews). No copy ships in any package, so there is no offline
default: download and extract https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz there.

Text is standardised as TensorFlow's TextVectorization does by default (lower case, punctuation
removed, split on white space), with `<br />` tags dropped first. The vocabulary is the
`vocab_size - 2` most frequent words of the training reviews (validation reviews excluded; ties broken
alphabetically); id 0 is padding, id 1 an out-of-vocabulary word. Reviews are cut to their first
`max_length` words and padded at the end, with their lengths passed to the model, so padding never
reaches the recurrence, the readout or the metrics. `n_val` training reviews are held out for
validation (`split_seed`). The tokenised arrays are cached in `<cache_dir>/imdb/`.

Targets: 1 positive, 0 negative; the model gives one logit. Metrics: binary cross-entropy (nats) and
accuracy; baseline: the majority class of the training reviews.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqbench.config import require
from seqbench.tasks.base import Batch, TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    DataError,
    DatasetTask,
    DatasetTaskConfig,
    hold_out,
)
from seqbench.tasks.formats.files import load_npz, save_npz_atomic

PAD, OOV = 0, 1
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PUNCTUATION = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']")
CACHE_VERSION = 1


@dataclass
class IMDBConfig(DatasetTaskConfig):
    """Options of IMDB sentiment (`task=imdb`). No offline copy exists: source is "files" only."""

    #: the aclImdb folder in <data_dir>/aclImdb/ (the only source)
    source: str = "files"
    #: words in the vocabulary, counting the padding and unknown-word ids
    vocab_size: int = 1000
    #: reviews are cut to their first max_length words
    max_length: int = 256
    #: training reviews held out for validation
    n_val: int = 5000
    sources: ClassVar[tuple[str, ...]] = ("files",)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.vocab_size >= 3, "task.vocab_size", f"must be at least 3, got {self.vocab_size}"
        )
        require(self.max_length > 0, "task.max_length", f"must be positive, got {self.max_length}")
        require(self.n_val > 0, "task.n_val", f"must be positive, got {self.n_val}")


def standardise(text: str) -> list[str]:
    """Lower-cased words with punctuation and line-break tags removed."""
    return _PUNCTUATION.sub("", _BREAK.sub(" ", text).lower()).split()


def build_vocabulary(texts: list[list[str]], size: int) -> dict[str, int]:
    """{word: id} for the `size - 2` most frequent words (ids 2.., ties alphabetical)."""
    counts = collections.Counter(word for words in texts for word in words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: size - 2]
    return {word: index + 2 for index, (word, _) in enumerate(ranked)}


def encode(
    texts: list[list[str]], vocabulary: dict[str, int], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (N, max_length) int32, zero-padded at the end, and lengths (N,) (at least 1)."""
    ids = np.zeros((len(texts), max_length), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, words in enumerate(texts):
        row = [vocabulary.get(word, OOV) for word in words[:max_length]] or [OOV]
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


def review_files(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """{"train", "test"}: sorted (file, label) pairs of the aclImdb folder `root`."""
    expected = [root / split / label for split in ("train", "test") for label in ("pos", "neg")]
    missing = [str(folder.relative_to(root)) for folder in expected if not folder.is_dir()]
    if missing:
        raise DataError(
            f"IMDB: missing {', '.join(missing)} in {root}; expected the extracted "
            "aclImdb_v1.tar.gz (aclImdb/{train,test}/{pos,neg}/*.txt). No offline copy exists: "
            "run `seqbench data download imdb`"
        )
    out = {}
    for split in ("train", "test"):
        pairs = []
        for label, value in (("neg", 0), ("pos", 1)):
            files = sorted((root / split / label).glob("*.txt"))
            if not files:
                raise DataError(f"IMDB: no .txt reviews in {root / split / label}")
            pairs += [(path, value) for path in files]
        out[split] = pairs
    return out


def read_reviews(pairs: list[tuple[Path, int]]) -> tuple[list[list[str]], np.ndarray]:
    texts = []
    for path, _ in pairs:
        try:
            texts.append(standardise(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"IMDB: cannot read {path} ({error})") from None
    return texts, np.array([label for _, label in pairs], np.int32)


class IMDBSentiment(DatasetTask):
    """Binary sentiment of a review from its word ids; see the module docstring.

    Inputs (B, max_length) int32 word ids with lengths (B,); targets (B,) int32 in {0, 1}; the model
    gives (B, 1) logits.
    """

    name = "imdb"
    metric_directions = {"cross_entropy": "min", "accuracy": "max"}  # noqa: RUF012
    primary_metric = "accuracy"

    config: IMDBConfig

    def __init__(self, config: IMDBConfig):
        self.vocab_size, self.max_length = config.vocab_size, config.max_length
        super().__init__(config)
        self.spec = TaskSpec("tokens", config.vocab_size, 1, config.max_length, "last")

    def load_files(self, data_dir: Path, config: IMDBConfig) -> dict[str, np.ndarray]:
        """The tokenised splits, from the cache in <cache_dir>/imdb/ or tokenised afresh."""
        files = review_files(data_dir / "aclImdb")
        settings = {
            "vocab": config.vocab_size,
            "max_length": config.max_length,
            "n_val": config.n_val,
            "seed": config.split_seed,
        }
        cache = self._cache_path(config.cache_dir, files, settings)
        arrays = self._load_cache(cache)
        if arrays is None:
            arrays = self._tokenise(
                files, config.vocab_size, config.max_length, config.n_val, config.split_seed
            )
            self._save_cache(cache, arrays)
        return arrays

    def prepare(self, arrays: dict[str, np.ndarray]) -> dict[str, ArraySplit]:
        self.truncated = float(arrays["truncated"])
        return {
            name: ArraySplit(
                arrays[f"{name}_ids"], arrays[f"{name}_labels"], arrays[f"{name}_lengths"]
            )
            for name in ("train", "val", "test")
        }

    @property
    def label(self) -> str:
        return f"imdb (vocab {self.vocab_size}, ≤{self.max_length} words)"

    @staticmethod
    def _tokenise(files, vocab_size, max_length, n_val, split_seed) -> dict[str, np.ndarray]:
        train_texts, train_labels = read_reviews(files["train"])
        test_texts, test_labels = read_reviews(files["test"])
        if not 0 < n_val < len(train_texts):
            raise DataError(f"IMDB: cannot hold out {n_val} of {len(train_texts)} training reviews")
        index = ArraySplit(np.arange(len(train_texts)), train_labels)
        rest, held = hold_out(index, n_val, split_seed)
        vocabulary = build_vocabulary([train_texts[i] for i in rest.inputs], vocab_size)
        arrays: dict[str, np.ndarray] = {}
        parts = {
            "train": ([train_texts[i] for i in rest.inputs], rest.targets),
            "val": ([train_texts[i] for i in held.inputs], held.targets),
            "test": (test_texts, test_labels),
        }
        for name, (texts, labels) in parts.items():
            ids, lengths = encode(texts, vocabulary, max_length)
            arrays.update(
                {f"{name}_ids": ids, f"{name}_lengths": lengths, f"{name}_labels": labels}
            )
        all_texts = [*train_texts, *test_texts]
        arrays["truncated"] = np.array(np.mean([len(t) > max_length for t in all_texts]))
        return arrays

    @staticmethod
    def _cache_path(cache_dir: str | None, files: dict, settings: dict) -> Path | None:
        if not cache_dir:
            return None
        listing = [
            (str(p.name), p.stat().st_size, label) for split in files.values() for p, label in split
        ]
        digest = hashlib.sha1(json.dumps([CACHE_VERSION, settings, listing]).encode()).hexdigest()[
            :16
        ]
        return Path(cache_dir).expanduser() / "imdb" / f"tokens-{digest}.npz"

    @staticmethod
    def _load_cache(path: Path | None) -> dict[str, np.ndarray] | None:
        return None if path is None else load_npz(path)

    @staticmethod
    def _save_cache(path: Path | None, arrays: dict[str, np.ndarray]) -> None:
        if path is None:
            return
        try:
            save_npz_atomic(path, arrays)
        except OSError:
            pass  # caching is an optimisation; the arrays are in memory

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(self.metrics(outputs, batch)["cross_entropy"])

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        logits = outputs[:, 0]
        labels = batch.targets.astype(jnp.float32)
        return {
            "cross_entropy": optax.sigmoid_binary_cross_entropy(logits, labels),
            "accuracy": ((logits > 0) == (batch.targets == 1)).astype(jnp.float32),
        }

    def baseline(self) -> dict[str, float]:
        positive = float(np.mean(self.splits["train"].targets))
        majority = int(positive >= 0.5)
        test = self.splits["test"].targets
        p = np.clip(positive, 1e-6, 1 - 1e-6)
        return {
            "cross_entropy": float(-np.mean(np.where(test == 1, np.log(p), np.log(1 - p)))),
            "accuracy": float(np.mean(test == majority)),
        }

    def describe(self) -> dict:
        return {**super().describe(), "truncated_fraction": self.truncated}
