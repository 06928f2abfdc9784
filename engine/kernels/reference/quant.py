"""Reference quantized ops (numpy): TF Lite's integer arithmetic written out in Python ints.

Slow and literal: ``quantize_multiplier``, ``srdhm`` and ``rounding_divide_by_pot`` transcribe
TF Lite's ``QuantizeMultiplier`` and gemmlowp's ``SaturatingRoundingDoublingHighMul`` /
``RoundingDivideByPOT`` one scalar at a time, so the numba kernels can be checked bit for bit.
Used only by tests (and by ``engine.quantize``'s own checks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.kernels.reference.activations import activation
from engine.kernels.reference.conv import conv2d

__all__ = [
    "quantize_multiplier",
    "srdhm",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_single",
    "activation_range",
    "quantize",
    "dequantize",
    "dense_w8",
    "conv2d_w8",
    "qconv2d",
    "qdense",
]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _round_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TF Lite's QuantizeMultiplier: real m -> (Q31 multiplier, shift), m ~ q * 2**(shift-31)."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = _round_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (C truncating division)."""
    if a == b == _I32_MIN:
        return _I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    q = abs(num) // (1 << 31)
    return q if num >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    v = x * (1 << left)
    v = max(_I32_MIN, min(_I32_MAX, v))  # C's int32 multiply would wrap; TF Lite never gets here
    return rounding_divide_by_pot(srdhm(v, multiplier), right)


def multiply_by_quantized_multiplier_single(x: int, multiplier: int, shift: int) -> int:
    """TF Lite's single-rounding form (reference FULLY_CONNECTED): one round-half-up shift."""
    total = 31 - shift
    return (x * multiplier + (1 << (total - 1))) >> total


def activation_range(name: str, scale: float, zero_point: int) -> tuple[int, int]:
    lo, hi = -128, 127
    if name in ("relu", "relu6"):
        lo = max(lo, zero_point + _round_away(float(np.float32(0.0) / np.float32(scale))))
    if name == "relu6":
        hi = min(hi, zero_point + _round_away(float(np.float32(6.0) / np.float32(scale))))
    return lo, hi


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v.astype(np.float64)) + 0.5)
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    s = float(np.float32(scale))
    return (s * (np.asarray(q, dtype=np.float64) - zero_point)).astype(np.float32)


def dense_w8(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None = None,
             activation_name: str = "linear", alpha: float = 0.2) -> np.ndarray:
    """float64 Dense on the dequantized weight w * w_scale (per column)."""
    wr = np.asarray(w, dtype=np.float64) * np.asarray(w_scale, dtype=np.float64)
    y = np.asarray(x, dtype=np.float64) @ wr
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return activation(y, activation_name, alpha)


def conv2d_w8(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray,
              bias: np.ndarray | None = None, **attrs: object) -> np.ndarray:
    wr = np.asarray(w, dtype=np.float64) * np.asarray(w_scale, dtype=np.float64)
    return conv2d(x, wr, bias, **attrs)  # type: ignore[arg-type]


def _requantize(acc: np.ndarray, m_real: np.ndarray, y_zp: int, lo: int, hi: int,
                single: bool = False) -> np.ndarray:
    """acc (..., O) int64 -> int8, one channel's (multiplier, shift) per last-axis index."""
    scale = multiply_by_quantized_multiplier_single if single else multiply_by_quantized_multiplier
    out = np.empty(acc.shape, dtype=np.int8)
    params = [quantize_multiplier(float(m)) for m in m_real]
    flat, oflat = acc.reshape(-1, acc.shape[-1]), out.reshape(-1, acc.shape[-1])
    for i in range(flat.shape[0]):
        for o in range(flat.shape[1]):
            mult, shift = params[o]
            v = scale(int(flat[i, o]), mult, shift) + y_zp
            oflat[i, o] = min(hi, max(lo, v))
    return out


def _real_multipliers(x_scale: float, w_scale: np.ndarray, y_scale: float, n: int) -> np.ndarray:
    ws = np.broadcast_to(np.asarray(w_scale, dtype=np.float32).astype(np.float64), (n,))
    return float(np.float32(x_scale)) * ws / float(np.float32(y_scale))


def qconv2d(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
            x_scale: float, x_zero_point: int, y_scale: float, y_zero_point: int,
            strides: Sequence[int] = (1, 1), dilations: Sequence[int] = (1, 1),
            pads: Sequence[int] = (0, 0, 0, 0), groups: int = 1,
            activation_name: str = "linear") -> np.ndarray:
    # (x - zp) is exact in float64 and every partial sum stays far below 2**53: the float64
    # reference conv computes the int32 accumulator exactly (padding contributes real 0)
    xc = np.asarray(x, dtype=np.float64) - x_zero_point
    acc = conv2d(xc, np.asarray(w, dtype=np.float64), None, strides, dilations, pads, groups)
    acc = np.rint(acc).astype(np.int64)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    o = w.shape[3]
    lo, hi = activation_range(activation_name, y_scale, y_zero_point)
    return _requantize(acc, _real_multipliers(x_scale, w_scale, y_scale, o), y_zero_point,
                       lo, hi)


def qdense(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
           x_scale: float, x_zero_point: int, y_scale: float, y_zero_point: int,
           activation_name: str = "linear") -> np.ndarray:
    acc = (np.asarray(x, dtype=np.int64) - x_zero_point) @ np.asarray(w, dtype=np.int64)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    n = w.shape[1]
    lo, hi = activation_range(activation_name, y_scale, y_zero_point)
    return _requantize(acc, _real_multipliers(x_scale, w_scale, y_scale, n), y_zero_point,
                       lo, hi, single=True)
