"""Every task seqbench knows, and building one from its config.

`TASKS` names each task's Hydra schema (`conf/task/*.yaml` list `<name>_schema` first in their
defaults) with its config class; `TASK_CLASSES` gives the task class each config builds. Adding a
task is one file (its config dataclass and its task class), one line here and one YAML.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

from seqbench.config import ConfigError
from seqbench.tasks.base import Task, TaskConfig
from seqbench.tasks.cifar import CifarConfig, SequentialCIFAR
from seqbench.tasks.forecast import ForecastConfig, Forecasting
from seqbench.tasks.imdb import IMDBConfig, IMDBSentiment
from seqbench.tasks.induction_heads import InductionHeads, InductionHeadsConfig
from seqbench.tasks.mnist import MnistConfig, SequentialMNIST
from seqbench.tasks.mqar import MQARConfig, MultiQueryAssociativeRecall
from seqbench.tasks.music import MusicConfig, PolyphonicMusic
from seqbench.tasks.parity import Parity, ParityConfig
from seqbench.tasks.selective_copy import SelectiveCopy, SelectiveCopyConfig
from seqbench.tasks.synthetic import AddingConfig, AddingProblem, CopyMemory, CopyMemoryConfig
from seqbench.tasks.temporal_order import TemporalOrder, TemporalOrderConfig
from seqbench.tasks.text import CharLanguageModel, TextConfig
from seqbench.tasks.uea import UEAClassification, UEAConfig

#: schema name (Hydra: `task/<name>_schema`) -> (config class, task class)
_REGISTERED: dict[str, tuple[type[TaskConfig], type[Task]]] = {
    "adding": (AddingConfig, AddingProblem),
    "copy_memory": (CopyMemoryConfig, CopyMemory),
    "mnist": (MnistConfig, SequentialMNIST),
    "cifar": (CifarConfig, SequentialCIFAR),
    "uea": (UEAConfig, UEAClassification),
    "music": (MusicConfig, PolyphonicMusic),
    "text": (TextConfig, CharLanguageModel),
    "imdb": (IMDBConfig, IMDBSentiment),
    "forecast": (ForecastConfig, Forecasting),
    "temporal_order": (TemporalOrderConfig, TemporalOrder),
    "parity": (ParityConfig, Parity),
    "selective_copy": (SelectiveCopyConfig, SelectiveCopy),
    "induction_heads": (InductionHeadsConfig, InductionHeads),
    "mqar": (MQARConfig, MultiQueryAssociativeRecall),
}
#: schema name -> config class (what `seqbench.store` registers with Hydra)
TASKS: dict[str, type[TaskConfig]] = {name: pair[0] for name, pair in _REGISTERED.items()}
#: config class -> the task class built from it
TASK_CLASSES: dict[type[TaskConfig], type[Task]] = dict(_REGISTERED.values())


def build_task(cfg: TaskConfig) -> Task:
    """The task `cfg` describes (`TASK_CLASSES[type(cfg)](cfg)`).

    The same config in the same process gives the same Task object: a multirun's jobs and the
    command-line check before them load a data set once.
    """
    if type(cfg) not in TASK_CLASSES:
        raise ConfigError(f"task: {type(cfg).__name__} is not a registered task config")
    return _build(type(cfg), json.dumps(dataclasses.asdict(cfg), sort_keys=True))


@lru_cache(maxsize=8)
def _build(config_class: type[TaskConfig], fields_json: str) -> Task:
    return TASK_CLASSES[config_class](config_class(**json.loads(fields_json)))


def check_batch_size(task: Task, batch_size: int) -> None:
    """ConfigError when a training batch would be larger than a fixed data set."""
    if task.n_train is not None and batch_size > task.n_train:
        raise ConfigError(
            f"trainer.batch_size: {batch_size} is larger than the {task.n_train} training "
            f"examples of {task.label}"
        )
