"""Float64 NumPy reference of the PyTorch nn.RNN / nn.LSTM / nn.GRU step equations, and random weights.

PyTorch layout throughout: W_ih (G*H, F), W_hh (G*H, H), b_ih, b_hh (G*H,); gate order
(i, f, g, o) for LSTM and (r, z, n) for GRU, with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
"""

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def torch_step(cell, x_t, h, c, w_ih, w_hh, b_ih, b_hh, act=np.tanh):
    """One step of cell ("simple_rnn", "lstm" or "gru"): x_t (F,), h, c (H,) -> new (h, c).

    ``c`` is only updated by the LSTM; ``act`` is the SimpleRNN nonlinearity.
    """
    gi, gh = w_ih @ x_t + b_ih, w_hh @ h + b_hh
    if cell == "simple_rnn":
        h = act(gi + gh)
    elif cell == "lstm":
        i, f, g, o = np.split(gi + gh, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    else:
        (i_r, i_z, i_n), (h_r, h_z, h_n) = np.split(gi, 3), np.split(gh, 3)
        r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        h = (1.0 - z) * np.tanh(i_n + r * h_n) + z * h
    return h, c


def torch_direction(cell, x, length, w_ih, w_hh, b_ih, b_hh, reverse=False, act=np.tanh):
    """One direction over x[:length] of a row x (T, F), from zero state, in float64.

    Steps 0..length-1, or length-1..0 if reverse. -> outputs (T, H) (zeros from step
    ``length`` on), final h (H,), final c (H,).
    """
    w_ih, w_hh, b_ih, b_hh = (np.asarray(w, np.float64) for w in (w_ih, w_hh, b_ih, b_hh))
    hidden = w_hh.shape[1]
    out = np.zeros((x.shape[0], hidden))
    h, c = np.zeros(hidden), np.zeros(hidden)
    for t in range(length - 1, -1, -1) if reverse else range(length):
        h, c = torch_step(cell, x[t], h, c, w_ih, w_hh, b_ih, b_hh, act=act)
        out[t] = h
    return out, h, c


def torch_batch(cell, x, lengths, w_ih, w_hh, b_ih, b_hh, reverse=False, act=np.tanh):
    """torch_direction on every row: x (B, T, F), lengths (B,) -> outputs (B, T, H), h, c (B, H)."""
    rows = [
        torch_direction(cell, row, n, w_ih, w_hh, b_ih, b_hh, reverse=reverse, act=act)
        for row, n in zip(x, lengths, strict=True)
    ]
    return tuple(np.stack(parts) for parts in zip(*rows, strict=True))


def random_torch_weights(rng, gates, features, hidden, scale=0.6):
    """PyTorch layout: W_ih (G*H, F), W_hh (G*H, H), b_ih, b_hh (G*H,)."""
    gh = gates * hidden
    return [scale * rng.standard_normal(s) for s in [(gh, features), (gh, hidden), (gh,), (gh,)]]


def random_variables(model, inputs, seed=0, scale=0.5):
    """Random normal values for every parameter ``model.init`` would create (no init compute)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), inputs)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
    )
