"""Character-level language modelling, trained by truncated backpropagation through time.

The training text becomes one stream of character ids, cut into B = batch size contiguous streams of
L = N // B characters. Step s trains on segment s mod (L - 1) // K of every stream (K = `bptt`
characters, each predicting the next), starting from the recurrent state the previous segment ended
in; the state is reset to zero when the streams start over (every (L - 1) // K steps, one pass over
the text). Validation and test text are cut into `eval_streams` streams, each read from its start to
its end in segments of `eval_segment` characters with the state carried through. Metric: bits per
character (cross-entropy / ln 2), the standard for Penn Treebank and text8; baseline: the entropy of
the training text's character frequencies on the test text (a model with no memory).

Sources ("files" in `<data_dir>/text/`): `ptb_char`: the Penn Treebank character files
`ptb.char.{train,valid,test}.txt` (characters separated by spaces, `_` between words: each
line becomes its characters without the spaces, ended by a newline); `text8`: the single `text8` file
split 90M / 5M / 5M characters as usual; any other name: `<name>/{train,valid,test}.txt`.
"offline" (`corpus=abc_folk`): the 1,146 ABC folk-tune files of music21's corpus (seqbench[data]),
4.37 M characters, split by whole files into about 90% / 5% / 5% of the characters (`split_seed`). Characters of validation or test
that never occur in training map to one unknown id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqbench.config import require
from seqbench.tasks.base import Batch, StatefulTask, TaskSpec
from seqbench.tasks.dataset import ArraySplit, DataError, DatasetTask, DatasetTaskConfig
from seqbench.tasks.formats.files import decode, read_text, require_files

TEXT8_SPLIT = (90_000_000, 95_000_000)
OFFLINE_CORPUS = "abc_folk"


@dataclass
class TextConfig(DatasetTaskConfig):
    """Options of character-level language modelling (`task=text`)."""

    #: abc_folk (source offline, music21's ABC tunes), or for source files: ptb_char, text8 or the
    #: name of a folder of train.txt, valid.txt and test.txt
    corpus: str = OFFLINE_CORPUS
    #: K, the characters per training segment (truncated backpropagation through time)
    bptt: int = 100
    #: the streams validation and test text are cut into
    eval_streams: int = 8
    #: the characters per evaluation segment (the state carries through a whole stream)
    eval_segment: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.corpus), "task.corpus", "must name a corpus")
        for key in ("bptt", "eval_streams", "eval_segment"):
            value = getattr(self, key)
            require(value > 0, f"task.{key}", f"must be positive, got {value}")


def load_abc_folk(split_seed: int) -> dict[str, str]:
    """music21's ABC corpus as {"train", "val", "test"} text, split by file."""
    try:
        from music21 import corpus
    except ImportError:
        raise DataError(
            "the offline text corpus needs music21: pip install 'seqbench[data]' "
            "(or task.source=files with a corpus in <data_dir>/text/)"
        ) from None
    paths = sorted(corpus.getCorePaths(fileExtensions=("abc",)))
    if len(paths) < 20:
        raise DataError(f"music21's corpus holds {len(paths)} .abc files; expected over 1,000")
    texts = [decode(Path(path).read_bytes()) for path in paths]
    # whole files, in an order drawn from split_seed, to test until it holds 5% of the characters,
    # then to validation until it does too; the rest trains
    order = np.random.default_rng(split_seed).permutation(len(texts))
    share = 0.05 * sum(map(len, texts))
    parts: dict[str, list[int]] = {"test": [], "val": [], "train": []}
    filled = {"test": 0, "val": 0}
    for index in order:
        target = next((k for k in ("test", "val") if filled[k] < share), "train")
        parts[target].append(index)
        if target != "train":
            filled[target] += len(texts[index])
    return {
        name: "".join(texts[i] for i in sorted(parts[name])) for name in ("train", "val", "test")
    }


def load_text_files(directory: Path, corpus_name: str) -> dict[str, str]:
    """{"train", "val", "test"} text of a corpus in `directory` (see the module docstring)."""
    alternative = (
        f"Run `seqbench data download {corpus_name}` (ptb_char, text8), or use "
        "task.source=offline for the ABC folk-tune corpus shipped with music21."
    )
    what = f"text corpus {corpus_name} (task.source=files)"
    if corpus_name == "ptb_char":
        names = [f"ptb.char.{part}.txt" for part in ("train", "valid", "test")]
        paths = require_files(directory, names, what, alternative)
        texts = [read_text(path) for path in paths]
        texts = ["\n".join(line.replace(" ", "") for line in t.splitlines()) + "\n" for t in texts]
    elif corpus_name == "text8":
        (path,) = require_files(directory, ["text8"], what, alternative)
        whole = read_text(path)
        if len(whole) < TEXT8_SPLIT[1] + 1:
            raise DataError(f"{path}: {len(whole)} characters, text8 has 100,000,000 (truncated?)")
        a, b = TEXT8_SPLIT
        texts = [whole[:a], whole[a:b], whole[b:]]
    else:
        folder = directory / corpus_name
        names = ["train.txt", "valid.txt", "test.txt"]
        texts = [read_text(path) for path in require_files(folder, names, what, alternative)]
    return dict(zip(("train", "val", "test"), texts, strict=True))


class CharLanguageModel(DatasetTask, StatefulTask):
    """Next-character prediction by truncated BPTT; see the module docstring.

    Training data: the training text as one (N,) int32 stream. Batches: inputs (B, K) ids, targets
    (B, K) the next ids. Evaluation sets: (S, L) inputs and targets, L a multiple of eval_segment.
    """

    metric_directions = {"bpc": "min"}  # noqa: RUF012
    primary_metric = "bpc"
    config: TextConfig

    def __init__(self, config: TextConfig):
        self.corpus, self.bptt = config.corpus, config.bptt
        self.name = f"text_{config.corpus}"
        super().__init__(config)
        unknown = len(self.vocabulary)
        self.spec = TaskSpec("tokens", unknown + 1, unknown + 1, config.bptt, "every_step")

    def load_offline(self, config: TextConfig) -> dict[str, str]:
        if config.corpus != OFFLINE_CORPUS:
            raise DataError(
                f"text: no offline copy of {config.corpus!r}; offline there is {OFFLINE_CORPUS} "
                "(music21), else task.source=files"
            )
        return load_abc_folk(config.split_seed)

    def load_files(self, data_dir: Path, config: TextConfig) -> dict[str, str]:
        return load_text_files(data_dir / "text", config.corpus)

    def prepare(self, texts: dict[str, str]) -> dict[str, ArraySplit]:
        """{"train", "val", "test"} text -> the training stream (`stream`) and the validation and
        test streams as (S, L) splits; characters unseen in training map to one unknown id."""
        eval_streams, eval_segment = self.config.eval_streams, self.config.eval_segment
        alphabet = sorted(set(texts["train"]))
        self.vocabulary = {char: i for i, char in enumerate(alphabet)}
        unknown = len(alphabet)
        characters = set().union(*map(set, texts.values()))
        lookup = np.full(max(map(ord, characters)) + 1, unknown, np.int32)
        for char, index in self.vocabulary.items():
            lookup[ord(char)] = index
        ids = {
            name: lookup[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
            for name, text in texts.items()
        }
        self.stream = ids["train"]
        splits = {}  # val and test as (streams, L); the training text is `stream`
        for name in ("val", "test"):
            stream = ids[name]
            length = (len(stream) - 1) // eval_streams // eval_segment * eval_segment
            if length < eval_segment:
                raise DataError(
                    f"text: the {name} text ({len(stream)} characters) is too short for "
                    f"{eval_streams} streams of at least {eval_segment} characters"
                )
            starts = np.arange(eval_streams)[:, None] * length + np.arange(length)[None, :]
            splits[name] = ArraySplit(stream[starts], stream[starts + 1])
        self.unknown_fraction = {
            name: float(np.mean(ids[name] == unknown)) for name in ("val", "test")
        }
        self.frequencies = np.bincount(ids["train"], minlength=unknown + 1) / len(ids["train"])
        return splits

    @property
    def eval_segment(self) -> int:
        return self.config.eval_segment

    @property
    def n_train(self) -> int:
        return len(self.stream)

    def sizes(self) -> dict[str, int]:
        """Characters per split (those scored, for validation and test)."""
        scored = {name: int(split.targets.size) for name, split in self.splits.items()}
        return {"train": len(self.stream), **scored}

    @property
    def label(self) -> str:
        return f"{self.corpus} (chars)"

    def train_data(self) -> jax.Array:
        return self.stream

    def _layout(self, n: int, batch_size: int) -> tuple[int, int]:
        per_stream = n // batch_size
        segments = (per_stream - 1) // self.bptt
        if segments < 1:
            raise ValueError(
                f"text: {n} training characters in {batch_size} streams leave fewer than "
                f"bptt + 1 = {self.bptt + 1} per stream"
            )
        return per_stream, segments

    def train_batch(
        self, data: jax.Array, key: jax.Array, step: jax.Array, batch_size: int
    ) -> Batch:
        del key  # the streams are read in order
        per_stream, segments = self._layout(data.shape[0], batch_size)
        offset = (step % segments) * self.bptt
        index = (
            jnp.arange(batch_size)[:, None] * per_stream
            + offset
            + jnp.arange(self.bptt + 1)[None, :]
        )
        tokens = data[index]
        return Batch(tokens[:, :-1], tokens[:, 1:])

    def starts_sequence(self, data: jax.Array, step: jax.Array, batch_size: int) -> jax.Array:
        """bool (): this step's segments are the first of their streams (reset the state)."""
        _, segments = self._layout(data.shape[0], batch_size)
        return step % segments == 0

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        starts = jax.random.randint(key, (batch_size,), 0, len(self.stream) - self.bptt - 1)
        tokens = jnp.asarray(self.stream)[starts[:, None] + jnp.arange(self.bptt + 1)[None, :]]
        return Batch(tokens[:, :-1], tokens[:, 1:])

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        nats = optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets)
        return {"bpc": jnp.mean(nats, axis=-1) / math.log(2.0)}

    def baseline(self) -> dict[str, float]:
        """Bits per character of the training text's character frequencies on the test text."""
        test = self.splits["test"].targets.ravel()
        p = np.clip(self.frequencies[test], 1e-12, None)
        return {"bpc": float(-np.mean(np.log2(p)))}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "vocabulary_size": len(self.vocabulary) + 1,
            "unknown_fraction": self.unknown_fraction,
        }
