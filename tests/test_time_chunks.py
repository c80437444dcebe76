"""trainer.remat_chunk: a model run over time in rematerialised chunks equals the model run whole.

For each architecture (plain block, then residual): outputs, final carries, the gradients with
respect to the parameters and to the hidden offsets (the gradient-flow probe), from a given carry
and from none, with padded rows and T not a multiple of the chunk.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scan_checks import run_compiled

from seqbench.config import ConfigError, TrainerConfig
from seqbench.models.architectures import ARCHITECTURES
from seqbench.models.sequence import SequenceModel

B, T, F, H, CHUNK = 3, 11, 3, 6, 4
LENGTHS = jnp.array([T, 6, 0])
#: by default: a linear scan in its residual blocks (mingru), a tuple carry (lstm), RG-LRU's reset
#: at the first step and its convolution's carry (rglru); the other pairs under -m slow
BY_DEFAULT = (("mingru", "residual"), ("lstm", "plain"), ("rglru", "plain"))
SMALL = {"tcn": {"levels": 3}}


def _model(name, block, remat_chunk):
    spec = ARCHITECTURES[name]
    return SequenceModel(
        architecture=spec,
        cell=spec.options(**SMALL.get(name, {})),
        hidden_size=H,
        output_dim=2,
        n_layers=2,
        block=block,
        encoder="linear",
        readout="every_step",
        remat=remat_chunk is not None,
        remat_chunk=remat_chunk,
    )


@pytest.mark.parametrize(
    ("name", "block"),
    [
        pair if pair in BY_DEFAULT else pytest.param(*pair, marks=pytest.mark.slow)
        for pair in ((n, b) for n in ARCHITECTURES for b in ("plain", "residual"))
    ],
)
def test_chunks_equal_one_call(name, block):
    whole, chunked = _model(name, block, None), _model(name, block, CHUNK)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    offsets = tuple(jnp.zeros((B, T, w)) for w in whole.probe_widths(F))

    def run(x, offsets):
        variables = whole.init(jax.random.key(1), x[:, :2])
        carry = whole.apply(variables, x[:, :5], return_carry=True)[1]
        results = {}
        for label, model in (("whole", whole), ("chunked", chunked)):
            for start in (None, carry):

                def loss(params, offsets, model=model, start=start):
                    y, final = model.apply(
                        {"params": params},
                        x,
                        LENGTHS,
                        initial_carry=start,
                        return_carry=True,
                        hidden_offsets=offsets,
                    )
                    return jnp.sum(jnp.sin(y)), (y, final)

                grads, outputs = jax.grad(loss, argnums=(0, 1), has_aux=True)(
                    variables["params"], offsets
                )
                results[label, start is None] = outputs, grads
        return results

    results = run_compiled(run, x, offsets)
    for fresh in (True, False):
        expected, got = results["whole", fresh], results["chunked", fresh]
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for left, right in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-5, err_msg=f"{fresh=}")


def test_remat_chunk_is_checked_before_anything_runs():
    with pytest.raises(ConfigError, match=r"trainer\.remat_chunk"):
        TrainerConfig(remat_chunk=64)  # without remat
    with pytest.raises(ConfigError, match=r"trainer\.remat_chunk"):
        TrainerConfig(remat=True, remat_chunk=0)
    with pytest.raises(ValueError, match="bidirectional"):
        SequenceModel(ARCHITECTURES["gru"], 4, 2, bidirectional=True, remat=True, remat_chunk=8)
