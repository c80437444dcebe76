"""File helpers every reader shares: required files (each may be gzipped), gzip by content, text of
unknown encoding, and the atomic `.npz` caches of preprocessed arrays."""

from __future__ import annotations

import gzip
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file that is missing, truncated or not in the expected format (one line)."""


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


def decode(raw: bytes) -> str:
    """`raw` as UTF-8 text, or as Latin-1 when it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_text(path: Path) -> str:
    """The text of `path` (gzipped or not; UTF-8, else Latin-1)."""
    return decode(read_maybe_gzipped(path))


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
