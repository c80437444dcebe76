"""Hydra registration and validation: every schema, read from the registries, in Hydra's
ConfigStore; a composed config checked into dataclasses before anything is built or compiled.

Each YAML option in `conf/<group>/` lists its schema first in its defaults list, so Hydra rejects an
unknown key or a value of the wrong type while composing. `validate` runs the value checks
(`__post_init__` of each schema) and refuses what composing lets through: keys added with `+`/`++`
that no schema has, and non-finite floats in any field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqbench.config import (
    Config,
    ConfigError,
    LoggerConfig,
    ModelConfig,
    OptimizerConfig,
    TrainerConfig,
)
from seqbench.models.architectures import ARCHITECTURES, check_options
from seqbench.tasks.base import TaskConfig
from seqbench.tasks.registry import TASKS
from seqbench.train.optim import check_targets


def register_configs() -> None:
    """Store every schema so YAML options can name it in their defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    for spec in ARCHITECTURES.values():  # each model option lists `- cell: <name>_schema`
        cs.store(group="model/cell", name=f"{spec.name}_schema", node=spec.options)
    cs.store(group="optimizer", name="optimizer_schema", node=OptimizerConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    for name, schema in TASKS.items():
        cs.store(group="task", name=f"{name}_schema", node=schema)


def unknown_key(full_key: str, key: str, schema: type) -> str:
    """The one-line refusal of `key` (at `full_key`), which `schema` has no field for, with the
    nearest field name as a hint."""
    names = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_")]
    close = difflib.get_close_matches(key, names, n=1)
    parent = full_key.rpartition(".")[0]
    where = f"of {parent}" if parent else "at the top level"
    hint = f" (did you mean {close[0]}?)" if close else f" (keys: {', '.join(names)})"
    return f"{full_key}: not a key {where}{hint if names else ''}"


def _check_tree(node: DictConfig | ListConfig, path: str) -> None:
    """Refuse keys that the node's schema lacks (`+`/`++` overrides add them with the struct flag
    off) and non-finite floats, anywhere below `node`. Values that fail to resolve are left to
    `OmegaConf.to_object`, which reports them."""
    schema = OmegaConf.get_type(node)
    fields = None
    if isinstance(node, DictConfig) and dataclasses.is_dataclass(schema):
        fields = {f.name for f in dataclasses.fields(schema)}
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if isinstance(key, int):
            full_key = f"{path}[{key}]"
        else:
            full_key = f"{path}.{key}" if path else str(key)
        if fields is not None and key not in fields:
            raise ConfigError(unknown_key(full_key, str(key), schema))
        try:
            value = node[key]
        except OmegaConfBaseException:
            continue
        if isinstance(value, DictConfig | ListConfig):
            _check_tree(value, full_key)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{full_key}: must be a finite number, got {value}")


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into checked dataclasses; raise ConfigError on the first bad value."""
    _check_tree(cfg, "")
    try:
        checked = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as error:  # omegaconf's own errors: missing values, type conversions
        message = str(error).splitlines()[0]
        raise ConfigError(message) from error
    assert isinstance(checked, Config)
    check_options(checked.model.architecture, checked.model.cell)
    check_targets(checked.optimizer)
    if not isinstance(checked.task, TaskConfig):
        raise ConfigError("task: not a known task config (use task=<option> from conf/task/)")
    return checked
