"""Polyphonic music modelling (Boulanger-Lewandowski et al. 2012; Bai et al. 2018).

Every piece is a binary piano roll of T time steps over the 88 piano keys (key k is MIDI pitch
21 + k); the model reads steps 0..T-2 and predicts, at every step, which keys sound at the next one,
so a piece gives T - 1 scored steps. The loss is the negative log-likelihood of independent
Bernoulli keys (binary cross-entropy with logits, summed over the 88 keys), averaged over the scored
steps: `nll` per piece is the mean over its steps, and pieces are weighted by their number of steps
in the evaluation means, so the reported number is the frame-level average over every step of the
split, as published. `accuracy` is the frame-level accuracy of Bay et al. (2009) used by
Boulanger-Lewandowski et al.: TP / (TP + FP + FN) summed over a piece's scored steps, a key
predicted on when its logit is > 0 (probability > 0.5); the per-piece ratios are averaged with the
same step weights (close to, but not exactly, the ratio pooled over the whole split; a piece with
no note in its targets or predictions counts as 1). Baseline: independent per-key Bernoulli
probabilities equal to the key frequencies of the training split's scored steps (clipped to
[1e-6, 1 - 1e-6]), scored on the test split.

Sources: "files" reads one of the four standard pickles of Boulanger-Lewandowski et al. from
`<data_dir>/music/` (`JSB Chorales.pickle`, `Nottingham.pickle`, `MuseData.pickle`,
`Piano-midi.de.pickle`, gzipped or not; `name` jsb_chorales, nottingham, musedata or piano_midi),
each a dict of "train", "valid" and "test" lists of pieces, a piece a list of time steps, a step a
sequence of the MIDI pitches (21-108) sounding (read by `seqbench.tasks.formats.pianoroll`); the
pickles' own splits are used. Pickles can run code when loaded: read only the published files.
"offline" (`name` bach_chorales) takes the four-part Bach chorales of music21's corpus (in
seqbench[data]): every .mxl, .xml and .krn file of its "bach" directory with exactly four parts,
rolled at quarter-note steps (a step holds every part's pitches sounding at the start of that
quarter), pieces that fail to parse or have fewer than 8 steps left out (the counts are in
`describe()`); the first run parses the corpus (about a minute) with a progress bar on stderr, and
the rolls are cached in `<cache_dir>/music/bach_chorales_v1.npz` for every later run. Offline split: the pieces, sorted by file path, are split
by NumPy generators seeded with `split_seed` into 60% train, 20% validation and 20% test (the corpus
holds a few alternative versions of one chorale, which may land in different splits).
`max_steps` crops longer pieces to their first `max_steps` steps.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from seqbench.config import choice, require
from seqbench.tasks.base import Batch, TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    DataError,
    DatasetTask,
    DatasetTaskConfig,
    hold_out,
    pad_sequences,
)
from seqbench.tasks.formats.files import load_npz, save_npz_atomic
from seqbench.tasks.formats.pianoroll import N_KEYS, read_pianoroll_pickle, roll_from_score

FILES = {
    "jsb_chorales": "JSB Chorales.pickle",
    "nottingham": "Nottingham.pickle",
    "musedata": "MuseData.pickle",
    "piano_midi": "Piano-midi.de.pickle",
}
OFFLINE_NAME = "bach_chorales"
LABELS = {
    "jsb_chorales": "JSB Chorales",
    "nottingham": "Nottingham",
    "musedata": "MuseData",
    "piano_midi": "Piano-midi.de",
    OFFLINE_NAME: "Bach chorales (music21)",
}
#: the data sets each source has
NAMES = {"offline": (OFFLINE_NAME,), "files": tuple(FILES)}
CACHE_NAME = "bach_chorales_v1.npz"
MIN_OFFLINE_STEPS = 8
OFFLINE_VAL, OFFLINE_TEST = 0.2, 0.2
CLIP = 1e-6


@dataclass
class MusicConfig(DatasetTaskConfig):
    """Options of polyphonic music (`task=music`)."""

    #: the data set: bach_chorales (source offline, music21's corpus) or jsb_chorales, nottingham,
    #: musedata, piano_midi (source files, the pickles)
    name: str = OFFLINE_NAME
    #: crop longer pieces to their first max_steps steps (null: whole pieces)
    max_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.name, "task.name", NAMES[self.source])
        if self.max_steps is not None:
            require(self.max_steps >= 2, "task.max_steps", f"must be >= 2, got {self.max_steps}")


def corpus_chorales() -> list[tuple[str, Callable[[], Any]]]:
    """(name, parse) for every score file of music21's Bach corpus, sorted by path."""
    try:
        from music21 import corpus
    except ImportError:
        raise DataError(
            "the offline Bach chorales need music21: pip install 'seqbench[data]' "
            "(or task.source=files with the pickles in <data_dir>/music/)"
        ) from None
    paths = sorted(corpus.getComposer("bach", fileExtensions=("mxl", "xml", "krn")))
    return [(f"{path.parent.name}/{path.name}", partial(corpus.parse, path)) for path in paths]


def parse_chorales(
    pieces: Iterable[tuple[str, Callable[[], Any]]],
    progress: bool = True,
) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    """(rolls, names, skipped counts) of the four-part scores among `pieces` ((name, parse) pairs)
    with at least MIN_OFFLINE_STEPS steps. `progress`: a progress bar of the scores parsed on
    stderr (the corpus takes about a minute)."""
    rolls, names = [], []
    skipped = {"unparsable": 0, "not_four_parts": 0, "too_short": 0}
    pieces = list(pieces)
    bar = tqdm(
        pieces,
        desc="[seqbench] Bach chorales",
        unit="score",
        file=sys.stderr,
        mininterval=1.0,
        disable=not progress,
    )
    for name, parse in bar:
        try:
            score = parse()
            if len(score.parts) != 4:
                skipped["not_four_parts"] += 1
                continue
            roll = roll_from_score(score)
        except Exception:  # music21 raises many types on files it cannot read; counted
            skipped["unparsable"] += 1
            continue
        if len(roll) < MIN_OFFLINE_STEPS:
            skipped["too_short"] += 1
            continue
        rolls.append(roll)
        names.append(name)
    return rolls, names, skipped


def _read_cache(path: Path) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    data = load_npz(path)
    if data is None:
        raise ValueError("unreadable cache")
    rolls, lengths, names = data["rolls"], data["lengths"], data["names"]
    skipped = {str(k): int(v) for k, v in zip(data["skipped_keys"], data["skipped"], strict=True)}
    if rolls.ndim != 2 or rolls.shape[1] != N_KEYS or len(names) != len(lengths) or len(names) == 0:
        raise ValueError("inconsistent cache")
    if int(lengths.sum()) != len(rolls) or (lengths < 1).any():
        raise ValueError("inconsistent cache")
    pieces = np.split(rolls.astype(np.float32), np.cumsum(lengths)[:-1])
    return pieces, [str(n) for n in names], skipped


def _write_cache(
    path: Path, rolls: list[np.ndarray], names: list[str], skipped: dict[str, int]
) -> None:
    arrays = {
        "rolls": np.concatenate(rolls).astype(bool),
        "lengths": np.array([len(r) for r in rolls], np.int64),
        "names": np.array(names),
        "skipped_keys": np.array(list(skipped)),
        "skipped": np.array(list(skipped.values()), np.int64),
    }
    save_npz_atomic(path, arrays)


def load_chorale_rolls(
    cache_path: Path,
    pieces: Callable[[], Iterable[tuple[str, Callable[[], Any]]]] | None = None,
) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    """(rolls (T_i, 88), names, skipped counts) of the offline chorales: read from `cache_path`
    silently, or parsed from `pieces()` (default `corpus_chorales`; see `parse_chorales`) with a
    progress bar on stderr and written there atomically when the cache is missing or unreadable."""
    if cache_path.is_file():
        try:
            return _read_cache(cache_path)
        except Exception as error:  # any unreadable cache is rebuilt
            print(
                f"[seqbench] rebuilding unreadable cache {cache_path} ({type(error).__name__})",
                file=sys.stderr,
            )
    print(
        f"[seqbench] parsing the Bach chorales of music21's corpus (once; cached in {cache_path})",
        file=sys.stderr,
    )
    rolls, names, skipped = parse_chorales((pieces or corpus_chorales)(), progress=True)
    if not rolls:
        raise DataError(f"no usable Bach chorale in music21's corpus (skipped: {skipped})")
    _write_cache(cache_path, rolls, names, skipped)
    return rolls, names, skipped


def _split_offline(rolls: list[np.ndarray], seed: int) -> dict[str, list[np.ndarray]]:
    """60/20/20 train/val/test split of the pieces (in their sorted order) drawn from `seed`."""
    n = len(rolls)
    index = np.arange(n)
    pool = ArraySplit(index, index)
    rest, test = hold_out(pool, round(OFFLINE_TEST * n), seed)
    train, val = hold_out(rest, round(OFFLINE_VAL * n), seed + 1)
    return {
        name: [rolls[i] for i in split.inputs]
        for name, split in (("train", train), ("val", val), ("test", test))
    }


def step_losses(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """(B, T) binary cross-entropy summed over the keys, from (B, T, 88) logits and targets."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)


class PolyphonicMusic(DatasetTask):
    """Next-step 88-key piano-roll prediction; see the module docstring.

    Inputs (B, T, 88) float32 binary (steps 0..T-2 of each roll, zero-padded); targets (B, T, 88)
    float32 binary (steps 1..T-1); seq_lengths (B,) int32 scored steps per piece.
    """

    metric_directions = {"nll": "min", "accuracy": "max"}  # noqa: RUF012
    primary_metric = "nll"

    config: MusicConfig

    def __init__(self, config: MusicConfig):
        self.name, self._label = f"music_{config.name}", LABELS[config.name]
        self.skipped: dict[str, int] = {}
        super().__init__(config)
        self.source, self.max_steps = config.source, config.max_steps
        scored = self.splits["train"].inputs.shape[1]  # every split is padded to the longest
        self.spec = TaskSpec("real", N_KEYS, N_KEYS, scored, "every_step")

    def load_files(self, data_dir: Path, config: MusicConfig) -> dict[str, list[np.ndarray]]:
        return read_pianoroll_pickle(self._find(data_dir / "music" / FILES[config.name]))

    def load_offline(self, config: MusicConfig) -> dict[str, list[np.ndarray]]:
        cache = Path(config.cache_dir).expanduser() / "music"
        rolls, _, self.skipped = load_chorale_rolls(cache / CACHE_NAME)
        return _split_offline(rolls, config.split_seed)

    def prepare(self, pieces: dict[str, list[np.ndarray]]) -> dict[str, ArraySplit]:
        """{"train", "val", "test"}: lists of (T_i, 88) rolls -> cropped to max_steps, pieces under
        2 steps left out (counted), padded to the longest piece's scored steps."""
        name, max_steps = self.config.name, self.config.max_steps
        if max_steps is not None:
            pieces = {split: [r[:max_steps] for r in rolls] for split, rolls in pieces.items()}
        too_short = sum(len(r) < 2 for rolls in pieces.values() for r in rolls)
        if too_short:
            self.skipped["under_2_steps"] = too_short
        pieces = {split: [r for r in rolls if len(r) >= 2] for split, rolls in pieces.items()}
        for split, rolls in pieces.items():
            if not rolls:
                raise DataError(f"music {name}: the {split} split has no piece of 2 or more steps")
        self.steps = {split: [len(r) for r in rolls] for split, rolls in pieces.items()}
        scored = max(max(lengths) for lengths in self.steps.values()) - 1
        return {split: self._split(rolls, scored) for split, rolls in pieces.items()}

    @staticmethod
    def _find(path: Path) -> Path:
        gzipped = path.with_name(path.name + ".gz")
        for candidate in (path, gzipped):
            if candidate.is_file():
                return candidate
        raise DataError(
            f"music (task.source=files): missing {path} (or {gzipped.name}); run `seqbench data "
            f"download {next((k for k, v in FILES.items() if v == path.name), 'NAME')}`, or "
            f"use task.source=offline task.name={OFFLINE_NAME} for the Bach chorales of music21"
        )

    @staticmethod
    def _split(rolls: list[np.ndarray], scored: int) -> ArraySplit:
        inputs, lengths = pad_sequences([r[:-1] for r in rolls], scored)
        targets, _ = pad_sequences([r[1:] for r in rolls], scored)
        return ArraySplit(inputs, targets, lengths)

    @property
    def label(self) -> str:
        return self._label

    @staticmethod
    def _mask(batch: Batch) -> jax.Array:
        """(B, T) float32: 1 at scored steps, 0 at padding."""
        batch_size, time = batch.targets.shape[:2]
        if batch.seq_lengths is None:
            return jnp.ones((batch_size, time), jnp.float32)
        return (jnp.arange(time)[None, :] < batch.seq_lengths[:, None]).astype(jnp.float32)

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        mask = self._mask(batch)
        total = jnp.sum(step_losses(outputs, batch.targets) * mask)
        return total / jnp.maximum(jnp.sum(mask), 1.0)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        mask = self._mask(batch)
        steps = jnp.sum(mask, axis=1)
        nll = jnp.sum(step_losses(outputs, batch.targets) * mask, axis=1) / jnp.maximum(steps, 1.0)
        predicted = (outputs > 0).astype(jnp.float32)
        true_pos = jnp.sum(predicted * batch.targets * mask[..., None], axis=(1, 2))
        errors = jnp.sum(jnp.abs(predicted - batch.targets) * mask[..., None], axis=(1, 2))
        denominator = true_pos + errors
        accuracy = jnp.where(denominator > 0, true_pos / jnp.maximum(denominator, 1.0), 1.0)
        return {"nll": nll, "accuracy": accuracy}

    def example_weights(self, batch: Batch) -> jax.Array:
        return jnp.sum(self._mask(batch), axis=1)

    def key_frequencies(self) -> np.ndarray:
        """(88,) frequency of each key over the training split's scored steps, clipped."""
        train = self.splits["train"]
        mask = np.arange(train.targets.shape[1])[None, :] < train.lengths[:, None]
        frequencies = train.targets[mask].mean(axis=0, dtype=np.float64)
        return np.clip(frequencies, CLIP, 1 - CLIP)

    def baseline(self) -> dict[str, float]:
        p = self.key_frequencies()
        test = self.splits["test"]
        targets = test.targets.astype(np.float64)
        mask = (np.arange(targets.shape[1])[None, :] < test.lengths[:, None]).astype(np.float64)
        step_nll = -(targets @ np.log(p) + (1 - targets) @ np.log1p(-p))  # (N, T)
        predicted = (p > 0.5).astype(np.float64)
        true_pos = np.einsum("ntk,k,nt->n", targets, predicted, mask)
        errors = np.einsum("ntk,nt->n", np.abs(predicted - targets), mask)
        denominator = true_pos + errors
        accuracy = np.where(denominator > 0, true_pos / np.maximum(denominator, 1.0), 1.0)
        steps = mask.sum(axis=1)
        return {
            "nll": float(np.sum(step_nll * mask) / steps.sum()),
            "accuracy": float(np.sum(accuracy * steps) / steps.sum()),
        }

    def describe(self) -> dict:
        return {
            **super().describe(),
            "source": self.source,
            "max_steps": self.max_steps,
            "skipped": dict(self.skipped),
            "steps": {
                split: {
                    "min": min(lengths),
                    "max": max(lengths),
                    "scored": sum(lengths) - len(lengths),
                }
                for split, lengths in self.steps.items()
            },
        }
