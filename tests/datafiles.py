"""Small data files in each data set's real format, for the tests that read them (the task tests
and the tiny training of every task option in test_task_training.py)."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) in MNIST's IDX format: magic 0x0000 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory, n_train=40, n_test=12, gz=False, seed=0):
    """The four IDX files in `directory`: random images whose first pixel encodes the image index
    (to trace examples through); returns {"train", "t10k"}: (images, labels)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, data in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_bytes(data)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (directory / name).write_bytes(raw)
        out[prefix] = (images, labels)
    return out


def cifar_batch_bytes(images, labels, batch_label=b"a batch"):
    """One CIFAR-10 python batch: a protocol-2 pickle of a dict with bytes keys, `images` (N, 3072)
    uint8 under b"data" and `labels` (a list of ints) under b"labels", as the published files."""
    batch = {
        b"batch_label": batch_label,
        b"labels": [int(y) for y in labels],
        b"data": np.asarray(images, np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar(data_dir, per_batch=4, n_test=6, seed=0):
    """<data_dir>/cifar10/cifar-10-python.tar.gz in the real layout (cifar-10-batches-py/ with
    data_batch_1..5, test_batch, batches.meta): random images whose first red value is the image's
    index in its split (to trace examples); returns {"train", "test"}: (images (N, 3072), labels)."""
    rng = np.random.default_rng(seed)
    members, out = {}, {}
    for split, names, n in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)], per_batch),
        ("test", ["test_batch"], n_test),
    ):
        images = rng.integers(0, 256, (n * len(names), 3072), dtype=np.uint8)
        images[:, 0] = np.arange(len(images))
        labels = rng.integers(0, 10, len(images))
        for i, name in enumerate(names):
            part = slice(i * n, (i + 1) * n)
            members[name] = cifar_batch_bytes(images[part], labels[part], name.encode())
        out[split] = (images, labels.astype(np.uint8))
    names = [f"class_{k}".encode() for k in range(10)]
    members["batches.meta"] = pickle.dumps({b"label_names": names}, protocol=2)
    folder = data_dir / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out


TS_HEADER = """# a tiny two-channel data set in the UEA .ts format
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true b a
@data
"""


def case_text(values, label):
    """One .ts data line: `values` (T, C) as channels separated by ':' and the label last."""
    return ":".join(",".join(f"{v:g}" for v in channel) for channel in values.T) + f":{label}"


def tiny_cases(n, seed, lengths):
    """n cases of 2 channels with the given lengths; channel 0 starts with the case number."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        values = np.round(rng.normal(3.0, 2.0, (lengths[i % len(lengths)], 2)), 3)
        values[0, 0] = 100 + i
        cases.append((values, "ab"[i % 2]))
    return cases


def write_uea(data_dir):
    """<data_dir>/uea/Tiny/Tiny_{TRAIN,TEST}.ts: 12 training cases (lengths 3-6), 4 test cases (the
    longest, 8 steps, is in test); one missing value in the training file."""
    folder = data_dir / "uea" / "Tiny"
    folder.mkdir(parents=True)
    train = [case_text(v, y) for v, y in tiny_cases(12, 0, [3, 4, 5, 6])]
    train[1] = "?" + train[1][train[1].index(",") :]  # a leading missing value in case 1
    test = [case_text(v, y) for v, y in tiny_cases(4, 1, [8, 2, 5, 7])]
    (folder / "Tiny_TRAIN.ts").write_text(TS_HEADER + "\n".join(train) + "\n")
    (folder / "Tiny_TEST.ts").write_text(TS_HEADER + "\n".join(test) + "\n")
    return data_dir


# each piece: a list of steps, each a tuple of active MIDI pitches, as in the published pickles
PIECES = {
    "train": [
        [(60, 64, 67), (60, 64), (), (21, 108), (62,)],
        [(48,), (48, 55), (72,)],
        [(60,), (62,), (64,), (65,), (67,), (69,)],
    ],
    "valid": [[(60, 64), (59, 62), (60,)], [(40,), (41,)]],
    "test": [
        [(60, 64), (60, 64), (62, 65), (64,)],
        [(60,), (), (67, 72), (60,), (62,), (64,), (60,)],
    ],
}


def write_pickle(directory, data=PIECES, name="JSB Chorales.pickle", compress=False):
    """A piano-roll pickle in <directory>/music/; returns its path."""
    path = directory / "music" / (name + (".gz" if compress else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = pickle.dumps(data, protocol=2)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


WORDS = "the cat sat on the mat and the dog ate the hat".split()


def ptb_char_line(rng, n_words=8):
    """A line in the PTB character format: characters separated by spaces, `_` between words."""
    words = rng.choice(WORDS, n_words)
    return " _ ".join(" ".join(word) for word in words)


def write_ptb(data_dir, lines=(200, 40, 40), extra_test=""):
    """<data_dir>/text/ptb.char.{train,valid,test}.txt; returns {part: text}."""
    folder = data_dir / "text"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texts = {}
    for part, n in zip(("train", "valid", "test"), lines, strict=True):
        text = (
            "\n".join(ptb_char_line(rng) for _ in range(n))
            + "\n"
            + (extra_test if part == "test" else "")
        )
        (folder / f"ptb.char.{part}.txt").write_text(text)
        texts[part] = text
    return texts


POSITIVE = ["A great, great film!<br /><br />Loved it.", "great acting and a great story", "fine"]
NEGATIVE = ["Awful. Truly awful film", "boring story; bad acting", "bad bad bad, the worst"]


def write_imdb(root, copies=4):
    """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt with the reviews above, `copies` times."""
    for split in ("train", "test"):
        for label, texts, rating in (("pos", POSITIVE, 9), ("neg", NEGATIVE, 2)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for k in range(copies):
                for i, text in enumerate(texts):
                    (folder / f"{k * 10 + i}_{rating}.txt").write_text(f"{text} review{k}")


def write_csv(data_dir, values, name="toy"):
    """<data_dir>/forecast/<name>.csv: a date column and the values."""
    folder = data_dir / "forecast"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["date,value", *(f"2000-{i},{v}" for i, v in enumerate(values))]
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
