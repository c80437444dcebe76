"""A run's record kept true on disk however the run ends, and its tracker and checkpointer always
finished: the one place a training job's failures are handled.

    with RecordedRun(path, record, tracker=..., checkpointer=..., fail=...) as run:
        result = run_training(...)
        run.complete(status=..., ...)      # the finished record, written

How each way out of the `with` block is recorded:

- `complete` (normal end): the finished record is written; a full disk then ends the job with
  `seqbench.diskfull`'s one line (exit 1).
- `CheckpointError` (no checkpoint could be restored, before any training): the earlier record
  stays as it was, marked "failed"; one line, exit 2.
- `TrainingStopped` (a stop request at a chunk boundary): "interrupted" with the step reached;
  raises `seqbench.lifecycle.Interrupted` with the line to print and the exit status.
- a full disk (or quota): "failed" with the one line naming the checkpoint to resume from; exit 1.
- `KeyboardInterrupt` / `SystemExit` raised from outside (submitit's requeue, Ctrl-C without the
  job's handler): "interrupted" (the last checkpoint continues it), re-raised.
- out of memory (the estimate before compiling, or the device's own error): "failed" with one
  line; exit 2.
- anything else: "failed" with the error, re-raised (a bug: the traceback is wanted).

Whatever happened, the tracker gets the final record and the checkpointer is closed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from seqbench import lifecycle
from seqbench.diskfull import disk_fault, fail_on_disk_fault
from seqbench.records import Interruption, RunRecord, Timing, now_iso, write_record
from seqbench.train.checkpoint import Checkpointer, CheckpointError
from seqbench.train.memory import out_of_memory_message


class RecordedRun:
    """Context manager around one run's training; see the module docstring.

    path: the record's file (run.json); record: the record so far (a `RunRecord`, updated in
    place);
    previous: the record of the run being resumed, kept when no checkpoint can be restored;
    tracker: has `finish(record)`; checkpointer: closed at the end (None: no checkpoints);
    guard: the job's `lifecycle.JobGuard` (what asked to stop), or None; steps: trainer.steps;
    fail: prints one line and exits (the command's `fail`).
    """

    def __init__(
        self,
        path: Path,
        record: RunRecord,
        *,
        tracker: Any,
        checkpointer: Checkpointer | None,
        fail: Callable[[str], NoReturn],
        guard: lifecycle.JobGuard | None = None,
        previous: RunRecord | None = None,
        steps: int = 0,
        started: float | None = None,
    ) -> None:
        self.path, self.record, self.previous = path, record, previous
        self.tracker, self.checkpointer, self.guard = tracker, checkpointer, guard
        self.fail, self.steps = fail, steps
        self.started = time.perf_counter() if started is None else started
        self.completed = False

    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def write(self) -> None:
        """Write the record; a full disk ends the job with one line."""
        try:
            write_record(self.path, self.record)
        except OSError as error:
            if disk_fault(error) is None:
                raise
            fail_on_disk_fault(error, self.path, self.record, self.checkpointer)

    def complete(self, **update: Any) -> RunRecord:
        """Record the finished run (`update`: the record's status, finished, per_seed, summary,
        curves, timing, gradient_flow)."""
        names = {f.name for f in fields(RunRecord)}
        for name, value in update.items():
            if name not in names:
                raise TypeError(f"RunRecord has no field {name!r}")
            setattr(self.record, name, value)
        self.completed = True  # from here on an exit is the write's own, not the run's
        self.write()
        return self.record

    def __enter__(self) -> RecordedRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            if error is not None and not self.completed:
                self._record_failure(error)
        finally:
            self.tracker.finish(self.record)
            if self.checkpointer is not None:
                self.checkpointer.close()
        return False

    def _record_failure(self, error: BaseException) -> None:
        """Record how the run ended on `error`; raise the job's exit (or return to re-raise)."""
        record = self.record
        if isinstance(error, CheckpointError):  # before any training: keep the earlier record
            earlier = copy.deepcopy(self.previous if self.previous is not None else record)
            for entry in fields(RunRecord):
                if entry.name != "path":
                    setattr(record, entry.name, getattr(earlier, entry.name))
            record.status, record.error = "failed", str(error)
            write_record(self.path, record)
            self.fail(str(error))
        if isinstance(error, lifecycle.TrainingStopped):
            stop = self.guard.stop
            record.status = "interrupted"
            record.interrupted = Interruption(by=stop.by, step=error.step, at=now_iso())
            record.timing = Timing(wall_s=self.wall_s())
            write_record(self.path, record)
            line = lifecycle.interrupted_line(stop, error.step, self.steps, error.checkpointed)
            raise lifecycle.Interrupted(line, stop.exit_code) from None
        if isinstance(error, Exception) and disk_fault(error) is not None:
            record.timing = Timing(wall_s=self.wall_s())
            fail_on_disk_fault(error, self.path, record, self.checkpointer)
        stopped = isinstance(error, KeyboardInterrupt | SystemExit)
        out_of_memory = out_of_memory_message(error)  # one line, or None for other errors
        record.status = "interrupted" if stopped else "failed"
        record.error = out_of_memory or f"{type(error).__name__}: {error}"
        if stopped:
            record.interrupted = Interruption(by=type(error).__name__, step=None, at=now_iso())
        else:
            record.finished = now_iso()
        record.timing = Timing(wall_s=self.wall_s())
        write_record(self.path, record)
        if out_of_memory is not None:
            self.fail(out_of_memory)
