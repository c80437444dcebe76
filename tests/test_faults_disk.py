"""A full disk under a run: one line and exit status 1, the record marked failed, nothing earlier
lost, the run resumable; under wandb's folder: one warning and training goes on.

Where this process may mount file systems (root in a sandbox), a 200 KB tmpfs gives the real
thing; elsewhere those tests are skipped and the failure is injected where orbax and the record
writer would meet it.
"""

import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from seqbench import diskfull
from seqbench.records import ModelInfo, RunRecord, TaskInfo, load_record, write_json_atomic

ENOSPC_TEXT = (
    'RESOURCE_EXHAUSTED: Error writing "params.w/0.0" in OCDBT database at local file '
    '"{dir}/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: '
    '"{dir}/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/d/9e1": Failed to '
    "write 2557 bytes to file 8: No space left on device [os_error_code='28']"
)
ECHOES = ("Traceback", "Logging error", "HYDRA_FULL_ERROR", "RESOURCE_EXHAUSTED")


def test_disk_faults_are_recognised_and_named():
    enospc = OSError(errno.ENOSPC, "No space left on device", "/data/run/run.json")
    fault = diskfull.disk_fault(enospc)
    assert fault == diskfull.DiskFault(errno.ENOSPC, Path("/data/run/run.json"))
    try:  # found behind a later error too
        try:
            raise enospc
        except OSError:
            raise RuntimeError("while saving") from None
    except RuntimeError as later:
        assert diskfull.disk_fault(later) == fault
    orbax = diskfull.disk_fault(ValueError(ENOSPC_TEXT.format(dir="/data/run/checkpoints")))
    assert orbax.errno == errno.ENOSPC
    line = diskfull.describe(orbax)  # orbax's temporary file is shown as its checkpoint
    assert line.startswith("no space left on device writing /data/run/checkpoints/4 (")
    assert " free on /" in line
    readonly = OSError(errno.EROFS, "Read-only file system", "/data/x")
    assert diskfull.describe(diskfull.disk_fault(readonly)).startswith("read-only file system")
    for other in (OSError(errno.EACCES, "Permission denied", "/x"), ValueError("bad shape"), None):
        assert diskfull.disk_fault(other) is None
    assert [diskfull.human_size(n) for n in (0, 1536, 1020 << 10, 5 << 30)] == [
        "0 B",
        "1.5 KiB",
        "1020 KiB",
        "5 GiB",
    ]


def small_record(status):
    """A run record with the least a writer needs: one seed of `adding` on an LSTM."""
    task = TaskInfo("adding", "adding", "adding", None, {"mse": "min"}, "mse", {"mse": None})
    model = ModelInfo("lstm", param_count=1, hidden_size=1)
    return RunRecord(name="t", status=status, config={}, task=task, model=model, seeds=[0])


def full_disk_on_fsync(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_record_that_cannot_be_rewritten_is_left_as_it_was(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"status": "running"})
    before = path.read_text()
    full_disk_on_fsync(monkeypatch)
    with pytest.raises(OSError) as raised:
        write_json_atomic(path, {"status": "failed"})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    record = small_record("running")
    with pytest.raises(SystemExit) as exited:
        diskfull.fail_on_disk_fault(raised.value, path, record)
    assert exited.value.code == 1
    assert path.read_text() == before, "the previous record must stay intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"], "temporary files left"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"seqbench-train: error: no space left on device writing {path} (")
    assert lines[0].endswith(f"; {path} could not be updated")
    assert record.status == "failed" and record.error in lines[0]


def test_a_full_disk_at_a_checkpoint_fails_the_run_in_one_line_and_it_resumes(
    compose_config, tmp_path, monkeypatch, capsys
):
    from seqbench.cli.train import train_from_config
    from seqbench.store import validate
    from seqbench.train.checkpoint import Checkpointer

    save = Checkpointer.save

    def save_until_the_disk_is_full(self, step, *args, **kwargs):
        if step < 4:
            return save(self, step, *args, **kwargs)
        partial = self.directory / "4.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
        partial.mkdir(parents=True)
        (partial / "chunk").write_bytes(b"\0" * 1000)
        raise ValueError(ENOSPC_TEXT.format(dir=self.directory))

    composed = compose_config(["experiment=smoke", "trainer.steps=6"])
    resolved = OmegaConf.to_container(composed, resolve=True)
    resolved.pop("hydra", None)
    cfg = validate(composed)
    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", save_until_the_disk_is_full)
        with pytest.raises(SystemExit) as exited:
            train_from_config(cfg, resolved, tmp_path)
    assert exited.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith("[seqbench] ")] == err[-1:]
    checkpoints = tmp_path / "checkpoints"
    assert err[-1].startswith(
        f"seqbench-train: error: no space left on device writing {checkpoints / '4'} ("
    )
    assert err[-1].endswith(
        f"; run marked failed in {tmp_path / 'run.json'}; "
        f"free some space and rerun with hydra.run.dir={tmp_path} (or resume=auto) "
        "to resume from step 2"
    )
    record = load_record(tmp_path)
    assert record.status == "failed" and record.finished
    assert err[-1] == f"seqbench-train: error: {record.error}; " + err[-1].split("; ", 1)[1]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["2"], "partial checkpoint left"
    assert not list(tmp_path.glob(".run.json.*")), "temporary record left"

    resumed = train_from_config(cfg, resolved, tmp_path)  # with room again: from step 2
    assert resumed.status == "completed"
    assert resumed.timing.resumed_from_step == 2
    assert load_record(tmp_path).curves.eval_steps == [0, 2, 4, 6]


def test_hydra_s_own_writes_on_a_full_disk_are_one_line(monkeypatch, capsys):
    from hydra._internal import utils

    monkeypatch.setattr(utils, "run_and_report", utils.run_and_report)  # restored afterwards
    diskfull.guard_hydra()

    def save_config():
        with open(os.devnull, "w") as file:  # noqa: F841 (the open file names the path)
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SystemExit) as exited:
        utils.run_and_report(save_config)
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"seqbench-train: error: no space left on device writing {os.devnull}"
    )

    def bug():
        raise KeyError("a programming error")

    with pytest.raises(SystemExit):  # anything else: Hydra's report, traceback included
        utils.run_and_report(bug)
    assert "KeyError" in capsys.readouterr().err


class FullDiskStream:
    """A log file on a full disk."""

    def write(self, text):
        return len(text)

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_log_handlers_on_a_full_disk_stay_silent_and_orbax_s_echo_is_dropped(monkeypatch, capsys):
    monkeypatch.setattr(logging.Handler, "handleError", logging.Handler.handleError)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    for name in diskfull.ECHO_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    diskfull.quiet_disk_faults()
    logger = logging.getLogger(f"wandb.test-{uuid.uuid4().hex}")
    logger.propagate = False
    handler = logging.StreamHandler(FullDiskStream())
    logger.addHandler(handler)
    logger.error("written to debug.log")
    assert capsys.readouterr().err == ""
    handler.stream = None  # a genuine bug in a handler is still reported
    logger.error("again")
    assert "--- Logging error ---" in capsys.readouterr().err
    absl = logging.getLogger("absl")
    with caught_records(absl) as kept:
        absl.error("_SignalingThread.run() raised an exception: %s", ENOSPC_TEXT)
        absl.error("something else")
    assert [r.getMessage() for r in kept] == ["something else"]


def test_asyncio_s_record_of_orbax_s_other_failed_writes_is_dropped(monkeypatch):
    """orbax's concurrent array writes that fail too are never retrieved: asyncio logs each
    (with a traceback, through Hydra's console handler) when the task is collected."""
    asyncio_logger = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_logger, "filters", [])
    diskfull.quiet_disk_faults()

    async def write(text):
        raise ValueError(text)

    def abandoned_write(text):
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(write(text))
            loop.run_until_complete(asyncio.sleep(0))
            assert task.done()
            del task  # never retrieved: logged when collected
            gc.collect()
        finally:
            loop.close()

    with caught_records(asyncio_logger) as kept:
        abandoned_write(ENOSPC_TEXT)
        abandoned_write("a bug of its own")
    assert len(kept) == 1, [r.getMessage() for r in kept]
    assert "Task exception was never retrieved" in kept[0].getMessage()
    assert "a bug of its own" in repr(kept[0].exc_info[1])


@contextlib.contextmanager
def caught_records(logger):
    """The records that reach a handler of `logger` (after its filters) inside the block."""
    kept = []
    logger.addHandler(catcher := logging.Handler())
    catcher.emit = kept.append
    try:
        yield kept
    finally:
        logger.removeHandler(catcher)


class FakeRun:
    def __init__(self, calls):
        self.id, self.calls, self.summary = uuid.uuid4().hex[:8], calls, {}

    def log(self, row, step):
        self.calls.append(("log", step))

    def define_metric(self, name, **kwargs):
        pass

    def finish(self, exit_code=0, quiet=None):
        self.calls.append(("finish", exit_code))


def fake_wandb(monkeypatch, calls):
    import types

    module = types.SimpleNamespace(
        Settings=lambda **kwargs: kwargs, init=lambda **kwargs: FakeRun(calls)
    )
    monkeypatch.setitem(sys.modules, "wandb", module)


def make_wandb_tracker(tmp_path):
    from seqbench.config import LoggerConfig
    from seqbench.tracking import WandbTracker

    record = small_record("running")
    return WandbTracker(
        LoggerConfig(backends=["wandb"], dir=str(tmp_path / "wandb")), {}, record, tmp_path
    )


def test_wandb_on_a_full_disk_warns_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from seqbench import tracking

    calls = []
    fake_wandb(monkeypatch, calls)
    free = {"bytes": 200 << 10}
    monkeypatch.setattr(tracking, "free_space", lambda path: free["bytes"])
    tracker = make_wandb_tracker(tmp_path)  # 200 KiB: not started at all
    assert not tracker.active and calls == []
    line = capsys.readouterr().err.strip()
    assert line == (
        f"seqbench: warning: wandb could not start (no space left on device under "
        f"{tmp_path / 'wandb'}: 200 KiB free on {diskfull.mount_point(tmp_path)}, less than the "
        "1 MiB it needs); training goes on with the local run record only"
    )

    free["bytes"] = 1 << 30  # room at the start, then the disk fills up
    tracker = make_wandb_tracker(tmp_path)
    metrics = {"val/mse": np.array([0.5])}
    tracker.log_eval(0, metrics, None)
    free["bytes"] = 10 << 10
    tracker.log_eval(2, metrics, None)
    tracker.log_eval(4, metrics, None)
    tracker.finish(small_record("completed"))
    assert calls == [("log", 0), ("finish", 1)]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqbench: warning: wandb could not log (")


# --- on a real full file system (a tmpfs; root only) ------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """small_tmpfs(size) -> a fresh tmpfs of `size` (e.g. "200k"), unmounted afterwards."""
    mounted = []

    def mount(size):
        where = tmp_path / f"full{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root in a sandbox)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def console_lines(done):
    """stderr's lines without the run's start line, after checking stdout and stderr are clean."""
    echoed = any(echo in done.stderr + done.stdout for echo in ECHOES)
    assert not echoed, f"{done.stderr}\n--- stdout ---\n{done.stdout}"
    return [line for line in done.stderr.splitlines() if not line.startswith("[seqbench] ")]


def test_a_full_run_folder_is_one_line_and_a_failed_record(run_cli, small_tmpfs):
    # one checkpoint fits, the second one does not: on a tmpfs the run's other files take about
    # 28 KiB and each checkpoint about 156 KiB (a run of 2 steps used 184 KiB, of 4 steps 340 KiB)
    full = small_tmpfs("260k")
    done = run_cli("experiment=smoke", "trainer.steps=6", f"hydra.run.dir={full / 'run'}")
    assert done.returncode == 1, done.stderr
    lines = console_lines(done)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"seqbench-train: error: no space left on device writing {full / 'run' / 'checkpoints'}/"
    )
    checkpoints = sorted(p.name for p in (full / "run" / "checkpoints").iterdir())
    record = json.loads((full / "run" / "run.json").read_text())
    if checkpoints == ["2", "4"]:
        # the second checkpoint fitted after all (its size moves by a page or two with what its
        # files record) and the third did not; the line still says where a rerun resumes
        assert f"free on {full});" in lines[0] and "to resume from step 4" in lines[0], lines[0]
        marked = "run marked failed in" in lines[0]
        assert marked or "could not be updated" in lines[0], lines[0]
        assert record["status"] == ("failed" if marked else "running")
    else:
        assert f"free on {full}); run marked failed in {full / 'run' / 'run.json'}" in lines[0]
        assert record["status"] == "failed" and record["error"] in lines[0]
        assert checkpoints == ["2"], lines[0]
    assert not list((full / "run").glob(".run.json.*"))


@pytest.mark.slow
def test_hydra_writing_into_a_full_folder_is_one_line(run_cli, small_tmpfs):
    full = small_tmpfs("200k")
    fill(full)
    done = run_cli("experiment=smoke", f"hydra.run.dir={full / 'run'}")
    assert done.returncode == 1, done.stderr
    assert console_lines(done) == [
        f"seqbench-train: error: no space left on device writing "
        f"{full / 'run' / '.hydra' / 'config.yaml'} (0 B free on {full})"
    ]


@pytest.mark.slow
def test_a_full_wandb_folder_warns_once_and_the_run_completes(run_cli, small_tmpfs, tmp_path):
    full = small_tmpfs("200k")
    args = ("experiment=smoke", "logger=wandb", "logger.mode=offline")
    done = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", f"logger.dir={full / 'wandb'}")
    assert done.returncode == 0, done.stderr
    lines = console_lines(done)
    assert len(lines) == 1 and lines[0].startswith("seqbench: warning: wandb could not start ("), (
        done.stderr
    )
    assert load_record(tmp_path / "run").status == "completed"
    # below the margin wandb is not even started; on a disk full from the start wandb's own
    # writes fail everywhere, and its logging errors must still stay off the console
    fill(full)
    prelude = "import sys, seqbench.tracking as t; t.WANDB_MIN_FREE = 0; sys.argv[0] = 'x'"
    more = (f"hydra.run.dir={tmp_path / 'run2'}", f"logger.dir={full / 'wandb2'}")
    again = run_cli(*args, *more, prelude=prelude, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lines = console_lines(again)
    assert len(lines) == 1 and lines[0].startswith("seqbench: warning: wandb could not "), (
        again.stderr
    )
