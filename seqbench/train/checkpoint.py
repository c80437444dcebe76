"""Checkpoints of a whole multi-seed training run, written with orbax, verified when restored.

A checkpoint holds the batched `TrainState` (parameters, optimizer state, the seeds' data and
dropout keys, step, divergence, any carried recurrent state) and the host-side history of the run so
far (evaluation and training-loss curves, timings). Since every batch and dropout mask is a function
of (seed key, step), restoring the state at a chunk boundary and running the remaining chunks gives,
on CPU, exactly the numbers of a run that was never interrupted. orbax writes each checkpoint into a
temporary folder and renames it when complete, so a process killed while writing leaves the previous
checkpoint as the latest usable one.

Each checkpoint also holds, in the same atomic write, a SHA-256 digest of what was saved: every
state leaf's dtype, shape and bytes and the canonical JSON of the history. A restore recomputes it
from what orbax read back and checks the history against the checkpoint's step (see
`check_history`), since a damaged data file can read back as different numbers without any error
from orbax. A checkpoint that fails (digest mismatch, inconsistent history or state step, or
unreadable) is moved to `<directory>.corrupt/<step>`, outside orbax's rotation, with one warning
line on stderr, and the previous one is tried; if none passes, `CheckpointError` says so in one line
and every checkpoint is left where it was. A checkpoint written before digests were stored is
restored after the history check, with one warning that it is unverified.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from seqbench.train.program import TrainState

_KEY_FIELDS = ("data_key", "dropout_key")
#: state fields added since checkpoints were first written, with the value an older checkpoint gets
#: (a NaN first loss: the blow-up rule takes the first loss after the resume as its reference)
_ADDED_FIELDS = {"initial_loss": np.nan}
_DIGEST_ITEM = "digest"


class CheckpointError(RuntimeError):
    """No checkpoint can be restored (one line)."""


def _to_saveable(state: TrainState) -> dict[str, Any]:
    saveable = state._asdict()
    for name in _KEY_FIELDS:
        saveable[name] = jax.random.key_data(saveable[name])
    return saveable


def _from_saveable(saved: dict[str, Any]) -> TrainState:
    restored = dict(saved)
    for name in _KEY_FIELDS:
        restored[name] = jax.random.wrap_key_data(restored[name])
    return TrainState(**restored)


def digest(saveable: dict[str, Any], history: dict[str, Any]) -> str:
    """Hex SHA-256 of every leaf's dtype, shape and bytes (in tree order) and the history's JSON."""
    hasher = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(jax.device_get(saveable)):
        array = np.asarray(leaf)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(array.tobytes())
    hasher.update(json.dumps(history, sort_keys=True, separators=(",", ":")).encode())
    return hasher.hexdigest()


def check_history(
    history: dict[str, Any], step: int, seeds: int, chunk_ends: Sequence[int] | None = None
) -> str | None:
    """What is wrong with a run's `history` saved at `step` for `seeds` seeds; None if nothing.

    The history, as `run_training` writes it: done (the step), train_steps (C,) chunk ends,
    eval_steps [0, *train_steps], eval_history E = C + 1 rows of {"<split>/<metric>": (S,)},
    train_loss C rows of (S,), gradient_flow {"<eval step>": (S, L, T)}, train_s. With `chunk_ends`
    (every chunk end of the run), train_steps must be its first C entries.
    """
    try:
        done, train_steps = history["done"], list(history["train_steps"])
        if done != step:
            return f"history is at step {done}, not {step}"
        if chunk_ends is not None and train_steps != list(chunk_ends)[: len(train_steps)]:
            return "history's chunk ends are not this run's"
        last = train_steps[-1] if train_steps else 0
        if last != step or sorted(set(train_steps)) != train_steps:
            return f"history's chunk ends are not increasing to step {step}"
        if list(history["eval_steps"]) != [0, *train_steps]:
            return "history's evaluation steps do not match its chunk ends"
        rows, losses = history["eval_history"], history["train_loss"]
        if len(rows) != len(train_steps) + 1 or len(losses) != len(train_steps):
            return (
                f"history has {len(rows)} evaluations and {len(losses)} training losses "
                f"for {len(train_steps)} chunks"
            )
        if any(row.keys() != rows[0].keys() for row in rows):
            return "history's evaluations do not all have the same metrics"
        per_seed = [*(v for row in rows for v in row.values()), *losses]
        per_seed += history.get("gradient_flow", {}).values()
        if any(len(values) != seeds for values in per_seed):
            return f"history has rows that are not one per seed ({seeds})"
        if any(int(at) not in history["eval_steps"] for at in history.get("gradient_flow", {})):
            return "history has gradient flow at steps never evaluated"
        if not float(history["train_s"]) >= 0:
            return "history's training time is not a time"
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return f"history is malformed ({type(error).__name__}: {error})"
    return None


def join_orbax_threads(timeout_s: float = 60.0) -> None:
    """Wait for the background threads of a save that failed: orbax returns on the first failed
    array write while its metadata write (a thread waiting on every array write) still runs, and
    if the job exits first that thread fails at interpreter shutdown with a traceback of its own
    instead of ending on the write's error (which `seqbench.diskfull` keeps off the console)."""
    for thread in threading.enumerate():
        if (
            type(thread).__module__.startswith("orbax.")
            and thread is not threading.current_thread()
        ):
            thread.join(timeout_s)


class Checkpointer:
    """Save and restore (state, history) under `directory`, keeping the `keep` latest steps."""

    def __init__(self, directory: str | Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.corrupt_directory = self.directory.with_name(self.directory.name + ".corrupt")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, history: dict[str, Any]) -> None:
        args = self._ocp.args
        saveable = _to_saveable(state)
        try:
            self.manager.save(
                step,
                args=args.Composite(
                    state=args.StandardSave(saveable),
                    history=args.JsonSave(history),
                    **{_DIGEST_ITEM: args.JsonSave({"sha256": digest(saveable, history)})},
                ),
            )
            self.manager.wait_until_finished()
        except BaseException:
            join_orbax_threads()
            raise

    def restore(
        self, template: TrainState, chunk_ends: Sequence[int] | None = None
    ) -> tuple[TrainState, dict[str, Any]] | None:
        """The latest good checkpoint as (state, history), shaped like `template`; None if none.

        `template` is batched (a leading seed axis S); `chunk_ends` as in `check_history`. Bad
        checkpoints newer than the one restored are moved to `corrupt_directory` with one warning
        each; CheckpointError if there are checkpoints and none is good (nothing is moved).
        """
        bad: list[tuple[int, str]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            problem, restored = self._restore_step(step, template, chunk_ends)
            if problem is None:
                break
            bad.append((step, problem))
        else:
            if not bad:
                return None
            problems = "; ".join(f"step {step}: {problem}" for step, problem in bad)
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be restored ({problems}); all are left in "
                "place for inspection: move that folder away to start the run again from step 0"
            )
        for bad_step, problem in bad:
            kept = self._set_aside(bad_step)
            print(
                f"seqbench: warning: checkpoint {self.directory / str(bad_step)} is corrupt "
                f"({problem}); kept at {kept}; resuming from step {step}",
                file=sys.stderr,
            )
        if bad:
            self.manager.reload()
        return restored

    def _restore_step(
        self, step: int, template: TrainState, chunk_ends: Sequence[int] | None
    ) -> tuple[str | None, tuple[TrainState, dict[str, Any]] | None]:
        """(problem, None) for a bad checkpoint at `step`, (None, (state, history)) for a good one."""
        args = self._ocp.args
        items = {
            "state": args.StandardRestore(_to_saveable(template)),
            "history": args.JsonRestore(),
        }
        verified = (self.directory / str(step) / _DIGEST_ITEM).is_dir()
        if verified:
            items[_DIGEST_ITEM] = args.JsonRestore()
        try:
            try:
                restored = self.manager.restore(step, args=args.Composite(**items))
            except Exception:
                if verified:
                    raise
                restored = self._restore_older_state(step, template, items)
            state, history = restored["state"], restored["history"]
            if verified and digest(state, history) != restored[_DIGEST_ITEM]["sha256"]:
                return "its arrays or history differ from what was saved", None
        except Exception as error:  # orbax raises many types for damaged files
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            first = first.split(" See full TensorStore details")[0]  # then a long repr
            return f"cannot be read: {first[:200]}", None
        seeds = np.shape(template.step)[0]
        problem = check_history(history, step, seeds, chunk_ends)
        steps_taken = np.asarray(state["step"])
        if problem is None and not np.all(steps_taken == step):
            problem = f"its state is at steps {sorted(set(steps_taken.tolist()))}, not {step}"
        if problem is not None:
            return problem, None
        if not verified:
            print(
                f"seqbench: warning: checkpoint {self.directory / str(step)} has no digest "
                "(written before checkpoints were verified); restoring it unverified",
                file=sys.stderr,
            )
        return None, (_from_saveable(state), history)

    def _restore_older_state(
        self, step: int, template: TrainState, items: dict[str, Any]
    ) -> dict[str, Any]:
        """Restore a checkpoint written before `_ADDED_FIELDS` existed, filling them in."""
        args = self._ocp.args
        older = {k: v for k, v in _to_saveable(template).items() if k not in _ADDED_FIELDS}
        items = {**items, "state": args.StandardRestore(older)}
        restored = dict(self.manager.restore(step, args=args.Composite(**items)))
        seeds = np.shape(template.step)[0]
        restored["state"] = {
            **restored["state"],
            **{
                name: np.full((seeds,), value, np.asarray(getattr(template, name)).dtype)
                for name, value in _ADDED_FIELDS.items()
            },
        }
        return restored

    def _set_aside(self, step: int) -> Path:
        """Move the checkpoint at `step` out of orbax's folder (never rotated away); its new path."""
        self.corrupt_directory.mkdir(parents=True, exist_ok=True)
        kept, copy = self.corrupt_directory / str(step), 1
        while kept.exists():
            copy += 1
            kept = self.corrupt_directory / f"{step}-{copy}"
        shutil.move(self.directory / str(step), kept)
        return kept

    def close(self) -> None:
        self.manager.close()
