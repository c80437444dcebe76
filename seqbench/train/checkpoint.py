"""Checkpoints of a whole multi-seed training run, written with orbax.

A checkpoint holds the batched `TrainState` (parameters, optimizer state, the seeds' data and
dropout keys, step, divergence, any carried recurrent state) and the host-side history of the run so
far (evaluation and training-loss curves, timings). Since every batch and dropout mask is a function
of (seed key, step), restoring the state at a chunk boundary and running the remaining chunks gives,
on CPU, exactly the numbers of a run that was never interrupted. orbax writes each checkpoint into a
temporary folder and renames it when complete, so a process killed while writing leaves the previous
checkpoint as the latest usable one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from seqbench.train.loop import TrainState

_KEY_FIELDS = ("data_key", "dropout_key")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (one line)."""


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


class Checkpointer:
    """Save and restore (state, history) under `directory`, keeping the `keep` latest steps."""

    def __init__(self, directory: str | Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, history: dict[str, Any]) -> None:
        args = self._ocp.args
        self.manager.save(
            step,
            args=args.Composite(
                state=args.StandardSave(_to_saveable(state)), history=args.JsonSave(history)
            ),
        )
        self.manager.wait_until_finished()

    def restore(self, template: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """The latest checkpoint as (state, history), shaped like `template`; None if none."""
        step = self.latest_step()
        if step is None:
            return None
        args = self._ocp.args
        try:
            restored = self.manager.restore(
                step,
                args=args.Composite(
                    state=args.StandardRestore(_to_saveable(template)), history=args.JsonRestore()
                ),
            )
        except Exception as error:  # orbax raises many types for damaged files
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be read ({first[:200]}); "
                "delete it to restart from the previous one"
            ) from None
        return _from_saveable(restored["state"]), restored["history"]

    def close(self) -> None:
        self.manager.close()
