"""Reference BatchNorm (inference) and LayerNorm in float64 numpy."""

from __future__ import annotations

import numpy as np

__all__ = ["batch_norm", "layer_norm", "lrn"]


def batch_norm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
    epsilon: float = 1e-3, axis: int = -1,
) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]

    def b(p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64).reshape(shape)

    out: np.ndarray = (x - b(mean)) / np.sqrt(b(var) + epsilon) * b(gamma) + b(beta)
    return out


def layer_norm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None = None,
    epsilon: float = 1e-5, axis: int = -1,
) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y: np.ndarray = (x - mean) / np.sqrt(var + epsilon)
    y = y * np.asarray(gamma, dtype=np.float64).reshape(x.shape[axis:])
    if beta is not None:
        y = y + np.asarray(beta, dtype=np.float64).reshape(x.shape[axis:])
    return y


def lrn(x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0,
        axis: int = -1) -> np.ndarray:
    """ONNX LRN: square sum over channels c - floor((size-1)/2) .. c + ceil((size-1)/2)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    c = x.shape[0]
    sq = np.zeros_like(x)
    for i in range(c):
        lo, hi = max(0, i - (size - 1) // 2), min(c, i + size // 2 + 1)
        sq[i] = (x[lo:hi] ** 2).sum(axis=0)
    y: np.ndarray = x / (bias + alpha / size * sq) ** beta
    return np.moveaxis(y, 0, axis)
