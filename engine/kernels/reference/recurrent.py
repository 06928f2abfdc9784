"""Reference LSTM: a per-timestep numpy loop in float64, straight from the Keras equations."""

from __future__ import annotations

import numpy as np

__all__ = ["lstm"]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-v))
    return out


def lstm(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None = None,
    return_sequences: bool = False,
) -> np.ndarray:
    """x (N, T, F); kernel (F, 4U); recurrent (U, 4U); bias (4U); gates i, f, c, o."""
    x = np.asarray(x, np.float64)
    w = np.asarray(kernel, np.float64)
    r = np.asarray(recurrent, np.float64)
    n, steps, _ = x.shape
    u = r.shape[0]
    b = np.zeros(4 * u) if bias is None else np.asarray(bias, np.float64)
    h = np.zeros((n, u))
    c = np.zeros((n, u))
    hs = []
    for t in range(steps):
        z = x[:, t, :] @ w + h @ r + b
        i = _sigmoid(z[:, :u])
        f = _sigmoid(z[:, u:2 * u])
        g = np.tanh(z[:, 2 * u:3 * u])
        o = _sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    if return_sequences:
        return np.stack(hs, axis=1) if hs else np.zeros((n, 0, u))
    return h
