"""`seqbench data download` against a local HTTP server on 127.0.0.1: fresh download, skip, checksum
mismatch, resume of a dropped transfer, mirror fallback, unreachable server, full disk, the CLI, and
the catalog's own consistency."""

import dataclasses
import gzip
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from datafiles import idx_bytes, write_imdb

from seqbench.cli.report import main
from seqbench.data import download as download_module
from seqbench.data.catalog import CATALOG, DataSet, RemoteFile
from seqbench.data.download import DownloadError, download, manifest_path, status
from seqbench.tasks.formats.idx import read_idx
from seqbench.tasks.imdb import review_files
from seqbench.tasks.mnist import load_idx_splits


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving `routes` {path: bytes} with Range support.

    `drop_after[path] = n` sends the full Content-Length but closes the connection after n bytes
    (once); `requests` records (path, Range header or None) of every request."""

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                requested_range = self.headers.get("Range")
                server.requests.append((self.path, requested_range))
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if requested_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start:cut])
                self.wfile.flush()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = FileServer()
    yield running
    running.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing"


def tiny_mnist() -> dict[str, bytes]:
    """{file name: gzipped IDX bytes} of a tiny MNIST in the real layout."""
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", 12), ("t10k", 6)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            out[f"{prefix}-{kind}-ubyte.gz"] = gzip.compress(idx_bytes(array), mtime=0)
    return out


def served_mnist(server, corrupt: str | None = None, primary_missing: bool = False):
    """The mnist catalog entry pointed at `server` (primary, then mirror), its checksums those of
    the tiny files; `corrupt` names a file served with one byte changed."""
    files = []
    for remote in CATALOG["mnist"].files:
        body = tiny_mnist()[remote.name]
        served = body if remote.name != corrupt else body[:-1] + bytes([body[-1] ^ 0xFF])
        server.routes[f"/mirror/{remote.name}"] = served
        if not primary_missing:
            server.routes[f"/primary/{remote.name}"] = served
        urls = (server.url(f"/primary/{remote.name}"), server.url(f"/mirror/{remote.name}"))
        files.append(dataclasses.replace(remote, urls=urls, sha256=sha256(body), size=len(body)))
    return dataclasses.replace(CATALOG["mnist"], files=tuple(files))


def test_fresh_download_unpacks_what_the_reader_reads_and_a_second_call_skips(server, tmp_path):
    entry = served_mnist(server)
    line = download(entry, tmp_path, progress=False)
    assert line.startswith("mnist: downloaded")
    images = read_idx(tmp_path / "mnist" / "train-images-idx3-ubyte")
    assert images.shape == (12, 28, 28)
    assert load_idx_splits(tmp_path / "mnist")["test"][0].shape == (6, 28, 28)
    assert status(entry, tmp_path) == "verified"
    assert not list(tmp_path.glob(".*unpacking*"))
    assert not (tmp_path / ".seqbench-downloads" / "mnist").exists()  # transfers cleaned up
    seen = len(server.requests)
    assert "already present and verified" in download(entry, tmp_path, progress=False)
    assert len(server.requests) == seen


def test_tar_gz_lands_in_the_folder_the_reader_reads(server, tmp_path):
    source = tmp_path / "source"
    write_imdb(source, copies=1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "aclImdb", arcname="aclImdb")
    body = buffer.getvalue()
    server.routes["/aclImdb_v1.tar.gz"] = body
    (remote,) = CATALOG["imdb"].files
    served = dataclasses.replace(
        remote, urls=(server.url("/aclImdb_v1.tar.gz"),), sha256=sha256(body), size=len(body)
    )
    entry = dataclasses.replace(CATALOG["imdb"], files=(served,))
    data_dir = tmp_path / "data"
    download(entry, data_dir, progress=False)
    files = review_files(data_dir / "aclImdb")
    assert len(files["train"]) == 6 and len(files["test"]) == 6


def test_zip_members_land_beside_each_other(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("EigenWorms/EigenWorms_TRAIN.ts", "train")
        bundle.writestr("EigenWorms/EigenWorms_TEST.ts", "test")
        bundle.writestr("EigenWorms/EigenWorms_TRAIN.arff", "unused")
    body = buffer.getvalue()
    server.routes["/EigenWorms.zip"] = body
    (remote,) = CATALOG["EigenWorms"].files
    served = dataclasses.replace(
        remote, urls=(server.url("/EigenWorms.zip"),), sha256=sha256(body), size=len(body)
    )
    entry = dataclasses.replace(CATALOG["EigenWorms"], files=(served,))
    download(entry, tmp_path, progress=False)
    folder = tmp_path / "uea" / "EigenWorms"
    assert sorted(p.name for p in folder.iterdir()) == ["EigenWorms_TEST.ts", "EigenWorms_TRAIN.ts"]


def test_checksum_mismatch_fails_with_one_line_and_leaves_nothing_usable(server, tmp_path):
    entry = served_mnist(server, corrupt="train-labels-idx1-ubyte.gz")
    with pytest.raises(DownloadError) as caught:
        download(entry, tmp_path, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "checksum mismatch" in message and "train-labels-idx1-ubyte.gz" in message
    assert not (tmp_path / "mnist").exists()
    assert status(entry, tmp_path) == "missing"
    work = tmp_path / ".seqbench-downloads" / "mnist"
    assert (work / "train-labels-idx1-ubyte.gz.corrupt").is_file()
    assert not (work / "train-labels-idx1-ubyte.gz.part").exists()


def test_dropped_connection_keeps_the_part_and_the_next_call_resumes_with_range(server, tmp_path):
    body = bytes(range(256)) * 400
    server.routes["/big.bin"] = body
    server.drop_after["/big.bin"] = 30_000
    remote = RemoteFile(
        name="big.bin",
        urls=(server.url("/big.bin"),),
        sha256=sha256(body),
        size=len(body),
        checksum_source="test",
        unpack="none",
        destination="blob/big.bin",
    )
    entry = dataclasses.replace(CATALOG["mnist"], name="blob", folder="blob", files=(remote,))
    with pytest.raises(DownloadError) as caught:
        download(entry, tmp_path, progress=False)
    assert "connection dropped" in str(caught.value) and "resume" in str(caught.value)
    part = tmp_path / ".seqbench-downloads" / "blob" / "big.bin.part"
    assert part.stat().st_size == 30_000
    assert not (tmp_path / "blob").exists()
    download(entry, tmp_path, progress=False)
    assert server.requests[-1] == ("/big.bin", "bytes=30000-")
    assert (tmp_path / "blob" / "big.bin").read_bytes() == body


def test_mirror_is_used_when_the_primary_answers_404(server, tmp_path):
    entry = served_mnist(server, primary_missing=True)
    download(entry, tmp_path, progress=False)
    paths = [path for path, _ in server.requests]
    assert "/primary/train-images-idx3-ubyte.gz" in paths
    assert "/mirror/train-images-idx3-ubyte.gz" in paths
    assert status(entry, tmp_path) == "verified"


def test_unreachable_server_fails_with_one_line_naming_the_urls(tmp_path):
    remote = dataclasses.replace(
        CATALOG["mnist"].files[0], urls=(closed_port_url(), closed_port_url())
    )
    entry = dataclasses.replace(CATALOG["mnist"], files=(remote,))
    with pytest.raises(DownloadError) as caught:
        download(entry, tmp_path, progress=False, timeout=5)
    message = str(caught.value)
    assert "\n" not in message and "cannot download" in message
    assert message.count("connection refused") == 2 and remote.urls[0] in message
    assert not (tmp_path / "mnist").exists()


def test_full_disk_is_one_line_before_any_transfer(server, tmp_path, monkeypatch):
    entry = served_mnist(server)
    monkeypatch.setattr(download_module, "free_space", lambda path: 1000)
    with pytest.raises(DownloadError, match=r"^mnist: needs .* free on "):
        download(entry, tmp_path, progress=False)
    assert server.requests == []


def test_an_entry_without_a_published_checksum_is_refused(tmp_path):
    with pytest.raises(DownloadError, match="no published SHA-256"):
        download(CATALOG["text8"], tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def unverifiable_text8(server, body: bytes, size: int | None) -> tuple[DataSet, bytes]:
    """The text8 entry (no published checksum) served by the local server, and its archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("text8", body)
    archive = buffer.getvalue()
    server.routes["/text8.zip"] = archive
    (remote,) = CATALOG["text8"].files
    assert remote.sha256 is None
    served = dataclasses.replace(
        remote,
        urls=(server.url("/text8.zip"),),
        size=len(archive) if size is None else size,
    )
    return dataclasses.replace(CATALOG["text8"], files=(served,)), archive


def test_accept_unverified_downloads_records_the_digest_and_never_says_verified(server, tmp_path):
    entry, archive = unverifiable_text8(server, b"anarchism originated as a term", None)
    line = download(entry, tmp_path, progress=False, accept_unverified=True)
    assert "NOT verified" in line and sha256(archive) in line
    assert (tmp_path / "text" / "text8").read_bytes() == b"anarchism originated as a term"
    manifest = json.loads(manifest_path(entry, tmp_path).read_text())
    assert manifest["files"] == {"text8.zip": sha256(archive)}
    assert manifest["unverified"] == ["text8.zip"]
    assert status(entry, tmp_path) == "present"  # never "verified": nothing vouches for it


def test_accept_unverified_still_checks_the_catalogued_size(server, tmp_path):
    entry, _ = unverifiable_text8(server, b"abc", size=10**6)
    with pytest.raises(DownloadError, match="size mismatch") as caught:
        download(entry, tmp_path, progress=False, accept_unverified=True)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "text").exists()


def test_cli_accept_unverified_flag(server, tmp_path, capsys, monkeypatch):
    entry, _ = unverifiable_text8(server, b"some words", None)
    monkeypatch.setitem(CATALOG, "text8", entry)
    with pytest.raises(SystemExit) as caught:
        main(["data", "download", "text8", "--data-dir", str(tmp_path)])
    assert caught.value.code == 1
    assert "--accept-unverified" in capsys.readouterr().err
    main(["data", "download", "text8", "--accept-unverified", "--data-dir", str(tmp_path)])
    assert capsys.readouterr().out.startswith("text8: downloaded and unpacked")


def test_every_entry_has_a_mirror_and_a_checksum_or_a_reason():
    assert {"mnist", "cifar10", "jsb_chorales", "ptb_char", "text8", "imdb"} <= set(CATALOG)
    for name in ("EigenWorms", "EthanolConcentration", "Heartbeat", "MotorImagery"):
        assert name in CATALOG
    for entry in CATALOG.values():
        assert entry.files and entry.task
        for remote in entry.files:
            assert len(remote.urls) >= 2, (entry.name, remote.name)
            assert all(url.startswith(("http://", "https://")) for url in remote.urls)
            if remote.sha256 is None:
                assert remote.checksum_source.startswith("none published"), remote.name
            else:
                assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256), remote.name
                assert "/" in remote.checksum_source  # a repository and path
            assert all(path.startswith(entry.folder) for path in remote.installs)


def test_cli_list_and_unknown_name(tmp_path, capsys):
    main(["data", "list", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert re.search(r"^mnist\s+.*missing\s+task=smnist", out, re.MULTILINE)
    assert "EigenWorms" in out
    with pytest.raises(SystemExit) as caught:
        main(["data", "download", "nosuch", "--data-dir", str(tmp_path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqbench: error: unknown data set 'nosuch'")
    assert "mnist" in err[0]
    assert not list(tmp_path.iterdir())


def test_cli_download_reports_one_line_and_lists_present(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(CATALOG, "mnist", served_mnist(server, primary_missing=True))
    main(["data", "download", "MNIST", "--data-dir", str(tmp_path)])
    assert capsys.readouterr().out.startswith("mnist: downloaded")
    main(["data", "list", "--data-dir", str(tmp_path)])
    assert re.search(r"^mnist\s+.*verified", capsys.readouterr().out, re.MULTILINE)
    monkeypatch.setitem(
        CATALOG,
        "mnist",
        dataclasses.replace(
            CATALOG["mnist"],
            files=tuple(
                dataclasses.replace(f, urls=(closed_port_url(),), sha256="0" * 64)
                for f in CATALOG["mnist"].files
            ),
        ),
    )
    with pytest.raises(SystemExit) as caught:
        main(["data", "download", "mnist", "--force", "--data-dir", str(tmp_path)])
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot download" in err[0]
