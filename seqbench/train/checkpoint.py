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

A checkpoint may also hold each seed's best parameters so far (`KeptBest`, see
`seqbench.train.driver`): items `best_params` (the parameters, a leading seed axis S) and `best`
(which evaluation each seed's are from), written in the same atomic save and verified by a digest
of their own (`best_sha256`), so that `read_best` checks them without knowing the model. A
checkpoint written before they were kept has neither item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from seqbench.train.program import NOT_DIVERGED, TrainState

_KEY_FIELDS = ("data_key", "dropout_key")
#: state fields added since checkpoints were first written, with the value an older checkpoint gets
#: (a NaN first loss: the blow-up rule takes the first loss after the resume as its reference)
_ADDED_FIELDS = {"initial_loss": np.nan}
_DIGEST_ITEM = "digest"
_BEST_PARAMS_ITEM = "best_params"
_BEST_ITEM = "best"


@dataclass
class KeptBest:
    """Each seed's parameters at its best evaluation so far, chosen as `records.seed_summaries`
    chooses a seed's "best" evaluation (see `seqbench.train.driver.BestTracker`).

    params: the model parameters with a leading seed axis S (device or host arrays).
    steps: (S,) int64 the evaluation step each seed's parameters are from, -1 while the seed has
        had no finite value (its parameters are then the initial ones, not a best).
    values: (S,) float64 the selection metric at that evaluation, NaN where steps is -1.
    metric: the metric chosen on, `<split>/<name>` ("val/mse"); direction: "min" or "max".
    complete: whether every evaluation since step 0 was seen (False after resuming from a
        checkpoint written before best parameters were kept: a best among later evaluations only).
    """

    params: Any
    steps: np.ndarray
    values: np.ndarray
    metric: str
    direction: str
    complete: bool = True

    def meta(self) -> dict[str, Any]:
        """Everything but the parameters, as JSON (NaN as None)."""
        return {
            "steps": [int(step) for step in self.steps],
            "values": [float(v) if np.isfinite(v) else None for v in self.values],
            "metric": self.metric,
            "direction": self.direction,
            "complete": bool(self.complete),
        }

    @classmethod
    def from_meta(cls, params: Any, meta: dict[str, Any]) -> KeptBest:
        """The inverse of `meta`, with `params`."""
        values = [np.nan if v is None else float(v) for v in meta["values"]]
        return cls(
            params=params,
            steps=np.asarray(meta["steps"], dtype=np.int64),
            values=np.asarray(values, dtype=np.float64),
            metric=str(meta["metric"]),
            direction=str(meta["direction"]),
            complete=bool(meta["complete"]),
        )


class CheckpointError(RuntimeError):
    """No checkpoint can be restored (one line)."""


def _injected(node: Any) -> bool:
    return isinstance(node, optax.InjectStatefulHyperparamsState)


def _without_injection(opt_state: Any) -> Any:
    """`opt_state` as written before hyper-parameters were injected: each injected transformation's
    state replaced by its inner state."""
    return jax.tree_util.tree_map(
        lambda node: node.inner_state if _injected(node) else node, opt_state, is_leaf=_injected
    )


def _with_injection(saved: dict[str, Any], template: TrainState) -> dict[str, Any]:
    """A saveable state whose opt_state lacks the injection (`_without_injection`'s layout) in the
    template's layout: the template's injected values, the saved inner states, and each injection's
    update count = the updates each seed accepted (its step, or the step it diverged at)."""
    steps, diverged = np.asarray(saved["step"]), np.asarray(saved["diverged_step"])
    accepted = np.where(diverged == NOT_DIVERGED, steps, diverged).astype(np.int32)

    def fill(node: Any, inner: Any) -> Any:
        if _injected(node):
            return node._replace(count=accepted, inner_state=inner)
        return inner

    opt_state = jax.tree_util.tree_map(
        fill, template.opt_state, saved["opt_state"], is_leaf=_injected
    )
    return {**saved, "opt_state": opt_state}


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


def join_orbax_threads(timeout_s: float = 60.0, settle_s: float = 0.2) -> None:
    """Wait for the background threads of a save that failed: orbax returns on the first failed
    array write while its other writes and its metadata write (a thread waiting on every array
    write) still run, and if the job exits first such a thread fails at interpreter shutdown with a
    traceback of its own instead of ending on the write's error (which `seqbench.diskfull` keeps
    off the console). The threads it joins can start others, so it returns only once no orbax
    thread has been alive for `settle_s` seconds, or after `timeout_s` in all."""
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        alive = [
            thread
            for thread in threading.enumerate()
            if type(thread).__module__.startswith("orbax.")
            and thread is not threading.current_thread()
            and thread.is_alive()
        ]
        if alive:
            for thread in alive:
                thread.join(max(deadline - time.monotonic(), 0.0))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle_s:
            return
        else:
            time.sleep(settle_s / 4)


def _first_line(error: BaseException) -> str:
    """An orbax or TensorStore error's first line, without the long repr that may follow it."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return first.split(" See full TensorStore details")[0][:200]


def _check_best(restored: dict[str, Any], seeds: int | None) -> str | None:
    """What is wrong with the restored kept best parameters (`restored` holds the items
    best_params, best and digest); None if nothing. With `seeds`, each array must have that many
    rows."""
    params, meta = restored[_BEST_PARAMS_ITEM], restored[_BEST_ITEM]
    if digest(params, meta) != restored[_DIGEST_ITEM].get("best_sha256"):
        return "its best parameters differ from what was saved"
    rows = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(params)}
    rows |= {len(meta["steps"]), len(meta["values"])}
    if len(rows) != 1 or (seeds is not None and rows != {seeds}):
        return f"its best parameters are not one row per seed ({sorted(rows)})"
    return None


class Checkpointer:
    """Save and restore (state, history) under `directory`, keeping the `keep` latest steps."""

    def __init__(self, directory: str | Path, keep: int = 2, read_only: bool = False):
        """`read_only`: only read (`read_best`, `read_state`): nothing is created or written."""
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.corrupt_directory = self.directory.with_name(self.directory.name + ".corrupt")
        absl = logging.getLogger("absl")  # read-only: orbax warns that it will not save
        level = absl.level
        if read_only:
            absl.setLevel(logging.ERROR)
        try:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=False,
            )
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        finally:
            absl.setLevel(level)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self, step: int, state: TrainState, history: dict[str, Any], best: KeptBest | None = None
    ) -> None:
        """Save (state, history) at `step`, with `best` (each seed's best parameters so far) in the
        same atomic write when given."""
        args = self._ocp.args
        saveable = _to_saveable(state)
        digests = {"sha256": digest(saveable, history)}
        items = {"state": args.StandardSave(saveable), "history": args.JsonSave(history)}
        if best is not None:
            digests["best_sha256"] = digest(best.params, best.meta())
            items[_BEST_PARAMS_ITEM] = args.StandardSave(best.params)
            items[_BEST_ITEM] = args.JsonSave(best.meta())
        try:
            self.manager.save(
                step, args=args.Composite(**items, **{_DIGEST_ITEM: args.JsonSave(digests)})
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
        restored = self.restore_with_best(template, chunk_ends)
        return None if restored is None else restored[:2]

    def restore_with_best(
        self, template: TrainState, chunk_ends: Sequence[int] | None = None
    ) -> tuple[TrainState, dict[str, Any], KeptBest | None] | None:
        """As `restore`, with the checkpoint's kept best parameters (shaped like
        `template.params`): (state, history, best), best None when the checkpoint has none."""
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
    ) -> tuple[str | None, tuple[TrainState, dict[str, Any], KeptBest | None] | None]:
        """(problem, None) for a bad checkpoint at `step`, (None, (state, history, best)) for a
        good one (best None when it keeps no best parameters)."""
        args = self._ocp.args
        items = {
            "state": args.StandardRestore(_to_saveable(template)),
            "history": args.JsonRestore(),
        }
        verified = (self.directory / str(step) / _DIGEST_ITEM).is_dir()
        if verified:
            items[_DIGEST_ITEM] = args.JsonRestore()
        kept = (self.directory / str(step) / _BEST_PARAMS_ITEM).is_dir()
        if kept:
            items[_BEST_PARAMS_ITEM] = args.StandardRestore(template.params)
            items[_BEST_ITEM] = args.JsonRestore()
        best = None
        try:
            restored, before_injection = self._restore_layouts(step, template, items, verified)
            state, history = restored["state"], restored["history"]
            if verified and digest(state, history) != restored[_DIGEST_ITEM]["sha256"]:
                return "its arrays or history differ from what was saved", None
            if kept:
                problem = _check_best(restored, np.shape(template.step)[0])
                if problem is not None:
                    return problem, None
                best = KeptBest.from_meta(restored[_BEST_PARAMS_ITEM], restored[_BEST_ITEM])
        except Exception as error:  # orbax raises many types for damaged files
            return f"cannot be read: {_first_line(error)}", None
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
        if before_injection:
            state = _with_injection(state, template)
        return None, (_from_saveable(state), history, best)

    def read_best(self) -> tuple[int, KeptBest]:
        """The latest checkpoint's kept best parameters, verified, as (step, best); the parameters
        as saved (nested dicts of arrays with a leading seed axis S), no model needed.
        CheckpointError (one line) when there is no checkpoint, it keeps no best parameters, or
        they fail their digest."""
        args = self._ocp.args
        step = self._latest_or_fail()
        if not (self.directory / str(step) / _BEST_PARAMS_ITEM).is_dir():
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} keeps no best parameters (written before "
                "seqbench kept them, or with trainer.keep_best=false)"
            )
        items = {
            _BEST_PARAMS_ITEM: args.StandardRestore(),
            _BEST_ITEM: args.JsonRestore(),
            _DIGEST_ITEM: args.JsonRestore(),
        }
        try:
            restored = self.manager.restore(step, args=args.Composite(**items))
            problem = _check_best(restored, None)
            best = KeptBest.from_meta(restored[_BEST_PARAMS_ITEM], restored[_BEST_ITEM])
        except Exception as error:  # orbax raises many types for damaged files
            problem = f"cannot be read: {_first_line(error)}"
        if problem is not None:
            raise CheckpointError(f"checkpoint {self.directory / str(step)}: {problem}")
        return step, best

    def read_state(self, template: TrainState) -> tuple[int, TrainState]:
        """The latest checkpoint's state, verified, shaped like `template` (batched), as (step,
        state); CheckpointError (one line) when there is none or it fails its checks."""
        step = self._latest_or_fail()
        problem, restored = self._restore_step(step, template, None)
        if problem is not None:
            raise CheckpointError(f"checkpoint {self.directory / str(step)}: {problem}")
        return step, restored[0]

    def _latest_or_fail(self) -> int:
        step = self.manager.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return step

    def _restore_layouts(
        self, step: int, template: TrainState, items: dict[str, Any], verified: bool
    ) -> tuple[dict[str, Any], bool]:
        """Restore the checkpoint at `step` in the first layout that reads: the template's, then
        (when the template injects hyper-parameters) the one before injection, then (a checkpoint
        without a digest) those without `_ADDED_FIELDS`, which are filled in. Returns (restored
        items, whether the state is in the layout before injection); raises the first layout's
        error when none reads."""
        injects = any(
            _injected(node)
            for node in jax.tree_util.tree_leaves(template.opt_state, is_leaf=_injected)
        )
        layouts = [(False, False)] + [(True, False)] * injects
        if not verified:
            layouts += [(False, True)] + [(True, True)] * injects
        first_error: Exception | None = None
        for before_injection, before_fields in layouts:
            try:
                return (
                    self._restore_layout(step, template, items, before_injection, before_fields),
                    before_injection,
                )
            except Exception as error:  # orbax raises many types for a layout that differs
                first_error = first_error or error
        assert first_error is not None
        raise first_error

    def _restore_layout(
        self,
        step: int,
        template: TrainState,
        items: dict[str, Any],
        before_injection: bool,
        before_fields: bool,
    ) -> dict[str, Any]:
        """Restore with the template's state layout, its opt_state without injection
        (`before_injection`; converted by the caller after the digest check) and without
        `_ADDED_FIELDS` (`before_fields`; filled in here)."""
        args = self._ocp.args
        layout = _to_saveable(template)
        if before_injection:
            layout["opt_state"] = _without_injection(layout["opt_state"])
        if before_fields:
            layout = {k: v for k, v in layout.items() if k not in _ADDED_FIELDS}
        items = {**items, "state": args.StandardRestore(layout)}
        restored = dict(self.manager.restore(step, args=args.Composite(**items)))
        if before_fields:
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
