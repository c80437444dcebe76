"""The lifetime of one training job: its folder lock and how it stops when asked to.

Folder lock: a job holds an exclusive `flock` on `<folder>/run.lock` (which names its pid) for as
long as it runs, so a second job in the same folder is refused with one line before it reads or
writes anything there. The operating system drops the lock when the process ends, however it ends
(kill -9 included), so no stale lock is ever left. `FolderLockCallback` (a Hydra callback) takes
the lock of a single run's `hydra.run.dir`, or of a sweep's `hydra.sweep.dir`, before Hydra writes
its own files there; `JobGuard.lock` takes (or shares) the lock of the folder a job records into.

Stop requests: while a `JobGuard` is active, SIGINT and SIGTERM only ask the job to stop; training
stops at the next chunk boundary, saves a checkpoint and raises `TrainingStopped`, and the job is
recorded `interrupted` (resumable). A second signal ends the process at once, even in the middle of
a device computation (the last checkpoint stays usable). Handlers are
installed only where the process still has Python's defaults: a launcher that owns a signal
(submitit's SIGTERM and SIGUSR2 handlers, SIG_IGN in a background job) keeps it.

Finished runs' Hydra files: Hydra writes `<job folder>/.hydra/{config,hydra,overrides}.yaml` before a
job starts, so a sweep run again to finish its remaining jobs would overwrite, in every finished
job's folder, the files that say how that run was configured with what the current code composes;
`keep_finished_runs_hydra_files` makes Hydra leave them alone where the folder's run.json records a
finished run (the job is then skipped).

Launcher watch: a job running in a worker process of a pool (joblib/loky under
`hydra/launcher=local_parallel`) watches its parent; when the parent is gone (killed), the job
stops the same way, and if it has not ended `GRACE_S` seconds later, the worker exits hard.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None

LOCK_NAME = "run.lock"
#: seconds between two looks at the parent process, and an orphaned worker's time to stop cleanly
POLL_S, GRACE_S = 1.0, 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: the exit status of a job stopped because its launching process is gone (as if hung up)
ORPHANED_SIGNAL = getattr(signal, "SIGHUP", signal.SIGTERM)


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock (one line)."""

    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(
            f"output directory {folder} is in use by another run (pid {holder or 'unknown'}); "
            "wait for it to end or choose another output directory (nothing was changed)"
        )


class TrainingStopped(Exception):
    """Training stopped at a chunk boundary because a stop was requested.

    step: the steps done; checkpointed: whether a checkpoint of that step is on disk.
    """

    def __init__(self, step: int, checkpointed: bool) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step
        self.checkpointed = checkpointed


class Interrupted(Exception):
    """A job stopped on request and recorded as "interrupted": its one line and exit status."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.line = line
        self.exit_code = exit_code


class FolderLock:
    """An exclusive lock on `<folder>/run.lock`, which holds the holder's pid while it is held."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Create the folder and take the lock; FolderBusy if another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(self.folder, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def _read_pid(fd: int) -> str:
    for _ in range(5):  # the holder writes its pid just after taking the lock
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return ""


#: folder (real path) -> [lock, users]: jobs, guards and callbacks of one process share a lock
_HELD: dict[str, list[Any]] = {}


def lock_folder(folder: Path) -> str:
    """Take the lock of `folder` for this process (or share the one it already holds); the key
    to give `unlock_folder`. Raises FolderBusy, or OSError when the folder cannot be written."""
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    lock = FolderLock(Path(folder))
    lock.acquire()
    _HELD[key] = [lock, 1]
    return key


def unlock_folder(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        held[0].release()
        del _HELD[key]


class FolderLockCallback(Callback):
    """Hydra callback: lock a single run's folder, or a sweep's folder, for the whole command,
    before Hydra writes its config files and log there."""

    def __init__(self) -> None:
        self.key: str | None = None

    def _lock(self, folder: Any) -> None:
        try:
            self.key = lock_folder(Path(str(folder)))
        except FolderBusy as error:
            print(f"seqbench-train: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError:  # unwritable: the job's own checks report it in one line
            self.key = None

    def _unlock(self) -> None:
        if self.key is not None:
            unlock_folder(self.key)
            self.key = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._lock(config.hydra.run.dir)

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        self._unlock()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._lock(config.hydra.sweep.dir)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self._unlock()


@dataclass(frozen=True)
class Stop:
    """What asked a job to stop: the signal (its exit status is 128 + signum) and in words."""

    signum: int
    by: str

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def in_pool_worker() -> bool:
    """Whether this process is a worker started by a multiprocessing-style pool (joblib/loky)."""
    return multiprocessing.parent_process() is not None


class JobGuard:
    """Stop requests and folder locks for the duration of one job (a context manager)."""

    def __init__(self, watch_parent: bool | None = None) -> None:
        self.stop: Stop | None = None
        self.worker = in_pool_worker() if watch_parent is None else watch_parent
        self._previous: dict[int, Any] = {}
        self._keys: list[str] = []
        self._ended = threading.Event()
        self._wakeup: tuple[int, int] | None = None  # (previous wakeup fd, our pipe's write end)
        self._watcher: threading.Thread | None = None

    def requested(self) -> bool:
        """Whether the job has been asked to stop (what `run_training` polls)."""
        return self.stop is not None

    def request(self, signum: int, by: str) -> None:
        if self.stop is None:
            self.stop = Stop(signum, by)

    def lock(self, folder: Path) -> None:
        """Lock `folder` until the guard ends (FolderBusy / OSError as `lock_folder`)."""
        self._keys.append(lock_folder(folder))

    def __enter__(self) -> JobGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                current = signal.getsignal(signum)
                if current in (signal.SIG_DFL, signal.default_int_handler):
                    self._previous[signum] = current
                    signal.signal(signum, self._on_signal)
        if self._previous:
            self._listen()
        if self.worker and fcntl is not None:  # POSIX: the parent pid changes when it dies
            self._watcher = threading.Thread(
                target=self._watch_parent, args=(os.getppid(),), daemon=True
            )
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended.set()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._wakeup[0])
            os.close(self._wakeup[1])  # ends the listener
            self._wakeup = None
        for key in reversed(self._keys):
            unlock_folder(key)
        self._keys = []

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Python-level handler: runs late (between bytecodes); `_listen` does the work."""
        self.request(signum, signal.Signals(signum).name)

    def _listen(self) -> None:
        """See each signal the moment it arrives, even while the main thread waits in XLA: the
        interpreter writes every caught signal's number to the wakeup fd, read here by a thread.
        The first stop signal requests the stop, the second ends the process at once."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except ValueError:
            os.close(read)
            os.close(write)
            return
        self._wakeup = (previous, write)
        threading.Thread(target=self._read_signals, args=(read,), daemon=True).start()

    def _read_signals(self, read: int) -> None:
        seen = 0
        with os.fdopen(read, "rb", buffering=0) as signals:
            while data := signals.read(64):
                for signum in data:
                    if signum not in self._previous:
                        continue
                    seen += 1
                    name = signal.Signals(signum).name
                    self.request(signum, name)
                    if seen > 1:
                        os.write(
                            2,
                            f"seqbench-train: second {name}: exiting at once; the last checkpoint "
                            "stays usable\n".encode(),
                        )
                        os._exit(128 + signum)

    def _watch_parent(self, parent: int) -> None:
        while parent == 1 or not self._ended.wait(POLL_S):  # 1: orphaned before the job began
            if parent == 1 or os.getppid() != parent:
                self.request(ORPHANED_SIGNAL, f"the exit of its launching process (pid {parent})")
                if not self._ended.wait(GRACE_S):
                    os.write(
                        2,
                        f"seqbench-train: launching process {parent} is gone and the job did not "
                        f"stop within {GRACE_S:.0f}s; exiting (pid {os.getpid()})\n".encode(),
                    )
                    os._exit(128 + ORPHANED_SIGNAL)
                return

    def end_process(self, code: int) -> None:
        """Exit with `code`; a pool worker exits for good (its pool would swallow SystemExit and
        hand it the next job)."""
        if self.worker:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise SystemExit(code)


def interrupted_line(stop: Stop, step: int, steps: int, checkpointed: bool) -> str:
    """The one line a stopped job prints."""
    where = f"at step {step} of {steps}"
    if checkpointed:
        then = "checkpoint saved; re-run the same command to continue"
    elif step == 0:
        then = "nothing trained yet; re-run the same command to start it"
    else:
        then = "no checkpoint (trainer.checkpoint=false); a re-run starts over"
    return f"seqbench-train: interrupted by {stop.by} {where}; {then}"


def _holds_finished_run(folder: Path) -> bool:
    """Whether `folder`/run.json records a finished run (unreadable: no)."""
    import json

    from seqbench.records import FINISHED

    try:
        record = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("status") in FINISHED


def keep_finished_runs_hydra_files() -> None:
    """Make Hydra skip writing a job's `.hydra/*.yaml` into a folder that holds a finished run (see
    the module docstring). Idempotent."""
    from hydra.core import utils

    original = utils._save_config
    if getattr(original, "_seqbench_keeps_finished", False):
        return

    def _save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        if not _holds_finished_run(Path(output_dir).parent):
            original(cfg, filename, output_dir)

    _save_config._seqbench_keeps_finished = True  # type: ignore[attr-defined]
    utils._save_config = _save_config
