"""Reference Dense and MatMul: float64 numpy, written from the op definitions."""

from __future__ import annotations

import numpy as np

from engine.kernels.reference.activations import activation

__all__ = ["dense", "matmul"]


def dense(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    activation_name: str = "linear",
    alpha: float = 0.2,
) -> np.ndarray:
    """Keras Dense: contract the last axis of x (any rank) with w (K, N), add bias, activate."""
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(w, dtype=np.float64)
    y = np.tensordot(x64, w64, axes=([x64.ndim - 1], [0]))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return activation(y, activation_name, alpha)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy.matmul semantics spelled out: rank-1 promotion, broadcast batch, einsum per batch."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    a_vec, b_vec = a64.ndim == 1, b64.ndim == 1
    if a_vec:
        a64 = a64[None, :]
    if b_vec:
        b64 = b64[:, None]
    batch = np.broadcast_shapes(a64.shape[:-2], b64.shape[:-2])
    a64 = np.broadcast_to(a64, batch + a64.shape[-2:])
    b64 = np.broadcast_to(b64, batch + b64.shape[-2:])
    y = np.einsum("...ik,...kj->...ij", a64, b64)
    if a_vec:
        y = y[..., 0, :]
    if b_vec:
        y = y[..., 0]
    return np.asarray(y)
