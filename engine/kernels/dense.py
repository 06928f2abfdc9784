"""Dense epilogue: y = act(y + bias) in place after the binding's BLAS GEMM.

Same activation codes as ``engine.kernels.activations`` (``ACTIVATION_CODES``), but the
transcendental ones use the vectorizing ``exp_f32``/``tanh_f32``/``erf_f32`` instead of
``math.*``, which numba calls one element at a time (tanh ~16 ns/element: on a 256x512 Dense
that would rival the GEMM itself). The activation branch sits outside the row loop so each
(activation, bias) pair is one tight, vectorized loop.

Serial on purpose: the epilogue is 1/K of the GEMM's work, so a ``prange`` version saves
little (256x784x512 on 2 cores: 1.2 ms GEMM + serial epilogue = GEMM + parallel one), while
its OpenMP workers, spinning after the region, compete with OpenBLAS's threads: with other
processes busy the parallel pair took up to 8 ms, the serial pair stayed at ~1.1 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from engine.kernels._jit import jit
from engine.kernels.activations import ACTIVATION_CODES
from engine.kernels.elementwise import gelu_f32, gelu_tanh_f32, sigmoid_f32, tanh_f32

__all__ = ["ACTIVATION_CODES", "dense_epilogue"]

_F = np.float32
_ZERO = _F(0.0)
_SIX = _F(6.0)

# the shared table's codes, frozen into the kernels as compile-time constants
_RELU = ACTIVATION_CODES["relu"]
_RELU6 = ACTIVATION_CODES["relu6"]
_SIGMOID = ACTIVATION_CODES["sigmoid"]
_TANH = ACTIVATION_CODES["tanh"]
_LEAKY = ACTIVATION_CODES["leaky_relu"]
_GELU = ACTIVATION_CODES["gelu"]
_GELU_TANH = ACTIVATION_CODES["gelu_tanh"]


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _kjit(**options: Any) -> Callable[[_Fn], _Fn]:
    """numpy error model (no ZeroDivision branches) and FMA contraction only."""
    def deco(fn: _Fn) -> _Fn:
        return jit(error_model="numpy", fastmath={"contract"}, **options)(fn)

    return deco


@_kjit(inline="always")
def _row(y: np.ndarray, bias: np.ndarray, code: int, alpha: float) -> None:
    n = y.shape[0]
    if code == _RELU:
        for j in range(n):
            v = y[j] + bias[j]
            y[j] = v if v > _ZERO else _ZERO
    elif code == _RELU6:
        for j in range(n):
            y[j] = min(max(y[j] + bias[j], _ZERO), _SIX)
    elif code == _SIGMOID:
        for j in range(n):
            y[j] = sigmoid_f32(y[j] + bias[j])
    elif code == _TANH:
        for j in range(n):
            y[j] = tanh_f32(y[j] + bias[j])
    elif code == _LEAKY:
        a = np.float32(alpha)
        for j in range(n):
            v = y[j] + bias[j]
            y[j] = v if v > _ZERO else a * v
    elif code == _GELU:
        for j in range(n):
            y[j] = gelu_f32(y[j] + bias[j])
    elif code == _GELU_TANH:
        for j in range(n):
            y[j] = gelu_tanh_f32(y[j] + bias[j])
    else:  # linear
        for j in range(n):
            y[j] += bias[j]


@_kjit()
def dense_epilogue(y: np.ndarray, bias: np.ndarray, code: int, alpha: float) -> None:
    """y = act(y + bias) in place on a C-contiguous float32 (M, N) array; bias is (N,).

    One pass per row; a Dense without bias passes zeros (adding 0 is exact).
    """
    for i in range(y.shape[0]):
        _row(y[i], bias, code, alpha)
