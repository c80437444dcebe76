"""Build a `SequenceModel` from a `ModelConfig` and the task's `TaskSpec`."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from seqbench.config import ModelConfig
from seqbench.models.architectures import get
from seqbench.models.budget import hidden_size_for_budget, model_param_count
from seqbench.models.sequence import SequenceModel
from seqbench.tasks.base import TaskSpec


@dataclass(frozen=True)
class BuiltModel:
    """The model, its resolved hidden size and its exact parameter count."""

    model: SequenceModel
    hidden_size: int
    param_count: int


def example_inputs(spec: TaskSpec) -> jnp.ndarray:
    """A one-example, one-step input of the task's kind: (1, 1, F) float or (1, 1) int."""
    if spec.input_kind == "tokens":
        return jnp.zeros((1, 1), jnp.int32)
    return jnp.zeros((1, 1, spec.input_dim), jnp.float32)


def build_model(cfg: ModelConfig, spec: TaskSpec, remat: bool = False) -> BuiltModel:
    """The configured model for `spec`: `cfg.architecture` (a registered name) with the options
    `cfg.cell` (None: that architecture's defaults); `cfg.param_budget` (if set) decides the hidden
    size.

    `remat` recomputes each recurrent step in the backward pass instead of storing its gates.
    """
    encoder = cfg.encoder
    if encoder == "auto":
        encoder = "one_hot" if spec.input_kind == "tokens" else "none"
    if spec.input_kind == "tokens" and encoder in ("none", "linear"):
        raise ValueError(
            f"model.encoder: {encoder!r} needs real-valued inputs; the task gives tokens"
        )
    if spec.input_kind == "real" and encoder in ("embedding", "one_hot"):
        raise ValueError(
            f"model.encoder: {encoder!r} needs token inputs; the task gives real values"
        )
    readout = spec.readout if cfg.readout == "auto" else cfg.readout
    architecture = get(cfg.architecture)
    options = architecture.options() if cfg.cell is None else cfg.cell

    def make(hidden_size: int) -> SequenceModel:
        return SequenceModel(
            architecture=architecture,
            cell=options,
            hidden_size=hidden_size,
            output_dim=spec.output_dim,
            n_layers=cfg.n_layers,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout,
            encoder=encoder,
            vocab_size=spec.input_dim if spec.input_kind == "tokens" else None,
            embed_dim=cfg.embed_dim,
            readout=readout,
            remat=remat,
            head_sizes=tuple(cfg.head_sizes),
        )

    example = example_inputs(spec)
    hidden = cfg.hidden_size
    if cfg.param_budget is not None:
        hidden = hidden_size_for_budget(make, example, cfg.param_budget)
    model = make(hidden)
    return BuiltModel(model, hidden, model_param_count(model, example))
