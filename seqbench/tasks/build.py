"""Build the Task a `TaskConfig` names."""

from __future__ import annotations

from hydra.utils import get_class

from seqbench.config import TaskConfig
from seqbench.tasks.base import Task


def build_task(cfg: TaskConfig) -> Task:
    """Instantiate the Task class named by `cfg._target_` with the config's other fields."""
    fields = {k: v for k, v in vars(cfg).items() if k != "_target_"}
    return get_class(cfg._target_)(**fields)
