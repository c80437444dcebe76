"""Convert SequenceModel recurrent weights to/from the state dicts of PyTorch's recurrent modules.

For architectures whose `Spec.torch_module` names the torch.nn class with the same equations and
parameters (the projected cells of `seqbench.models.architectures.projected`); pass
``architecture`` to have one without a PyTorch counterpart refused. Pure NumPy; torch is never
imported. Layer ``layer_{k}_fwd`` maps to the PyTorch suffix
``_l{k}`` and ``layer_{k}_bwd`` to ``_l{k}_reverse``:

    weight_ih_l{k}[_reverse] = w_ih.T  (G*H, in)      bias_ih_l{k}[_reverse] = b_ih  (G*H,)
    weight_hh_l{k}[_reverse] = w_hh.T  (G*H, H)       bias_hh_l{k}[_reverse] = b_hh  (G*H,)

Gate order is already PyTorch's, so no block permutation is needed. Encoder and readout
parameters have no PyTorch RNN counterpart and are left alone.
"""

import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqbench.models.architectures import Spec, get

_LAYER = re.compile(r"^layer_(\d+)_(fwd|bwd)$")
_TRANSPOSED = {"w_ih": "weight_ih", "w_hh": "weight_hh"}
_PLAIN = {"b_ih": "bias_ih", "b_hh": "bias_hh"}


def check_architecture(architecture: Spec | str | None) -> None:
    """ValueError (one line) when `architecture` (a Spec or a registered name) has no PyTorch
    counterpart (`Spec.torch_module` None); None checks nothing."""
    if architecture is None:
        return
    spec = get(architecture) if isinstance(architecture, str) else architecture
    if spec.torch_module is None:
        raise ValueError(
            f"architecture {spec.name!r} has no PyTorch counterpart (its Spec.torch_module is "
            "None): no state_dict to convert to or from"
        )


def _params_tree(params: Mapping) -> Mapping:
    return params["params"] if "params" in params else params


def _torch_names(params: Mapping) -> dict[tuple[str, str], str]:
    """Map (flax layer name, flax param name) -> PyTorch name, checking the layer layout."""
    layers = {}
    for name in params:
        match = _LAYER.match(name)
        if match:
            layers[name] = (int(match.group(1)), match.group(2))
    if not layers:
        raise ValueError("no recurrent layers ('layer_{k}_fwd') found in params")
    depth = 1 + max(k for k, _ in layers.values())
    has_bwd = any(d == "bwd" for _, d in layers.values())
    directions = ("fwd", "bwd") if has_bwd else ("fwd",)
    expected = {f"layer_{k}_{d}" for k in range(depth) for d in directions}
    if set(layers) != expected:
        raise ValueError(
            f"inconsistent recurrent layers {sorted(layers)}; expected {sorted(expected)}"
        )
    names = {}
    for k in range(depth):  # PyTorch order: l0, l0_reverse, l1, ...
        for direction in directions:
            suffix = f"_l{k}" + ("_reverse" if direction == "bwd" else "")
            for flax_name, torch_name in (_TRANSPOSED | _PLAIN).items():
                names[(f"layer_{k}_{direction}", flax_name)] = torch_name + suffix
    return names


def to_torch_state_dict(
    params: Mapping, *, architecture: Spec | str | None = None
) -> dict[str, np.ndarray]:
    """PyTorch-named recurrent weights from a SequenceModel params tree (or its variables).

    ``architecture`` (the model's Spec or name), when given, must have a `torch_module`.

    Returns e.g. {"weight_ih_l0": (G*H, F), "weight_hh_l0": (G*H, H), "bias_ih_l0": (G*H,),
    "bias_hh_l0": (G*H,), ..., "weight_ih_l1_reverse": (G*H, D*H), ...} as NumPy arrays.
    """
    check_architecture(architecture)
    tree = _params_tree(params)
    state = {}
    for (layer, flax_name), torch_name in _torch_names(tree).items():
        value = np.asarray(tree[layer][flax_name])
        state[torch_name] = value.T.copy() if flax_name in _TRANSPOSED else value.copy()
    return state


def from_torch_state_dict(
    state_dict: Mapping[str, Any], params: Mapping, *, architecture: Spec | str | None = None
) -> Any:
    """New params (same structure as ``params``) with recurrent weights from ``state_dict``.

    ``params`` is a SequenceModel params tree or its full variables dict; values in
    ``state_dict`` are anything ``np.asarray`` accepts (NumPy arrays, CPU torch tensors).
    Raises ValueError on missing or unexpected keys, on shape mismatches, and for an
    ``architecture`` (the model's Spec or name, when given) without a `torch_module`.
    """
    check_architecture(architecture)
    tree = _params_tree(params)
    names = _torch_names(tree)
    wanted = set(names.values())
    missing = sorted(wanted - set(state_dict))
    unexpected = sorted(set(state_dict) - wanted)
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not match the model: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    new_tree = {name: dict(sub) if _LAYER.match(name) else sub for name, sub in tree.items()}
    for (layer, flax_name), torch_name in names.items():
        old, value = tree[layer][flax_name], np.asarray(state_dict[torch_name])
        transposed = flax_name in _TRANSPOSED
        want = tuple(old.shape)[::-1] if transposed else tuple(old.shape)
        if value.shape != want:
            raise ValueError(
                f"shape mismatch for {torch_name!r}: model expects {want}, "
                f"state_dict has {value.shape}"
            )
        new_tree[layer][flax_name] = jnp.asarray(value.T if transposed else value, old.dtype)
    if "params" in params:
        return {**params, "params": new_tree}
    return new_tree
