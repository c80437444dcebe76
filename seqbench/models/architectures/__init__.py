"""The registry of architectures (sequence layer types), by name.

Adding one is one file, one registration line and one YAML:

1. `seqbench/models/architectures/<file>.py`: the options dataclass (a `CellOptions`, the schema
   of `model.cell`), the Flax layer (a `SequenceLayer`) and its `Spec` (see `base.py`; the
   projected cells share `projected.py`);
2. one `register(<file>.SPEC)` line below (registration order is the report tables' column order);
3. `conf/model/<name>.yaml`, listing `- cell: <name>_schema` in its defaults and setting
   `architecture: <name>` (see `conf/model/lstm.yaml`).

`seqbench.store` registers every Spec's options with Hydra (`model/cell/<name>_schema`) and checks
that `model.cell` holds the options of `model.architecture`. An architecture registered outside
this package (a plugin, a test) must be registered before `seqbench.store.register_configs()` runs
(importing `seqbench.cli.train` runs it), or that be called again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from seqbench.config import ConfigError
from seqbench.models.architectures import elman, gru, lru, lstm, mingru, minlstm, rglru, tcn
from seqbench.models.architectures.base import CellOptions, SequenceLayer, Spec

#: every registered architecture, by name, in registration order (the tables' column order)
ARCHITECTURES: dict[str, Spec] = {}


def register(spec: Spec) -> Spec:
    """Add `spec` under `spec.name` (ValueError if that name is taken); returns it."""
    if not isinstance(spec, Spec):
        raise TypeError(f"register() takes a Spec, got {type(spec).__name__}")
    if spec.name in ARCHITECTURES:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    ARCHITECTURES[spec.name] = spec
    return spec


def unregister(name: str) -> Spec:
    """Remove the architecture `name` (tests, plugins); returns its Spec."""
    return ARCHITECTURES.pop(get(name).name)


def get(name: str) -> Spec:
    """The Spec registered as `name`; ValueError naming the known architectures otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None


def check_options(architecture: str, cell: Any) -> Spec:
    """The Spec of a validated config's `model.architecture`, after checking that `model.cell`
    holds its options; ConfigError (one line, naming the key) otherwise."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"model.architecture: got {architecture!r}, expected one of {', '.join(ARCHITECTURES)}"
        )
    spec = ARCHITECTURES[architecture]
    if isinstance(cell, spec.options):
        return spec
    holder = next((s.name for s in ARCHITECTURES.values() if isinstance(cell, s.options)), None)
    if holder is not None:
        raise ConfigError(
            f"model.architecture: {architecture!r}, but model.cell holds the options of "
            f"{holder!r}; choose the architecture with its model option (model={architecture}, "
            "conf/model/), not by overriding model.architecture"
        )
    raise ConfigError(
        f"model.cell: not the options of architecture {architecture!r} ({spec.options.__name__}); "
        f"the model option's defaults list must name them: '- cell: {architecture}_schema'"
    )


def cell_options_of(model: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(architecture name, options dict) of a run record's `config.model` dict, old or new.

    New records: `architecture` and its options under `cell`. Records from before the registry:
    `cell` is the name and the options sat beside it at the model level (`activation`,
    `recurrent_init`, `forget_bias`, present for every cell); those the architecture has are taken.
    (None, {}) when the record names no architecture.
    """
    cell = model.get("cell")
    if model.get("architecture") is not None:
        return str(model["architecture"]), dict(cell) if isinstance(cell, Mapping) else {}
    if not isinstance(cell, str):
        return None, {}
    spec = ARCHITECTURES.get(cell)
    names = {f.name for f in dataclasses.fields(spec.options)} if spec else set()
    return cell, {key: value for key, value in model.items() if key in names}


register(elman.SPEC)
register(lstm.SPEC)
register(gru.SPEC)
register(mingru.SPEC)
register(minlstm.SPEC)
register(lru.SPEC)
register(rglru.SPEC)
register(tcn.SPEC)

__all__ = [
    "ARCHITECTURES",
    "CellOptions",
    "SequenceLayer",
    "Spec",
    "cell_options_of",
    "check_options",
    "get",
    "register",
    "unregister",
]
