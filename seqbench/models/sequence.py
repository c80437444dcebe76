"""Sequence model: encoder -> stacked (bi)directional sequence layers, plain or in residual
blocks -> dense readout.

Shapes: B = batch, T = time, F = input features, H = hidden size, O = output_dim,
D = 2 if bidirectional else 1, P_k = layer k's probe width (`Spec.probe_width`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.models.architectures import CellOptions, Spec
from seqbench.models.blocks import ResidualBlock
from seqbench.models.scan import length_mask, take_last_valid
from seqbench.models.time_chunks import run_in_time_chunks

ENCODERS = ("none", "linear", "embedding", "one_hot")
READOUTS = ("last", "every_step")
BLOCKS = ("plain", "residual")


class SequenceModel(nn.Module):
    """Encoder, ``n_layers`` recurrent layers of one architecture (optionally bidirectional),
    readout.

    ``architecture``: the layer type's `Spec` (``seqbench.models.architectures.get(name)``);
    ``cell``: its options (an instance of ``architecture.options``; None: their defaults).

    Encoders: "none" feeds float inputs (B, T, F) unchanged; "linear" applies
    Dense(embed_dim); "embedding" looks int tokens (B, T) up in an Embed(vocab_size,
    embed_dim) table; "one_hot" turns int tokens (B, T) into (B, T, vocab_size).
    ``embed_dim`` defaults to ``hidden_size``.

    Layer k > 0 reads layer k-1's outputs (B, T, D*H); in the bidirectional case the forward
    and backward outputs are concatenated [fwd, bwd] on the feature axis. Dropout
    (rng stream "dropout") acts between stacked layers only.

    Readouts: "last" -> Dense(O) on the output at each row's last valid step, i.e.
    [fwd[len-1], bwd[0]] when bidirectional, giving (B, O); "every_step" -> Dense(O) at every
    step, (B, T, O), with zeros at padded steps. ``head_sizes`` puts Dense(size) + ReLU layers
    before that Dense(O) (e.g. (64,) for the TensorFlow IMDB tutorial's model).

    ``block``: "plain" stacks the layers directly; "residual" wraps each in a
    `seqbench.models.blocks.ResidualBlock` (pre-norm, layer, skip, pre-norm, gated MLP of inner
    width ``mlp_width`` (None: 3 H, Griffin's), skip; dropout on each branch) and normalises the last block's output
    before the readout. Residual blocks keep the width H, so the encoder must give H features
    (linear or embedding with ``embed_dim`` None or H) and the layers be unidirectional.

    ``remat``: rematerialise each recurrent step in the backward pass (memory O(T B H) for the
    carries only, instead of every gate activation), for long sequences. ``remat_chunk``: instead,
    run each layer (each residual block) over time in chunks of that many steps, each chunk
    rematerialised (`seqbench.models.time_chunks`): the backward pass keeps each layer's inputs
    and outputs and one chunk's intermediate values; unidirectional models only.
    ``hoist_projection``: the layers that have an input projection (`Spec.hoistable`) compute it
    for the whole sequence before their time loop (`trainer.input_projection`).

    Submodules: ``encoder`` (linear/embedding only), ``layer_{k}_fwd``, ``layer_{k}_bwd``
    (bidirectional only) or ``block_{k}`` (residual: its layer is ``block_{k}/layer``),
    ``final_norm`` (residual), ``head_{k}``, ``readout``.
    """

    architecture: Spec
    hidden_size: int
    output_dim: int
    cell: CellOptions | None = None
    n_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    encoder: str = "none"
    vocab_size: int | None = None
    embed_dim: int | None = None
    readout: str = "last"
    remat: bool = False
    remat_chunk: int | None = None
    hoist_projection: bool = False
    head_sizes: tuple[int, ...] = ()
    block: str = "plain"
    mlp_width: int | None = None

    def __post_init__(self):
        self._validate()
        super().__post_init__()

    def _validate(self):
        def bad(field, allowed):
            value = getattr(self, field)
            return ValueError(f"SequenceModel: bad {field}={value!r}; allowed: {allowed}")

        if not isinstance(self.architecture, Spec):
            raise bad("architecture", "a Spec (seqbench.models.architectures.get(name))")
        if self.cell is not None and not isinstance(self.cell, self.architecture.options):
            raise bad("cell", f"None or {self.architecture.options.__name__} options")
        if self.encoder not in ENCODERS:
            raise bad("encoder", list(ENCODERS))
        if self.readout not in READOUTS:
            raise bad("readout", list(READOUTS))
        if self.hidden_size < 1:
            raise bad("hidden_size", "integers >= 1")
        if self.output_dim < 1:
            raise bad("output_dim", "integers >= 1")
        if self.n_layers < 1:
            raise bad("n_layers", "integers >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "floats in [0, 1)")
        if self.encoder in ("embedding", "one_hot") and (
            self.vocab_size is None or self.vocab_size < 1
        ):
            raise bad("vocab_size", f"an integer >= 1 when encoder={self.encoder!r}")
        if any(size < 1 for size in self.head_sizes):
            raise bad("head_sizes", "integers >= 1")
        if self.embed_dim is not None and self.embed_dim < 1:
            raise bad("embed_dim", "None or integers >= 1")
        if self.block not in BLOCKS:
            raise bad("block", list(BLOCKS))
        if self.mlp_width is not None and self.mlp_width < 1:
            raise bad("mlp_width", "None or integers >= 1")
        if self.remat_chunk is not None and self.remat_chunk < 1:
            raise bad("remat_chunk", "None or integers >= 1")
        if self.remat_chunk is not None and self.bidirectional:
            raise bad("bidirectional", "False with remat_chunk (chunks run forward in time)")
        if self.block == "residual":
            if self.encoder not in ("linear", "embedding"):
                raise bad("encoder", "linear or embedding with block='residual' (width H)")
            if self.embed_dim not in (None, self.hidden_size):
                raise bad("embed_dim", "None or hidden_size with block='residual'")
            if self.bidirectional:
                raise bad("bidirectional", "False with block='residual'")

    def encoded_width(self, features: int) -> int:
        """Features per step after the encoder, for raw inputs of `features` per step (F, or
        the vocabulary size for tokens)."""
        if self.encoder == "none":
            return features
        if self.encoder == "one_hot":
            return int(self.vocab_size)
        return self.embed_dim or self.hidden_size

    def layer_widths(self, features: int) -> tuple[int, ...]:
        """The input width of each layer (k = 0 .. n_layers-1) for raw inputs of `features`."""
        later = self.hidden_size * (2 if self.bidirectional else 1)
        return (self.encoded_width(features),) + (later,) * (self.n_layers - 1)

    def probe_widths(self, features: int) -> tuple[int, ...]:
        """P_k: the width of layer k's `hidden_offsets` (the gradient-flow probe)."""
        probe = self.architecture.probe_width
        if probe is None:
            return (self.hidden_size,) * self.n_layers
        return tuple(probe(self.options, f, self.hidden_size) for f in self.layer_widths(features))

    def state_size(self, features: int) -> int:
        """Floats of recurrent state per example: every layer's carry, both directions."""
        size = self.architecture.state_size
        directions = 2 if self.bidirectional else 1
        return directions * sum(
            size(self.options, f, self.hidden_size) for f in self.layer_widths(features)
        )

    def receptive_field(self) -> int | None:
        """Steps back the outputs see through the stacked layers (None: unbounded)."""
        field = self.architecture.receptive_field
        if field is None:
            return None
        return 1 + self.n_layers * (field(self.options) - 1)

    @property
    def options(self) -> CellOptions:
        """The architecture's options: ``cell``, or their defaults when it is None."""
        return self.cell if self.cell is not None else self.architecture.options()

    def _encode(self, inputs: jax.Array) -> jax.Array:
        embed_dim = self.embed_dim or self.hidden_size
        if self.encoder in ("embedding", "one_hot"):
            if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
                raise ValueError(
                    f"encoder={self.encoder!r} expects int tokens (B, T), "
                    f"got {inputs.dtype} {inputs.shape}"
                )
            if self.encoder == "one_hot":
                return jax.nn.one_hot(inputs, self.vocab_size, dtype=jnp.float32)
            return nn.Embed(self.vocab_size, embed_dim, name="encoder")(inputs)
        if inputs.ndim != 3:
            raise ValueError(
                f"encoder={self.encoder!r} expects float inputs (B, T, F), got {inputs.shape}"
            )
        if not jnp.issubdtype(inputs.dtype, jnp.floating):
            inputs = inputs.astype(jnp.float32)
        if self.encoder == "linear":
            return nn.Dense(embed_dim, name="encoder")(inputs)
        return inputs

    @nn.compact
    def __call__(
        self,
        inputs,
        seq_lengths=None,
        *,
        deterministic: bool = True,
        initial_carry=None,
        return_carry: bool = False,
        hidden_offsets=None,
    ):
        """inputs (B, T, F) float or (B, T) int tokens; seq_lengths (B,) int or None.

        Returns (B, O) for readout "last", (B, T, O) for "every_step". With `return_carry`, returns
        (outputs, carries): a tuple with each layer's final carry (in the architecture's form, see
        `Spec.initial_carry`), which `initial_carry` takes back to continue a sequence
        (unidirectional only).
        `hidden_offsets`: one (B, T, P_k) array per layer (`probe_widths`), added to the forward
        direction's hidden state h_t at every step (zeros leave the outputs unchanged; the gradient
        with respect to them is dL/dh_t, see :mod:`seqbench.train.gradient_flow`).
        `deterministic`: False in training (dropout acts).
        """
        if (initial_carry is not None or return_carry) and self.bidirectional:
            raise ValueError("SequenceModel: carrying state across calls needs bidirectional=False")
        architecture, options = self.architecture, self.options
        remat = self.remat and self.remat_chunk is None  # chunks are rematerialised whole

        def layer(name: str) -> nn.Module:
            return architecture.build_layer(
                options,
                self.hidden_size,
                remat=remat,
                hoist_projection=self.hoist_projection,
                name=name,
            )

        def run(module: nn.Module, x, start, offsets):
            """module (a layer or block) on x from carry `start`: (outputs, final carry)."""
            context = {"initial_carry": start, "hidden_offsets": offsets}
            if self.remat_chunk is not None:
                return run_in_time_chunks(
                    module,
                    x,
                    seq_lengths,
                    chunk=self.remat_chunk,
                    deterministic=deterministic,
                    **context,
                )
            return module(x, seq_lengths, deterministic=deterministic, **context)

        x = self._encode(jnp.asarray(inputs))
        carries = []
        for k in range(self.n_layers):
            start = None if initial_carry is None else initial_carry[k]
            offsets = None if hidden_offsets is None else hidden_offsets[k]
            if self.block == "residual":
                block = ResidualBlock(
                    architecture,
                    options,
                    remat=remat,
                    hoist_projection=self.hoist_projection,
                    mlp_width=self.mlp_width or 3 * self.hidden_size,
                    dropout=self.dropout,
                    name=f"block_{k}",
                )
                x, final = run(block, x, start, offsets)
                carries.append(final)
                continue
            if k > 0 and self.dropout > 0.0:
                x = nn.Dropout(rate=self.dropout)(x, deterministic=deterministic)
            fwd, final = run(layer(f"layer_{k}_fwd"), x, start, offsets)
            carries.append(final)
            if self.bidirectional:
                bwd, _ = layer(f"layer_{k}_bwd")(
                    x, seq_lengths, reverse=True, deterministic=deterministic
                )
                x = jnp.concatenate([fwd, bwd], axis=-1)
            else:
                x = fwd
        if self.block == "residual":
            x = nn.RMSNorm(name="final_norm")(x)
            fwd = x

        dense = nn.Dense(self.output_dim, name="readout")

        def head(features: jax.Array) -> jax.Array:
            for k, size in enumerate(self.head_sizes):
                features = nn.relu(nn.Dense(size, name=f"head_{k}")(features))
            return dense(features)

        if self.readout == "every_step":
            y = head(x)
            if seq_lengths is not None:
                y = jnp.where(length_mask(seq_lengths, y.shape[1])[..., None], y, 0.0)
        else:
            last = take_last_valid(fwd, seq_lengths)
            if self.bidirectional:
                last = jnp.concatenate([last, bwd[:, 0]], axis=-1)
            y = head(last)
        return (y, tuple(carries)) if return_carry else y

    def initial_carry(self, batch: int, features: int) -> tuple:
        """Zero carries for every layer, in the form `initial_carry` takes, for raw inputs of
        `features` per step (F, or the vocabulary size for tokens)."""
        zero = self.architecture.initial_carry
        return tuple(
            zero(self.options, batch, width, self.hidden_size)
            for width in self.layer_widths(features)
        )
