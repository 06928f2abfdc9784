"""Fused bias + activation epilogue shared by Conv2D and Dense.

Activations are passed as small integer codes so one compiled kernel serves them all.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = ["ACTIVATION_CODES", "activation_code", "bias_act", "act_scalar"]

ACTIVATION_CODES = {
    "linear": 0,
    "relu": 1,
    "relu6": 2,
    "sigmoid": 3,
    "tanh": 4,
    "leaky_relu": 5,
    "gelu": 6,
    "gelu_tanh": 7,
}

_SQRT_HALF = 0.7071067811865476
_SQRT_2_OVER_PI = 0.7978845608028654


def activation_code(name: str) -> int:
    return ACTIVATION_CODES[name]


@jit(inline="always")
def act_scalar(v: float, code: int, alpha: float) -> float:
    if code == 0:
        return v
    if code == 1:
        return v if v > 0.0 else 0.0
    if code == 2:
        return min(max(v, 0.0), 6.0)
    if code == 3:
        return 1.0 / (1.0 + math.exp(-v))
    if code == 4:
        return math.tanh(v)
    if code == 5:
        return v if v > 0.0 else alpha * v
    if code == 6:
        return 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))
    return 0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)))


@pjit
def bias_act(y: np.ndarray, bias: np.ndarray, code: int, alpha: float) -> None:
    """In place on a C-contiguous (M, N) array: y = act(y + bias); bias may be empty."""
    m, n = y.shape
    has_bias = bias.shape[0] == n
    if code == 0 and not has_bias:
        return
    for i in prange(m):
        row = y[i]
        for j in range(n):
            v = row[j]
            if has_bias:
                v += bias[j]
            row[j] = act_scalar(v, code, alpha)
