"""MNIST's IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a magic number
`00 00 <type> <ndim>`, `ndim` big-endian uint32 dimensions, then the data in row-major order."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from seqbench.tasks.formats.files import DataError, read_maybe_gzipped


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format; gzipped or not) as a uint8 array of the
    header's dimensions, e.g. (N, 28, 28) images or (N,) labels."""
    raw = read_maybe_gzipped(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: {len(raw) - header} data bytes, "
            f"the header promises {expected} ({' x '.join(map(str, dims))})"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)
