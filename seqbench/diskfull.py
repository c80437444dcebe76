"""A full disk (or quota, or read-only file system) under a run: one line, nothing earlier lost.

`disk_fault` recognises the fault behind an exception, whether Python raised it (OSError with
errno ENOSPC, EDQUOT or EROFS, anywhere in the cause/context chain) or tensorstore did for orbax
(a ValueError whose text carries the OS error code). `describe` turns it into
``no space left on device writing <path> (<free> free on <mount>)``.

`fail_on_disk_fault` ends a job on such a fault: it removes orbax's unfinished checkpoint folders
(the earlier checkpoints stay, and the space they held is what the record needs), marks the record
failed with the line when run.json can still be written (atomically: otherwise the previous
run.json is left as it was), and exits with status 1 and that one line. `quiet_disk_faults` keeps
the console free of the echoes of the same fault: logging handlers whose file is on the full disk
(Hydra's job log, wandb's debug.log) drop the record instead of printing "--- Logging error ---",
orbax's own log record of it (through absl, with a traceback) is dropped, and so are asyncio's
"Task exception was never retrieved" records of its other concurrent writes that failed the same
way and the "Event loop is closed" errors of its abandoned asynchronous writes. `guard_hydra` turns the same fault
in Hydra's own writes (`.hydra/*.yaml`, the job log) into the one line instead of a traceback.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from seqbench.records import RunRecord

PROG = "seqbench-train"
#: errno -> how the line names it
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_STRERRORS = {os.strerror(code).lower(): code for code in DISK_ERRNOS}
#: tensorstore's report of an OS error (orbax checkpoints): `... [os_error_code='28']`
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_QUOTED_PATH = re.compile(r'(?:Failed writing|file|writing):? "(/[^"]+)"')
#: orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp...` and renames it when complete
ORBAX_TMP = ".orbax-checkpoint-tmp"


@dataclass(frozen=True)
class DiskFault:
    """A write that failed because the file system is full, over quota or read-only."""

    errno: int
    path: Path | None


def _from_text(text: str) -> DiskFault | None:
    code = None
    match = _OS_ERROR_CODE.search(text)
    if match and int(match.group(1)) in DISK_ERRNOS:
        code = int(match.group(1))
    else:
        lowered = text.lower()
        code = next((c for s, c in _STRERRORS.items() if s in lowered), None)
    if code is None:
        return None
    paths = _QUOTED_PATH.findall(text)
    return DiskFault(code, Path(paths[-1]) if paths else None)


def _open_file_name(error: BaseException) -> str | None:
    """The name of the file that the innermost frame of `error` was writing, when it held it
    open (``with open(path, "w") as f: f.write(...)`` fails without naming the file)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    for value in tb.tb_frame.f_locals.values():
        if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
            return value.name
    return None


def disk_fault(error: BaseException | None) -> DiskFault | None:
    """The disk fault behind `error` (itself, its cause or its context), else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            if error.errno in DISK_ERRNOS:
                filename = error.filename or _open_file_name(error)
                return DiskFault(error.errno, Path(os.fsdecode(filename)) if filename else None)
        elif isinstance(error, ValueError | RuntimeError):
            found = _from_text(str(error))
            if found is not None:
                return found
        error = error.__cause__ or error.__context__
    return None


def human_size(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds `path` (or would hold it)."""
    path = _existing(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_space(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of `path`; None if unknown."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def shown_path(path: Path) -> Path:
    """A path as the user knows it: orbax's temporary checkpoint file becomes its checkpoint."""
    text = str(path)
    if ORBAX_TMP in text:
        return Path(text.split(ORBAX_TMP, 1)[0])
    return path


def describe(fault: DiskFault, fallback: Path | None = None) -> str:
    """`no space left on device writing <path> (<free> free on <mount>)`."""
    path = shown_path(fault.path) if fault.path is not None else fallback
    what = DISK_ERRNOS[fault.errno]
    if path is None:
        return what
    where = f"{what} writing {path}"
    if fault.errno == errno.EROFS:
        return f"{where} ({mount_point(path)} is mounted read-only)"
    free = free_space(path)
    shown = "unknown space" if free is None else human_size(free)
    return f"{where} ({shown} free on {mount_point(path)})"


def remove_partial_checkpoints(directory: Path | None) -> None:
    """Delete orbax's unfinished checkpoint folders under `directory` (finished ones are kept)."""
    if directory is None or not Path(directory).is_dir():
        return
    for partial in Path(directory).glob(f"*{ORBAX_TMP}*"):
        shutil.rmtree(partial, ignore_errors=True)


def fail_on_disk_fault(
    error: BaseException,
    record_path: Path,
    record: RunRecord | None,
    checkpointer: Any = None,
) -> NoReturn:
    """End the job on the disk fault behind `error` (see the module docstring): one line on stderr,
    exit status 1. `record` is updated in place (status "failed", the line as its error) and
    written when there is room for it; the line names the checkpoint a rerun resumes from."""
    from seqbench.records import now_iso, write_record

    fault = disk_fault(error)
    assert fault is not None, "fail_on_disk_fault needs a disk fault"
    line = describe(fault, fallback=record_path)  # the free space before anything is cleaned up
    resume_step = None
    if checkpointer is not None:
        remove_partial_checkpoints(checkpointer.directory)
        try:
            resume_step = checkpointer.latest_step()
        except Exception:  # the line matters more than the hint
            pass
    notes = []
    if record is not None:
        record.status, record.finished, record.error = "failed", now_iso(), line
        try:
            write_record(record_path, record)
            notes.append(f"run marked failed in {record_path}")
        except OSError as again:
            if disk_fault(again) is None:
                raise
            notes.append(f"{record_path} could not be updated")
    if resume_step:
        notes.append(
            f"free some space and rerun with hydra.run.dir={record_path.parent} (or resume=auto) "
            f"to resume from step {resume_step}"
        )
    exit_line(line + "".join(f"; {note}" for note in notes))


def exit_line(message: str) -> NoReturn:
    """Print `<prog>: error: <message>` as the only line and exit with status 1 (a fault)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def _is_disk_fault_record(record: logging.LogRecord) -> bool:
    if record.exc_info and disk_fault(record.exc_info[1]) is not None:
        return True
    try:
        return _from_text(record.getMessage()) is not None
    except Exception:  # a record whose message cannot be formatted is not ours to judge
        return False


class DropDiskFaults(logging.Filter):
    """Drop log records about a disk fault: seqbench reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_disk_fault_record(record)


_DROP = DropDiskFaults()
#: loggers whose records of a disk fault echo the line seqbench prints: orbax logs (through absl)
#: its failed checkpoint write with a traceback; when several of its concurrent array writes fail,
#: asyncio logs each one whose exception orbax never retrieved
ECHO_LOGGERS = ("absl", "asyncio")


def quiet_disk_faults() -> None:
    """Keep disk faults' echoes off the console (see the module docstring). Idempotent.

    `logging.Handler.handleError` is wrapped so that a handler whose own write fails with a disk
    fault drops the record silently; any other handler error is reported as before."""
    for name in ECHO_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP not in logger.filters:
            logger.addFilter(_DROP)
    _quiet_closed_loop_callbacks()
    original = logging.Handler.handleError
    if getattr(original, "_seqbench_quiet", False):
        return

    def handleError(self: logging.Handler, record: logging.LogRecord) -> None:
        if disk_fault(sys.exc_info()[1]) is None:
            original(self, record)

    handleError._seqbench_quiet = True  # type: ignore[attr-defined]
    logging.Handler.handleError = handleError  # type: ignore[method-assign]


def _quiet_closed_loop_callbacks() -> None:
    """Drop the "Event loop is closed" errors that tensorstore's completion callbacks raise (as
    unraisable exceptions, each printed as a traceback) when orbax abandons a failed checkpoint
    write; every other unraisable exception is reported as before. Idempotent."""
    original = sys.unraisablehook
    if getattr(original, "_seqbench_quiet", False):
        return

    def unraisablehook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            original(unraisable)

    unraisablehook._seqbench_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = unraisablehook


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # Hydra not (yet) configured: the line goes without a path
        return None


def guard_hydra() -> None:
    """Make a disk fault raised under Hydra's error reporting (Hydra writing `.hydra/*.yaml` or its
    job log, or the task itself) end the process with one line instead of Hydra's traceback.
    Other errors reach Hydra's reporting unchanged. Idempotent."""
    from hydra._internal import utils

    original = utils.run_and_report
    if getattr(original, "_seqbench_guarded", False):
        return

    def run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except Exception as error:
                fault = disk_fault(error)
                if fault is None:
                    raise
                exit_line(describe(fault, fallback=_hydra_output_dir()))

        return original(guarded)

    run_and_report._seqbench_guarded = True  # type: ignore[attr-defined]
    utils.run_and_report = run_and_report
