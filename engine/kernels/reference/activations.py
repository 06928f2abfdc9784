"""Reference activations (numpy/scipy), by the names the IR uses."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

__all__ = ["activation"]


def activation(x: np.ndarray, name: str, alpha: float = 0.2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "relu6":
        return np.clip(x, 0.0, 6.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if name == "gelu":
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"unknown activation {name!r}")
