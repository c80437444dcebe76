"""The data sets `seqbench data download` fetches: where from, their checksums, where they land.

Each `DataSet` names the files to transfer (`RemoteFile`: the primary URL first, then mirrors that
serve the same bytes), the SHA-256 and byte size of each file as published by a third party (the
source is cited beside each value), and how each file becomes what the readers under
`seqbench.tasks` read: decompressed (`gunzip`), unpacked (`tar.gz`, `zip`) or kept as it is
(`none`), at `destination`, a path relative to `paths.data_dir`.

A file with no published SHA-256 has `sha256=None` and says why in `checksum_source`; the
downloader refuses its data set rather than trust bytes it cannot verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: how a downloaded file becomes its destination
UNPACK_KINDS = ("gunzip", "tar.gz", "zip", "none")


@dataclass(frozen=True)
class RemoteFile:
    """One file to transfer and what it becomes under data_dir."""

    #: the file's name as downloaded (also names its `.part` file)
    name: str
    #: primary URL first, then mirrors serving the same bytes
    urls: tuple[str, ...]
    #: the published SHA-256 (64 lower-case hex digits), or None when none was found
    sha256: str | None
    #: the published size in bytes, or None when unknown
    size: int | None
    #: where the checksum and size were published (repository and path), or why there is none
    checksum_source: str
    #: gunzip, tar.gz, zip or none (see UNPACK_KINDS)
    unpack: str
    #: relative to data_dir: the file (gunzip, none) or the folder (tar.gz, zip) it becomes
    destination: str
    #: tar.gz and zip: the folder inside the archive whose contents land in `destination`
    archive_root: str = ""
    #: tar.gz and zip: only the members with these file names (anywhere under archive_root),
    #: placed directly in `destination`; empty: every member, keeping its sub-folders
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.unpack not in UNPACK_KINDS:
            raise ValueError(f"{self.name}: unpack {self.unpack!r} not in {UNPACK_KINDS}")

    @property
    def installs(self) -> tuple[str, ...]:
        """The paths under data_dir this file puts in place, each renamed in whole: the
        destination, or with `only` each chosen member in it."""
        if self.only:
            return tuple(f"{self.destination}/{member}" for member in self.only)
        return (self.destination,)


@dataclass(frozen=True)
class DataSet:
    """A data set the readers under `seqbench.tasks` can read once downloaded."""

    name: str
    description: str
    #: the task options that read it
    task: str
    #: the folder under data_dir the reader looks in
    folder: str
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)

    @property
    def installs(self) -> tuple[str, ...]:
        """The paths under data_dir this data set puts in place, each renamed in whole."""
        return tuple(dict.fromkeys(path for f in self.files for path in f.installs))

    @property
    def size(self) -> int | None:
        """Bytes to transfer, or None when a file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    @property
    def unverifiable(self) -> tuple[RemoteFile, ...]:
        """The files without a published SHA-256."""
        return tuple(f for f in self.files if f.sha256 is None)


TFDS_MNIST = "tensorflow/datasets tensorflow_datasets/url_checksums/mnist.txt"
MNIST_PRIMARY = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _mnist_file(stem: str, sha256: str, size: int) -> RemoteFile:
    name = f"{stem}.gz"
    return RemoteFile(
        name=name,
        urls=tuple(base + name for base in (MNIST_PRIMARY, *MNIST_MIRRORS)),
        sha256=sha256,
        size=size,
        checksum_source=TFDS_MNIST,
        unpack="gunzip",
        destination=f"mnist/{stem}",
    )


MNIST = DataSet(
    name="mnist",
    description="MNIST handwritten digits, the four IDX files (60,000 train / 10,000 test)",
    task="task=smnist or task=pmnist, task.source=files",
    folder="mnist",
    files=(
        _mnist_file(
            "train-images-idx3-ubyte",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9912422,
        ),
        _mnist_file(
            "train-labels-idx1-ubyte",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28881,
        ),
        _mnist_file(
            "t10k-images-idx3-ubyte",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1648877,
        ),
        _mnist_file(
            "t10k-labels-idx1-ubyte",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4542,
        ),
    ),
)

CIFAR10 = DataSet(
    name="cifar10",
    description="CIFAR-10, python version: data_batch_1..5, test_batch, batches.meta (for "
    "sequential CIFAR)",
    task="task=scifar (experiment=scifar_lru)",
    folder="cifar10",
    files=(
        RemoteFile(
            name="cifar-10-python.tar.gz",
            urls=(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "http://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            ),
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            size=170498071,
            checksum_source="sha256: tensorflow/datasets "
            "tensorflow_datasets/url_checksums/cifar10.csv (also keras datasets/cifar10.py "
            "file_hash); size: the Content-Length torchvision and keras downloads report",
            unpack="tar.gz",
            destination="cifar10",
            archive_root="cifar-10-batches-py",
        ),
    ),
)

BOULANGER = "http://www-etud.iro.umontreal.ca/~boulanni/"
BOULANGER_MIRROR = "http://www-ens.iro.umontreal.ca/~boulanni/"
WAYBACK_SOURCE = (
    "takakhoo/transformer-melody-generation data/SOURCES.md (SHA-256 and size of the Wayback "
    "Machine copy, measured by that project, not by the authors)"
)


def _music_file(
    file_name: str,
    sha256: str | None,
    size: int | None,
    source: str,
    wayback: str | None = None,
) -> RemoteFile:
    quoted = file_name.replace(" ", "%20")
    urls = [BOULANGER + quoted, BOULANGER_MIRROR + quoted]
    if wayback:
        urls.insert(
            1,
            f"https://web.archive.org/web/{wayback}id_/http://www-etud.iro.umontreal.ca:80/~boulanni/{quoted}",
        )
    return RemoteFile(
        name=file_name,
        urls=tuple(urls),
        sha256=sha256,
        size=size,
        checksum_source=source,
        unpack="none",
        destination=f"music/{file_name}",
    )


NO_MUSIC_CHECKSUM = (
    "none published: the original host is gone, the Wayback Machine has no copy and no "
    "project found lists its SHA-256"
)

MUSIC = tuple(
    DataSet(
        name=name,
        description=f"{label} piano rolls (Boulanger-Lewandowski et al. 2012), with its "
        "train/valid/test split",
        task=f"task=music task.source=files task.name={name}",
        folder="music",
        files=(remote,),
    )
    for name, label, remote in (
        (
            "jsb_chorales",
            "JSB Chorales",
            _music_file(
                "JSB Chorales.pickle",
                "69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c",
                2051809,
                WAYBACK_SOURCE,
                wayback="20141211164413",
            ),
        ),
        (
            "nottingham",
            "Nottingham",
            _music_file("Nottingham.pickle", None, None, NO_MUSIC_CHECKSUM),
        ),
        ("musedata", "MuseData", _music_file("MuseData.pickle", None, None, NO_MUSIC_CHECKSUM)),
        (
            "piano_midi",
            "Piano-midi.de",
            _music_file(
                "Piano-midi.de.pickle",
                "273d593b13d9a348410d261c0223d47523e2a9b41702137aaab5922242518296",
                7413484,
                WAYBACK_SOURCE,
                wayback="20141211164423",
            ),
        ),
    )
)

PTB_PRIMARY = "https://raw.githubusercontent.com/tomsercu/lstm/master/data/"
PTB_MIRROR = (
    "https://raw.githubusercontent.com/arthurdehgan/IFT6135_assignment_2/"
    "b4cb2f6996af3b90ebf905ed7b051362bd30ac5b/data/"
)
NO_PTB_CHECKSUM = (
    "none published: no project found lists a SHA-256 of the Penn Treebank character files "
    "(they come from Mikolov's simple-examples.tgz, itself published without one)"
)

PTB_CHAR = DataSet(
    name="ptb_char",
    description="Penn Treebank, character level (Mikolov et al.): ptb.char.{train,valid,test}.txt",
    task="task=text task.source=files task.corpus=ptb_char",
    folder="text",
    files=tuple(
        RemoteFile(
            name=f"ptb.char.{part}.txt",
            urls=(f"{PTB_PRIMARY}ptb.char.{part}.txt", f"{PTB_MIRROR}ptb.char.{part}.txt"),
            sha256=None,
            size=None,
            checksum_source=NO_PTB_CHECKSUM,
            unpack="none",
            destination=f"text/ptb.char.{part}.txt",
        )
        for part in ("train", "valid", "test")
    ),
)

TEXT8 = DataSet(
    name="text8",
    description="text8: the first 100,000,000 characters of cleaned English Wikipedia (Mahoney)",
    task="task=text task.source=files task.corpus=text8",
    folder="text",
    files=(
        RemoteFile(
            name="text8.zip",
            urls=("http://mattmahoney.net/dc/text8.zip", "https://data.deepai.org/text8.zip"),
            sha256=None,
            size=31344016,
            checksum_source="none published: TensorFlow's word2vec tutorial checks only the "
            "size (31,344,016 bytes, tensorflow/tensorflow "
            "tensorflow/examples/tutorials/word2vec/word2vec_basic.py); no SHA-256 was found",
            unpack="zip",
            destination="text",
            only=("text8",),
        ),
    ),
)

IMDB = DataSet(
    name="imdb",
    description="IMDB movie reviews (Maas et al. 2011): aclImdb/{train,test}/{pos,neg}/*.txt",
    task="task=imdb",
    folder="aclImdb",
    files=(
        RemoteFile(
            name="aclImdb_v1.tar.gz",
            urls=(
                "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            ),
            sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
            size=84125825,
            checksum_source="tensorflow/datasets tensorflow_datasets/url_checksums/imdb_reviews.txt",
            unpack="tar.gz",
            destination="aclImdb",
            archive_root="aclImdb",
        ),
    ),
)

#: the six long UEA sets of Walker et al. 2024 (Log-NCDE)
UEA_LONG = (
    "EigenWorms",
    "EthanolConcentration",
    "Heartbeat",
    "MotorImagery",
    "SelfRegulationSCP1",
    "SelfRegulationSCP2",
)
NO_UEA_CHECKSUM = (
    "none published: timeseriesclassification.com lists no checksum and no project found "
    "records one"
)

UEA = tuple(
    DataSet(
        name=name,
        description=f"UEA multivariate archive: {name}_TRAIN.ts and {name}_TEST.ts",
        task=f"task=uea task.source=files task.name={name}",
        folder=f"uea/{name}",
        files=(
            RemoteFile(
                name=f"{name}.zip",
                urls=(
                    f"https://www.timeseriesclassification.com/aeon-toolkit/{name}.zip",
                    f"http://www.timeseriesclassification.com/Downloads/{name}.zip",
                ),
                sha256=None,
                size=None,
                checksum_source=NO_UEA_CHECKSUM,
                unpack="zip",
                destination=f"uea/{name}",
                only=(f"{name}_TRAIN.ts", f"{name}_TEST.ts"),
            ),
        ),
    )
    for name in UEA_LONG
)

#: every data set, in the order `seqbench data list` shows them
CATALOG: dict[str, DataSet] = {
    entry.name: entry for entry in (MNIST, CIFAR10, *MUSIC, PTB_CHAR, TEXT8, IMDB, *UEA)
}


def find(name: str) -> DataSet | None:
    """The data set called `name` (case-insensitive), or None."""
    wanted = name.lower()
    return next((entry for key, entry in CATALOG.items() if key.lower() == wanted), None)
