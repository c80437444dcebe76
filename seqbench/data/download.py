"""Download, verify and unpack the data sets of `seqbench.data.catalog` into `paths.data_dir`.

`download(entry, data_dir)` fetches each file of a data set with urllib, trying its URLs in order
(the primary, then the mirrors). A transfer writes `<name>.part` in `<data_dir>/.seqbench-downloads/
<data set>/`; a dropped connection keeps it, and the next call resumes it with an HTTP Range
request (a server that ignores the range sends the whole file again). The SHA-256 of the whole file
is checked before anything is unpacked; a mismatch moves the file aside as `<name>.corrupt`, where
no reader looks, and tries the next URL. Unpacking writes into a temporary folder inside data_dir,
and each finished file or folder is then renamed into place, so a reader never sees a half-written
file. A manifest `<data_dir>/.seqbench-downloads/<data set>.json` records the checksums of what was
installed: a data set whose files are in place and whose manifest matches the catalog is skipped.

A data set with a file that has no published checksum is refused, unless the user accepts it
unverified (`--accept-unverified`): then that file's size is checked where the catalog knows it, the
SHA-256 of the bytes that arrived is printed and kept in the manifest (so a later download can be
compared with it), and `seqbench data list` shows the set as "present", never "verified". Every
failure is a
`DownloadError` whose message is one line: the URLs tried and why each failed (offline,
unreachable, HTTP status, checksum mismatch), or the full disk.

The `seqbench data list` and `seqbench data download` commands are `add_data_commands`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from tqdm import tqdm

from seqbench.cli import fail
from seqbench.config import PathsConfig
from seqbench.data.catalog import CATALOG, DataSet, RemoteFile, find
from seqbench.diskfull import describe, disk_fault, free_space, human_size, mount_point

#: the folder under data_dir holding partial transfers and the manifests
STATE_FOLDER = ".seqbench-downloads"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
USER_AGENT = "seqbench-data-download"


class DownloadError(Exception):
    """A data set that could not be downloaded; the message is one line."""


class _TransferFailed(Exception):
    """One URL that did not deliver the file; the message says why."""

    def __init__(self, reason: str, http_status: int | None = None):
        super().__init__(reason)
        self.http_status = http_status


def default_data_dir() -> Path:
    """$SEQBENCH_DATA, else paths.data_dir's default (as conf/config.yaml)."""
    return Path(os.environ.get("SEQBENCH_DATA") or PathsConfig.data_dir).expanduser()


def state_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FOLDER


def manifest_path(entry: DataSet, data_dir: Path) -> Path:
    return state_dir(data_dir) / f"{entry.name}.json"


def _checksums(entry: DataSet) -> dict[str, str | None]:
    return {remote.name: remote.sha256 for remote in entry.files}


def _sizes_match(path: Path, remote: RemoteFile) -> bool:
    return remote.size is None or path.stat().st_size == remote.size


def status(entry: DataSet, data_dir: Path) -> str:
    """ "verified" (in place, downloaded here with the catalog's checksums), "present" (in place,
    not verified), "partial" (some of it in place) or "missing"."""
    present = [(Path(data_dir) / path).exists() for path in entry.installs]
    if not all(present):
        return "partial" if any(present) else "missing"
    try:
        recorded = json.loads(manifest_path(entry, data_dir).read_text())
    except (OSError, ValueError):
        return "present"
    return "verified" if recorded.get("files") == _checksums(entry) else "present"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    """A few words for why a connection failed."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return (
            _reason(error.reason) if isinstance(error.reason, BaseException) else str(error.reason)
        )
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, socket.gaierror):
        return "host not found"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionError | http.client.HTTPException):
        return f"connection dropped ({type(error).__name__})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except (OSError, http.client.HTTPException) as error:  # URLError and HTTPError are OSErrors
        code = error.code if isinstance(error, urllib.error.HTTPError) else None
        raise _TransferFailed(_reason(error), code) from None


def _transfer(url: str, part: Path, remote: RemoteFile, progress: bool, timeout: float) -> None:
    """Bring `part` to the whole file from `url`, resuming what it already holds."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset >= remote.size:
        if offset == remote.size:
            return  # complete from an earlier call; the caller verifies it
        part.unlink()
        offset = 0
    try:
        response = _open(url, offset, timeout)
    except _TransferFailed as failure:
        if not offset or failure.http_status != 416:
            raise
        part.unlink()  # the partial file is longer than what the server holds
        offset = 0
        response = _open(url, offset, timeout)
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the range and sends the whole file
        elif offset and not response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"
        ):
            raise _TransferFailed("the server answered a different byte range")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else remote.size
        received = offset
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=remote.name,
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise _TransferFailed(
                        f"{_reason(error)} after {human_size(received)}"
                    ) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _TransferFailed(
            f"connection dropped after {human_size(received)} of {human_size(total)}"
        )


def _mismatch(part: Path, remote: RemoteFile) -> str | None:
    """Why the transferred `part` is not `remote`'s file (its published SHA-256; without one, the
    catalogued size where known), or None when it is."""
    if remote.sha256 is None:
        if _sizes_match(part, remote):
            return None
        return f"size mismatch: {part.stat().st_size:,} bytes, expected {remote.size:,}"
    digest = sha256_of(part)
    if digest == remote.sha256:
        return None
    return f"checksum mismatch: SHA-256 {digest[:16]}..., expected {remote.sha256[:16]}..."


def fetch(
    remote: RemoteFile, work: Path, progress: bool = True, timeout: float = TIMEOUT_S
) -> Path:
    """The verified file in `work`, transferred from the first of `remote.urls` that delivers
    bytes with the published SHA-256 (for a file without one, which `download` only fetches when
    the user accepts it unverified: bytes of the catalog's size, where it knows the size);
    DownloadError (one line) when none does."""
    done = work / remote.name
    if done.is_file() and _mismatch(done, remote) is None:
        return done  # checked by an earlier call that stopped before unpacking
    part = work / f"{remote.name}.part"
    failures, mismatched = [], False
    for url in remote.urls:
        try:
            _transfer(url, part, remote, progress, timeout)
        except _TransferFailed as failure:
            failures.append(f"{url} ({failure})")
            continue
        problem = _mismatch(part, remote)
        if problem is not None:
            aside = work / f"{remote.name}.corrupt"
            os.replace(part, aside)
            mismatched = True
            failures.append(f"{url} ({problem}; moved aside to {aside.name}, never used)")
            continue
        os.replace(part, done)
        return done
    what = "checksum mismatch" if mismatched else "cannot download (offline or unreachable?)"
    kept = (
        f"; {human_size(part.stat().st_size)} kept in {part}: run the command again to resume"
        if part.exists() and part.stat().st_size
        else ""
    )
    raise DownloadError(f"{remote.name}: {what}: tried {'; '.join(failures)}{kept}")


def _member_path(name: str, root: str) -> PurePosixPath | None:
    """`name` relative to `root` inside an archive, or None when it lies outside it or could
    escape the folder it is unpacked into."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    root_parts = [part for part in PurePosixPath(root).parts if part != "."] if root else []
    if parts[: len(root_parts)] != root_parts:
        return None
    parts = parts[len(root_parts) :]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _member_target(remote: RemoteFile, name: str, staging: Path) -> Path | None:
    relative = _member_path(name, remote.archive_root)
    if relative is None:
        return None
    if remote.only:
        return (
            staging / remote.destination / relative.name if relative.name in remote.only else None
        )
    return staging / remote.destination / relative


def _write(source: IO[bytes] | BinaryIO, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def unpack(remote: RemoteFile, archive: Path, staging: Path) -> None:
    """Turn the verified `archive` into `staging/<destination>` as `remote.unpack` says."""
    try:
        if remote.unpack == "none":
            target = staging / remote.destination
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(archive, target)
        elif remote.unpack == "gunzip":
            with gzip.open(archive, "rb") as source:
                _write(source, staging / remote.destination)
        elif remote.unpack == "tar.gz":
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    target = _member_target(remote, member.name, staging)
                    if target is not None and member.isfile():
                        _write(tar.extractfile(member), target)  # type: ignore[arg-type]
        else:
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    target = _member_target(remote, info.filename, staging)
                    if target is not None and not info.is_dir():
                        with bundle.open(info) as source:
                            _write(source, target)
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as error:
        if isinstance(error, OSError) and disk_fault(error) is not None:
            raise
        raise DownloadError(f"{remote.name}: cannot unpack ({error})") from None


def _replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`; a folder already there is renamed aside first, then removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
        os.replace(target, aside / target.name)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)


def install(entry: DataSet, archives: list[Path], data_dir: Path) -> None:
    """Unpack the verified `archives` into a temporary folder in `data_dir`, then rename each
    path of `entry.installs` into place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", suffix=".unpacking", dir=data_dir))
    try:
        for remote, archive in zip(entry.files, archives, strict=True):
            unpack(remote, archive, staging)
        missing = [path for path in entry.installs if not (staging / path).exists()]
        if missing:
            raise DownloadError(f"{entry.name}: the archives hold no {', '.join(missing)}")
        for path in entry.installs:
            _replace(staging / path, data_dir / path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(entry: DataSet, data_dir: Path, unverified: dict[str, str]) -> None:
    """The manifest of what was installed: the catalog's checksums, the SHA-256 of the bytes that
    arrived for each file accepted without one in `unverified` {file: digest}."""
    path = manifest_path(entry, data_dir)
    files = {**_checksums(entry), **unverified}
    record = {"name": entry.name, "files": files, "installs": entry.installs}
    if unverified:
        record["unverified"] = sorted(unverified)
    text = json.dumps(record)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
    os.replace(temporary, path)


def _check_space(entry: DataSet, work: Path) -> None:
    needed = sum(
        max(remote.size - _size(work / f"{remote.name}.part"), 0)
        for remote in entry.files
        if remote.size is not None and not (work / remote.name).is_file()
    )
    free = free_space(work)
    if free is not None and needed > free:
        raise DownloadError(
            f"{entry.name}: needs {human_size(needed)} to download, "
            f"{human_size(free)} free on {mount_point(work)}"
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@contextmanager
def _disk_faults(entry: DataSet, where: Path) -> Iterator[None]:
    """OSErrors of the local file system as one-line DownloadErrors."""
    try:
        yield
    except OSError as error:
        fault = disk_fault(error)
        if fault is not None:
            raise DownloadError(f"{entry.name}: {describe(fault, where)}") from None
        shown = error.filename or where
        raise DownloadError(f"{entry.name}: {error.strerror or error} ({shown})") from None


def download(
    entry: DataSet,
    data_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
    accept_unverified: bool = False,
) -> str:
    """Download, verify and install `entry` under `data_dir`; the line saying what was done.
    A file without a published checksum is refused unless `accept_unverified`. DownloadError
    (one line) when it cannot."""
    data_dir = Path(data_dir).expanduser()
    target = data_dir / entry.folder
    if entry.unverifiable and not accept_unverified:
        names = ", ".join(remote.name for remote in entry.unverifiable)
        raise DownloadError(
            f"{entry.name}: refused, no published SHA-256 for {names} "
            f"({entry.unverifiable[0].checksum_source}); place the files in {target} by hand, "
            "or download them with --accept-unverified"
        )
    state = status(entry, data_dir)
    if state == "verified" and not force:
        return f"{entry.name}: already present and verified in {target}"
    if state == "present" and not force:
        return (
            f"{entry.name}: already present in {target} (placed by hand, not verified; "
            "--force downloads it again)"
        )
    work = state_dir(data_dir) / entry.name
    with _disk_faults(entry, work):
        work.mkdir(parents=True, exist_ok=True)
        _check_space(entry, work)
        try:
            archives = [fetch(remote, work, progress, timeout) for remote in entry.files]
        except DownloadError as error:
            with suppress(OSError):
                work.rmdir()  # only when no partial transfer is kept
            raise DownloadError(f"{entry.name}: {error}") from None
        unverified = {
            remote.name: sha256_of(archive)
            for remote, archive in zip(entry.files, archives, strict=True)
            if remote.sha256 is None
        }
        install(entry, archives, data_dir)
        _write_manifest(entry, data_dir, unverified)
        shutil.rmtree(work, ignore_errors=True)
    if unverified:
        digests = ", ".join(f"{name} SHA-256 {digest}" for name, digest in unverified.items())
        return (
            f"{entry.name}: downloaded and unpacked into {target}, NOT verified (no published "
            f"checksum): {digests}"
        )
    return f"{entry.name}: downloaded, verified and unpacked into {target}"


def resolve(names: list[str]) -> list[DataSet]:
    """The data sets named (or every one for "all"); ValueError naming the unknown ones and
    listing the known names."""
    if any(name.lower() == "all" for name in names):
        return list(CATALOG.values())
    unknown = [name for name in names if find(name) is None]
    if unknown:
        raise ValueError(
            f"unknown data set {', '.join(map(repr, unknown))}; known: {', '.join(CATALOG)}, all"
        )
    return list(dict.fromkeys(find(name) for name in names))  # type: ignore[arg-type]


def cmd_data_list(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    print(f"data_dir: {data_dir}")
    for entry in CATALOG.values():
        size = human_size(entry.size) if entry.size is not None else "?"
        state = status(entry, data_dir)
        checked = (
            ""
            if not entry.unverifiable
            else "  (no published checksum: place by hand or --accept-unverified)"
        )
        print(f"{entry.name:<22} {size:>10}  {state:<8}  {entry.task}{checked}")


def cmd_data_download(args: argparse.Namespace) -> None:
    try:
        entries = resolve(args.names)
    except ValueError as error:
        fail("seqbench", str(error))
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    every = any(name.lower() == "all" for name in args.names)
    failed = False
    for entry in entries:
        if every and entry.unverifiable and not args.accept_unverified:
            print(
                f"seqbench: skipping {entry.name}: no published checksum (--accept-unverified "
                "downloads it)",
                file=sys.stderr,
            )
            continue
        try:
            line = download(
                entry, data_dir, force=args.force, accept_unverified=args.accept_unverified
            )
            print(line, flush=True)
        except DownloadError as error:
            print(f"seqbench: error: {error}", file=sys.stderr, flush=True)
            failed = True
    if failed:
        raise SystemExit(1)


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    """Add `data list` and `data download` to the `seqbench` command's subparsers."""
    data = commands.add_parser("data", help="list and download the real data sets")
    actions = data.add_subparsers(dest="data_command", required=True)
    where = "the data folder (default: $SEQBENCH_DATA, else ~/.cache/seqbench/data)"
    listing = actions.add_parser("list", help="the data sets, their size and whether present")
    listing.add_argument("--data-dir", help=where)
    listing.set_defaults(func=cmd_data_list)
    fetching = actions.add_parser(
        "download", help="download, verify and unpack data sets into the data folder"
    )
    fetching.add_argument(
        "names", nargs="+", metavar="NAME", help="data sets (see `seqbench data list`) or all"
    )
    fetching.add_argument("--data-dir", help=where)
    fetching.add_argument(
        "--force", action="store_true", help="download again what is already in place"
    )
    fetching.add_argument(
        "--accept-unverified",
        action="store_true",
        help="also download the data sets whose files have no published checksum; the SHA-256 "
        "of what arrived is printed and kept in the manifest, but nothing vouches for those bytes",
    )
    fetching.set_defaults(func=cmd_data_download)
