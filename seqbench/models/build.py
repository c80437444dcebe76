"""Build a `SequenceModel` from a `ModelConfig` and the task's `TaskSpec`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax.numpy as jnp

from seqbench.config import ModelConfig
from seqbench.models.architectures import get
from seqbench.models.budget import hidden_size_for_budget, model_param_count, sizes_for_budget
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


def build_model(
    cfg: ModelConfig,
    spec: TaskSpec,
    remat: bool = False,
    remat_chunk: int | None = None,
    hoist_projection: bool = False,
) -> BuiltModel:
    """The configured model for `spec`: `cfg.architecture` (a registered name) with the options
    `cfg.cell` (None: that architecture's defaults), stacked in `cfg.block` ("auto": the
    architecture's paper form); `cfg.param_budget` (if set) decides the hidden size.

    `remat` recomputes each recurrent step in the backward pass instead of storing its gates;
    `remat_chunk` runs each layer over time in chunks of that many steps, each recomputed whole
    (`SequenceModel.remat_chunk`); `hoist_projection` computes the input projection of the layers
    that have one before their time loop (`SequenceModel.hoist_projection`).
    """
    architecture = get(cfg.architecture)
    block = architecture.block if cfg.block == "auto" else cfg.block
    encoder = cfg.encoder
    if encoder == "auto" and block == "residual":
        encoder = "embedding" if spec.input_kind == "tokens" else "linear"
    elif encoder == "auto":
        encoder = "one_hot" if spec.input_kind == "tokens" else "none"
    if block == "residual" and encoder not in ("linear", "embedding"):
        raise ValueError(
            f"model.encoder: {encoder!r} with model.block=residual; residual blocks keep the width "
            "hidden_size, so the encoder must be linear or embedding (or auto)"
        )
    if block == "residual" and cfg.embed_dim is not None:
        raise ValueError(
            "model.embed_dim: must be null with model.block=residual (the blocks' width is "
            "model.hidden_size)"
        )
    if block == "residual" and cfg.bidirectional:
        raise ValueError("model.bidirectional: residual blocks are unidirectional (model.block)")
    if remat_chunk is not None and cfg.bidirectional:
        raise ValueError(
            "trainer.remat_chunk: needs model.bidirectional=false (chunks run forward in time)"
        )
    if spec.input_kind == "tokens" and encoder in ("none", "linear"):
        raise ValueError(
            f"model.encoder: {encoder!r} needs real-valued inputs; the task gives tokens"
        )
    if spec.input_kind == "real" and encoder in ("embedding", "one_hot"):
        raise ValueError(
            f"model.encoder: {encoder!r} needs token inputs; the task gives real values"
        )
    readout = spec.readout if cfg.readout == "auto" else cfg.readout
    options = architecture.options() if cfg.cell is None else cfg.cell

    def make(hidden_size: int, mlp_width: int | None = None) -> SequenceModel:
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
            readout=readout,
            remat=remat,
            remat_chunk=remat_chunk,
            hoist_projection=hoist_projection,
            head_sizes=tuple(cfg.head_sizes),
            block=block,
            mlp_width=mlp_width,
            embed_dim=None if block == "residual" else cfg.embed_dim,
        )

    def default_mlp_width(hidden_size: int) -> int | None:
        return cfg.mlp_expansion * hidden_size if block == "residual" else None

    example = example_inputs(spec)
    hidden = cfg.hidden_size
    mlp_width = default_mlp_width(hidden)
    if cfg.param_budget is not None and block == "residual":
        # the MLP width fine-tunes the count: a step of H moves residual blocks by ~10 H^2
        hidden, mlp_width = sizes_for_budget(make, example, cfg.param_budget, default_mlp_width)
    elif cfg.param_budget is not None and architecture.budget_option is not None:
        field = architecture.budget_option

        def make_fine(hidden_size: int, width: int) -> SequenceModel:
            fine = dataclasses.replace(options, **{field: width})
            return make(hidden_size).clone(cell=fine)

        hidden, width = sizes_for_budget(make_fine, example, cfg.param_budget, lambda h: h)
        options = dataclasses.replace(options, **{field: width})
    elif cfg.param_budget is not None:
        hidden = hidden_size_for_budget(make, example, cfg.param_budget)
    model = make(hidden, mlp_width)
    return BuiltModel(model, hidden, model_param_count(model, example))
