"""Reference LSTM: a per-timestep numpy loop in float64, straight from the Keras equations."""

from __future__ import annotations

import numpy as np

__all__ = ["gru_seq", "lstm", "lstm_seq"]


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


def lstm_seq(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
    h0: np.ndarray | None = None, c0: np.ndarray | None = None, reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTMSeq: every h (N, T, U) aligned with x, final h and c; state starts at h0, c0."""
    x = np.asarray(x, np.float64)
    w, r, b = (np.asarray(v, np.float64) for v in (kernel, recurrent, bias))
    n, steps, _ = x.shape
    u = r.shape[0]
    h = np.zeros((n, u)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((n, u)) if c0 is None else np.asarray(c0, np.float64)
    y = np.zeros((n, steps, u))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        z = x[:, t, :] @ w + h @ r + b
        i, f = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u])
        g, o = np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        y[:, t] = h
    return y, h, c


def gru_seq(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
    h0: np.ndarray | None = None, reset_after: bool = True, reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """GRUSeq: gates z, r, h; bias (2, 3U) = input and recurrent biases."""
    x = np.asarray(x, np.float64)
    w, r = np.asarray(kernel, np.float64), np.asarray(recurrent, np.float64)
    bi, br = np.asarray(bias, np.float64).reshape(2, -1)
    n, steps, _ = x.shape
    u = r.shape[0]
    h = np.zeros((n, u)) if h0 is None else np.asarray(h0, np.float64)
    y = np.zeros((n, steps, u))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        xz = x[:, t, :] @ w + bi
        hz = h @ r + br
        z = _sigmoid(xz[:, :u] + hz[:, :u])
        rg = _sigmoid(xz[:, u:2 * u] + hz[:, u:2 * u])
        if reset_after:
            nn = np.tanh(xz[:, 2 * u:] + rg * hz[:, 2 * u:])
        else:
            nn = np.tanh(xz[:, 2 * u:] + (rg * h) @ r[:, 2 * u:] + br[2 * u:])
        h = (1 - z) * nn + z * h
        y[:, t] = h
    return y, h
