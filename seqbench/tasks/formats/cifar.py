"""CIFAR-10's python version (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html).

`cifar-10-python.tar.gz` holds `cifar-10-batches-py/` with five training batches `data_batch_1`
.. `data_batch_5` and `test_batch` (10,000 images each) and `batches.meta`. Each batch is a pickled
dict whose keys are bytes: b"data", a (10000, 3072) uint8 array, one image a row of its 1,024 red,
then 1,024 green, then 1,024 blue values, each plane the 32 x 32 pixels in row-major order; and
b"labels", 10,000 ints in 0-9. The files are read either unpacked in one folder (as `seqbench data
download cifar10` leaves them) or straight from the archive.

Pickles can run code when loaded: batches are unpickled with only the globals that rebuild a NumPy
array allowed, anything else is refused.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from seqbench.tasks.formats.files import DataError, read_maybe_gzipped

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_ROOT = "cifar-10-batches-py"
SIDE, CHANNELS, N_CLASSES = 32, 3, 10
PIXELS = SIDE * SIDE
#: the globals a pickled NumPy array needs (NumPy 1 and 2 module names; protocol 2 bytes)
ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and NumPy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3072) uint8, labels (N,) uint8) of one pickled batch (`raw`, gzipped or not is
    the caller's business); DataError naming `where` for anything not in the format."""
    try:
        data = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # unpickling raises many types on corrupt or hostile input
        message = str(error).splitlines()[0] if str(error) else ""
        raise DataError(
            f"{where}: corrupt or not a CIFAR-10 batch ({type(error).__name__}: {message})"
        ) from None
    if not isinstance(data, dict) or b"data" not in data or b"labels" not in data:
        found = sorted(map(repr, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{where}: expected a dict with b'data' and b'labels', got {found}")
    images, labels = np.asarray(data[b"data"]), np.asarray(data[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != CHANNELS * PIXELS:
        raise DataError(
            f"{where}: expected (N, 3072) uint8 images, got {images.shape} {images.dtype}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"{where}: labels outside 0-9")
    return images, labels.astype(np.uint8)


def _read_archive(path: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of `names` (members `cifar-10-batches-py/<name>`) in the archive at `path`."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(f"{ARCHIVE_ROOT}/"):
                    short = name.removeprefix(f"{ARCHIVE_ROOT}/")
                    if short in names:
                        found[short] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        raise DataError(f"{path}: corrupt or truncated archive ({error})") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(
            f"{path}: no member {ARCHIVE_ROOT}/{missing[0]} (not CIFAR-10's python version)"
        )
    return found


def load_cifar10(directory: Path, download_hint: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": the five training batches concatenated (50,000 in the real data), "test"}: each
    (images (N, 3072) uint8, labels (N,) uint8), from the unpacked batches in `directory` (each may
    be gzipped) or else from `directory/cifar-10-python.tar.gz`; DataError naming both and
    `download_hint` when neither is there."""
    names = [*TRAIN_BATCHES, TEST_BATCH]
    unpacked = {}
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                unpacked[name] = candidate
                break
    archive = directory / ARCHIVE
    if len(unpacked) == len(names):
        raw = {name: read_maybe_gzipped(path) for name, path in unpacked.items()}
        where = {name: str(path) for name, path in unpacked.items()}
    elif archive.is_file():
        raw = _read_archive(archive, names)
        where = {name: f"{archive}:{ARCHIVE_ROOT}/{name}" for name in names}
    else:
        missing = [n for n in names if n not in unpacked]
        raise DataError(
            f"CIFAR-10: missing {', '.join(missing)} (or {ARCHIVE}) in {directory}. {download_hint}"
        )
    batches = {name: read_cifar_batch(raw[name], where[name]) for name in names}
    train = [batches[name] for name in TRAIN_BATCHES]
    return {
        "train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        "test": batches[TEST_BATCH],
    }


def pixel_sequences(images: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 rows (R, G, B planes of 32 x 32, row-major) -> (N, 1024, 3) uint8: pixel t
    (row t // 32, column t % 32) with its red, green and blue values."""
    return images.reshape(len(images), CHANNELS, PIXELS).transpose(0, 2, 1)
