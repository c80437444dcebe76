"""Where the fused LSTM's backward loop spends its time (the README's performance section).

    .venv/bin/python experiments/lstm_loop_cost.py            # the adding configuration
    .venv/bin/python experiments/lstm_loop_cost.py --batch 32 --length 1020 --hidden 50   # copy

Times three reverse `lax.scan` loops over the arrays `seqbench.models.fused_scan` streams through
the LSTM's backward pass (B = batch, T = length, H = hidden; per step s (B, 4H), c_{t-1}, c_t and
dL/dy_t (B, H) in, d_pre (B, 4H) stacked out):
- the whole step: `LSTMRules.backward` and `d_pre @ W_hhᵀ`;
- its arithmetic only: `LSTMRules.backward`, no matmul;
- streaming only: the same arrays read and the output stacked, with no arithmetic;
each the median of 15 calls after one to compile, in ms and µs per step. Run it with the machine
otherwise idle.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from seqbench.models.architectures.lstm import LSTMRules


def loop(kind: str, batch: int, hidden: int):
    """A jitted reverse scan of `kind` ("whole", "arithmetic", "streaming") over (s, c_prev, c,
    d_ys, w_hh): s (T, B, 4H), c_prev, c, d_ys (T, B, H), w_hh (H, 4H)."""
    rules = LSTMRules()

    def run(s, c_prev, c, d_ys, w_hh):
        def step(d_carry, inputs):
            s_t, c_prev_t, c_t, d_y = inputs
            d_h, d_c = d_carry
            if kind == "streaming":
                return (d_h + d_y, d_c + c_t + c_prev_t), s_t * 2.0
            h = jnp.zeros_like(c_t)  # the LSTM's backward reads no h
            direct, d_pre, _ = rules.backward(s_t, (h, c_prev_t), (h, c_t), (d_h + d_y, d_c))
            d_h = d_pre @ w_hh.T if kind == "whole" else d_pre[:, :hidden] * 0.5
            return (d_h, direct[1]), d_pre

        start = (jnp.zeros((batch, hidden)), jnp.zeros((batch, hidden)))
        return jax.lax.scan(step, start, (s, c_prev, c, d_ys), reverse=True)

    return jax.jit(run)


def median_ms(function, arguments, calls: int = 15) -> float:
    """The median wall time of `calls` calls, in ms, after one call to compile."""
    jax.block_until_ready(function(*arguments))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(function(*arguments))
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=600)
    parser.add_argument("--hidden", type=int, default=130)
    args = parser.parse_args()
    b, t, h = args.batch, args.length, args.hidden
    keys = jax.random.split(jax.random.key(0), 5)
    arguments = (
        jax.nn.sigmoid(jax.random.normal(keys[0], (t, b, 4 * h))),
        jax.random.normal(keys[1], (t, b, h)),
        jax.random.normal(keys[2], (t, b, h)),
        jax.random.normal(keys[3], (t, b, h)),
        jax.random.normal(keys[4], (h, 4 * h)) * 0.05,
    )
    print(f"LSTM backward loop, B={b} T={t} H={h}, on {jax.devices()[0].device_kind}")
    for kind in ("whole", "arithmetic", "streaming"):
        ms = median_ms(loop(kind, b, h), arguments)
        print(f"{kind:>10}: {ms:7.1f} ms  ({1e3 * ms / t:5.1f} µs per step)")


if __name__ == "__main__":
    main()
