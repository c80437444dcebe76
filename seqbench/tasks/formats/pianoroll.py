"""Binary piano rolls over the 88 piano keys (key k is MIDI pitch 21 + k), from the pickles of
Boulanger-Lewandowski et al. (2012) and from music21 scores.

The pickles (`JSB Chorales.pickle`, `Nottingham.pickle`, `MuseData.pickle`, `Piano-midi.de.pickle`,
gzipped or not) each hold a dict of "train", "valid" and "test" lists of pieces, a piece a list of
time steps, a step a sequence of the MIDI pitches (21-108) sounding. Pickles can run code when
loaded: read only the published files.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from seqbench.tasks.formats.files import DataError, read_maybe_gzipped

N_KEYS, LOWEST_PITCH = 88, 21
#: our split names -> the pickles' keys
PICKLE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
EPS = 1e-6  # tolerance on note onsets and ends (in quarters) when rolling


def roll_from_steps(steps: Iterable[Iterable[int]], where: str) -> np.ndarray:
    """(T, 88) float32 piano roll of a piece given as T steps of active MIDI pitches (21-108);
    DataError naming `where` for anything else."""
    try:
        steps = list(steps)
        roll = np.zeros((len(steps), N_KEYS), np.float32)
        for t, step in enumerate(steps):
            for pitch in step:
                if isinstance(pitch, bool) or int(pitch) != pitch:
                    raise DataError(f"{where}, step {t}: pitch {pitch!r} is not an integer")
                if not LOWEST_PITCH <= pitch < LOWEST_PITCH + N_KEYS:
                    raise DataError(f"{where}, step {t}: pitch {pitch} outside 21-108")
                roll[t, int(pitch) - LOWEST_PITCH] = 1.0
    except (TypeError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{where}: expected a list of steps of MIDI pitches ({error})") from None
    return roll


def read_pianoroll_pickle(path: Path) -> dict[str, list[np.ndarray]]:
    """{"train", "val", "test"}: lists of (T, 88) rolls from a Boulanger-Lewandowski pickle (dict of
    "train", "valid", "test"; gzipped or not)."""
    raw = read_maybe_gzipped(path)
    try:
        data = pickle.loads(raw, encoding="latin1")
    except Exception as error:  # unpickling raises many types on corrupt or truncated input
        message = str(error).splitlines()[0] if str(error) else ""
        raise DataError(
            f"{path}: corrupt or truncated pickle ({type(error).__name__}: {message})"
        ) from None
    if not isinstance(data, dict) or not set(PICKLE_SPLITS.values()) <= set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with keys train, valid, test; got {found}")
    out = {}
    for split, key in PICKLE_SPLITS.items():
        pieces = data[key]
        if not isinstance(pieces, list | tuple):
            raise DataError(f"{path}: {key!r} is a {type(pieces).__name__}, expected a list")
        out[split] = [
            roll_from_steps(piece, f"{path}: {key} piece {i}") for i, piece in enumerate(pieces)
        ]
    return out


def roll_from_notes(
    notes: Iterable[tuple[float, float, int]], n_steps: int | None = None
) -> np.ndarray:
    """(T, 88) float32 roll at quarter-note steps from (onset, duration, MIDI pitch) notes, times
    in quarters: step t holds the pitches sounding at time t (onset <= t < onset + duration).
    T = `n_steps`, or the end of the last note rounded up. ValueError for pitches outside 21-108."""
    notes = [(float(o), float(d), int(p)) for o, d, p in notes]
    if n_steps is None:
        n_steps = max((math.ceil(o + d - EPS) for o, d, _ in notes), default=0)
    roll = np.zeros((n_steps, N_KEYS), np.float32)
    for onset, duration, pitch in notes:
        if not LOWEST_PITCH <= pitch < LOWEST_PITCH + N_KEYS:
            raise ValueError(f"pitch {pitch} outside 21-108")
        first, end = math.ceil(onset - EPS), math.ceil(onset + duration - EPS)
        roll[max(first, 0) : max(min(end, n_steps), 0), pitch - LOWEST_PITCH] = 1.0
    return roll


def roll_from_score(score: Any) -> np.ndarray:
    """(T, 88) roll of a music21 score at quarter-note steps, every part's notes and chords
    together; T = the score's length in quarters, rounded up."""
    notes = [
        (element.offset, element.quarterLength, pitch.midi)
        for element in score.flatten().notes
        for pitch in getattr(element, "pitches", ())
    ]
    return roll_from_notes(notes, math.ceil(float(score.highestTime) - EPS))
