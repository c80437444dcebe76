"""Build the Task a `TaskConfig` names (data sets are loaded once per process and config)."""

from __future__ import annotations

import json
from functools import lru_cache

from hydra.utils import get_class

from seqbench.config import ConfigError, TaskConfig
from seqbench.tasks.base import Task


def build_task(cfg: TaskConfig) -> Task:
    """Instantiate the Task class named by `cfg._target_` with the config's other fields.

    The same config in the same process gives the same Task object: a multirun's jobs and the
    command-line check before them load a data set once.
    """
    fields = {k: v for k, v in vars(cfg).items() if k != "_target_"}
    return _build(cfg._target_, json.dumps(fields, sort_keys=True))


@lru_cache(maxsize=8)
def _build(target: str, fields_json: str) -> Task:
    return get_class(target)(**json.loads(fields_json))


def check_batch_size(task: Task, batch_size: int) -> None:
    """ConfigError when a training batch would be larger than a fixed data set."""
    if task.n_train is not None and batch_size > task.n_train:
        raise ConfigError(
            f"trainer.batch_size: {batch_size} is larger than the {task.n_train} training "
            f"examples of {task.label}"
        )
