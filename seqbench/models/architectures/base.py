"""What an architecture is to the rest of seqbench: a sequence layer, its options, and a `Spec`.

Shapes: B = batch, T = time, F = input features, H = hidden size.

An architecture is one recurrent layer type (one direction over a whole sequence). The sequence
model stacks it (`seqbench.models.sequence.SequenceModel`: layers `layer_{k}_fwd`, and
`layer_{k}_bwd` when bidirectional); the config selects it by name (`model.architecture`) with its
options in `model.cell`; the speed bench, the PyTorch state-dict conversion and the report tables
ask its `Spec` for what they need. Register a new one with
`seqbench.models.architectures.register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import flax.linen as nn
    import jax


class SequenceLayer(Protocol):
    """One direction of one recurrent layer, run over a whole sequence (a Flax linen module)."""

    def __call__(
        self,
        inputs: jax.Array,
        seq_lengths: jax.Array | None = None,
        reverse: bool = False,
        initial_carry: Any = None,
        hidden_offsets: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, Any]:
        """inputs (B, T, F) float -> (outputs (B, T, H), final_carry).

        seq_lengths (B,) int or None: steps t >= seq_lengths[b] leave row b's carry unchanged and
            output zeros there (None: all T steps valid).
        reverse: run each row's valid prefix from its last step down to step 0; outputs stay
            aligned with the input positions.
        initial_carry: the carry to start from, in the form `Spec.initial_carry` gives (None: the
            zero carry); truncated backpropagation through time continues a sequence with it.
        hidden_offsets (B, T, P) or None, P = `Spec.probe_width`: added to the state the layer
            carries from step t to step t+1 (the hidden state h_t, right after step t computes it;
            a layer without one, the TCN, adds them to its input x_t); zeros leave the outputs
            unchanged and the gradient with respect to them is dL/dh_t along every path (see
            `seqbench.train.gradient_flow`).
        deterministic: False in training, so that dropout inside the layer (if any) acts; rng
            stream "dropout".
        final_carry: the carry after the last valid step of each row, in `initial_carry`'s form.
        """
        ...


def _hash_by_value(self: CellOptions) -> int:
    return hash((type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self))))


@dataclass
class CellOptions:
    """Base of every architecture's options: the structured config of `model.cell`.

    Subclass it as a (non-frozen: Hydra makes frozen dataclasses read-only, so overrides such as
    `model.cell.forget_bias=2` would fail) dataclass with a comment on every field and the value
    checks in `__post_init__` (`seqbench.config.require` / `choice`, keys `model.cell.<field>`).
    Options compare and hash by value (they sit in a Flax module, which may be hashed), so keep
    their fields of hashable types (str, int, float, bool, tuples).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # set on each subclass, so that @dataclass(eq=True) keeps it instead of removing it
        cls.__hash__ = _hash_by_value  # type: ignore[method-assign]


class LayerFactory(Protocol):
    """`layer(options, hidden_size, *, remat, name)`: the Flax module of one layer direction."""

    def __call__(
        self, options: Any, hidden_size: int, *, remat: bool = False, name: str | None = None
    ) -> nn.Module: ...


@dataclass(frozen=True)
class Spec:
    """Everything the rest of seqbench asks of an architecture (one per architecture file)."""

    #: registry key: the value of `model.architecture`, `seqbench-speed --cells`, the run's name
    name: str
    #: the options dataclass (a CellOptions subclass): the schema of `model.cell`, registered with
    #: Hydra as `model/cell/<name>_schema`
    options: type[CellOptions]
    #: layer(options, hidden_size, *, remat, name) -> a SequenceLayer module; `remat` recomputes
    #: each step in the backward pass (memory for the carries only); `name` is the Flax module name
    layer: LayerFactory
    #: initial_carry(options, batch, features, hidden_size) -> the zero carry of one layer that
    #: reads `features` inputs per step, in the form the layer's `initial_carry` argument takes
    #: and its final carry has: a pytree of real float arrays with the batch first
    initial_carry: Callable[[Any, int, int, int], Any]
    #: state_size(options, features, hidden_size) -> floats per example in the carry of one layer
    #: direction that reads `features` inputs per step (e.g. H, or 2H for (h, c)); a complex
    #: number counts as two floats
    state_size: Callable[[Any, int, int], int]
    #: step_flops(options, batch, length, features, hidden) -> matmul FLOPs of one forward pass
    #: of one layer direction over (batch, length, features) inputs (the speed bench's FLOP count)
    step_flops: Callable[[Any, int, int, int, int], float]
    #: the torch.nn class with the same equations and parameters (e.g. "GRU"): the PyTorch
    #: state-dict round trip and the speed bench's PyTorch peer; None: there is none
    torch_module: str | None = None
    #: flax_peer(hidden_size) -> a plain Flax linen cell (nn.RNNCellBase) for the speed bench's
    #: plain-Flax peer, run under nn.RNN; None: there is none
    flax_peer: Callable[[int], Any] | None = None
    #: how figures and papers write the architecture ("LSTM", "minGRU"); None: the name
    display_name: str | None = None
    #: label(options) -> the report tables' column label of a run, from its `config.model.cell`
    #: dict (possibly missing keys: take the defaults); None: the name
    label: Callable[[Mapping[str, Any]], str] | None = None
    #: probe_width(options, features, hidden_size) -> P, the width of the `hidden_offsets` the
    #: layer takes (the gradient-flow probe); None: H
    probe_width: Callable[[Any, int, int], int] | None = None
    #: receptive_field(options) -> how many steps back one layer sees (a convolution's window);
    #: None: unbounded (a recurrence)
    receptive_field: Callable[[Any], int] | None = None
    #: the block the architecture's paper stacks it in ("plain" or "residual"): `model.block=auto`
    block: str = "plain"
    #: an int option (None: H) that `model.param_budget` may set to land within 2% of the budget
    #: in a plain stack when one step of H moves the count by more (the count must grow with it);
    #: None: H alone decides
    budget_option: str | None = None
    #: the values its options' `scan` field takes, the default first (linear recurrences); empty
    #: for an architecture with one way to run
    scans: tuple[str, ...] = ()
    #: its `layer` also takes `hoist_projection` (bool): the input projection computed for the
    #: whole sequence before the time loop instead of inside each step (`trainer.input_projection`)
    hoistable: bool = False

    def build_layer(
        self,
        options: Any,
        hidden_size: int,
        *,
        remat: bool = False,
        hoist_projection: bool = False,
        name: str | None = None,
    ) -> nn.Module:
        """The Flax module of one layer direction; `hoist_projection` is ignored by an architecture
        that is not `hoistable` (it has no input projection to hoist)."""
        if self.hoistable:
            return self.layer(
                options, hidden_size, remat=remat, hoist_projection=hoist_projection, name=name
            )
        return self.layer(options, hidden_size, remat=remat, name=name)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"architecture name {self.name!r}: use letters, digits and _")
        if not (isinstance(self.options, type) and issubclass(self.options, CellOptions)):
            raise TypeError(f"architecture {self.name!r}: options must subclass CellOptions")
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"architecture {self.name!r}: options must be a dataclass")
        if self.block not in ("plain", "residual"):
            raise ValueError(f"architecture {self.name!r}: block must be 'plain' or 'residual'")
        if self.scans and not any(f.name == "scan" for f in dataclasses.fields(self.options)):
            raise TypeError(f"architecture {self.name!r}: scans listed, but no options.scan field")
        if self.budget_option is not None and not any(
            f.name == self.budget_option for f in dataclasses.fields(self.options)
        ):
            raise TypeError(f"architecture {self.name!r}: no option {self.budget_option!r}")
        if self.label is None:
            name = self.name
            object.__setattr__(self, "label", lambda options: name)
