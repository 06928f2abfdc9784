"""Quantized kernels: widening narrow weights per call, and TF Lite's int8 arithmetic.

Weight-only ops (DenseW8, Conv2DW8, DenseF16, Conv2DF16) keep the narrow weight resident and
widen it inside the run: ``dequant_packed`` / ``upcast_f16`` write float32 into the run's own
scratch (never shared between threads), then the float kernels do the arithmetic. A conv reuses
each weight N*OH*OW times, so the widening is ~1/(N*OH*OW) of the work; a Dense with a few
rows instead reads the int8 weight directly in ``dense_w8_rows`` (a GEMV is memory bound: a
quarter of the bytes).

Full int8: Quantize / Dequantize here, and the per-channel Q31 multipliers and shifts that
``quantize_multiplier`` computes once per plan; the QConv2D / QDense kernels themselves are in
``engine.kernels.quant_conv``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = [
    "dequant_packed",
    "upcast_f16",
    "dense_w8_rows",
    "dense_w8_rows_par",
    "quantize_multiplier",
    "requant_params",
    "activation_range",
    "quantize_kernel",
    "dequantize_kernel",
]

_F = np.float32


# ------------------------------------------------------------------ weight widening


@jit(error_model="numpy")
def dequant_packed(wq: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    """out[b, k, j] = float32(wq[b, k, j]) * scale[b, 0, j]; wq int8 (B, K, J)."""
    for b in range(wq.shape[0]):
        s = scale[b, 0]
        for k in range(wq.shape[1]):
            src = wq[b, k]
            dst = out[b, k]
            for j in range(src.shape[0]):
                dst[j] = _F(src[j]) * s[j]


@jit(error_model="numpy")
def upcast_f16(bits: np.ndarray, out: np.ndarray) -> None:
    """out = float32 of the IEEE half-precision values whose bit patterns are ``bits``.

    Both 1-D and contiguous: ``bits`` uint16, ``out`` float32. The 15 magnitude bits shifted
    into a float32's place give the value * 2**-112 exactly (normals and subnormals alike),
    so one multiply by 2**112 rescales; inf/NaN (exponent 31) are set apart.
    """
    ob = out.view(np.uint32)
    for i in range(bits.shape[0]):
        ob[i] = np.uint32(bits[i] & 0x7FFF) << np.uint32(13)
    for i in range(bits.shape[0]):
        out[i] = out[i] * _F(5.192296858534828e33)  # 2**112
    for i in range(bits.shape[0]):
        h = np.uint32(bits[i])
        v = ob[i]
        if (h & 0x7C00) == 0x7C00:
            v = np.uint32(0x7F800000) | (np.uint32(h & 0x3FF) << np.uint32(13))
        ob[i] = v | (np.uint32(h & 0x8000) << np.uint32(16))


@jit(error_model="numpy", fastmath={"contract"})
def _w8_cols(x: np.ndarray, wq: np.ndarray, scale: np.ndarray, y: np.ndarray, j0: int,
             j1: int) -> None:
    """y[:, j0:j1] = (x @ wq[:, j0:j1]) * scale[j0:j1], rows of x in groups of up to 4.

    Four separate accumulator rows, never aliased (rows past the last are computed on
    zeros and dropped): stores through aliasing views defeat LLVM's vectorizer."""
    m, k = x.shape
    nj = j1 - j0
    a0 = np.empty(nj, dtype=_F)
    a1 = np.empty(nj, dtype=_F)
    a2 = np.empty(nj, dtype=_F)
    a3 = np.empty(nj, dtype=_F)
    i = 0
    while i < m:
        r = min(4, m - i)
        a0[:] = 0.0
        a1[:] = 0.0
        a2[:] = 0.0
        a3[:] = 0.0
        if r == 1:  # a GEMV (batch 1): one accumulator, not four with three on zeros
            for kk in range(k):
                x0 = x[i, kk]
                wrow = wq[kk, j0:j1]
                for j in range(nj):
                    a0[j] += x0 * _F(wrow[j])
        for kk in range(k if r > 1 else 0):
            x0 = x[i, kk]
            x1 = x[i + 1, kk] if r > 1 else _F(0.0)
            x2 = x[i + 2, kk] if r > 2 else _F(0.0)
            x3 = x[i + 3, kk] if r > 3 else _F(0.0)
            wrow = wq[kk, j0:j1]
            for j in range(nj):
                wv = _F(wrow[j])
                a0[j] += x0 * wv
                a1[j] += x1 * wv
                a2[j] += x2 * wv
                a3[j] += x3 * wv
        s = scale[j0:j1]
        for rr in range(r):
            acc = a0 if rr == 0 else a1 if rr == 1 else a2 if rr == 2 else a3
            yr = y[i + rr, j0:j1]
            for j in range(nj):
                yr[j] = acc[j] * s[j]
        i += 4


@jit(error_model="numpy")
def dense_w8_rows(x: np.ndarray, wq: np.ndarray, scale: np.ndarray, y: np.ndarray,
                  nchunks: int) -> None:
    """y = (x @ wq) * scale for a few rows, reading the int8 weight directly (serial)."""
    _w8_cols(x, wq, scale, y, 0 * nchunks, y.shape[1])


@pjit(error_model="numpy")
def dense_w8_rows_par(x: np.ndarray, wq: np.ndarray, scale: np.ndarray, y: np.ndarray,
                      nchunks: int) -> None:
    """The same with the columns split in ``nchunks`` blocks across threads."""
    n = y.shape[1]
    for t in prange(nchunks):
        lo = (t * n // nchunks) // 16 * 16
        hi = n if t == nchunks - 1 else ((t + 1) * n // nchunks) // 16 * 16
        _w8_cols(x, wq, scale, y, lo, hi)


# ------------------------------------------------------------------ TF Lite integer arithmetic


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TF Lite's QuantizeMultiplier: real ``m`` -> (Q31 int32 multiplier, shift)."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    scaled = q * (1 << 31)
    q_fixed = int(math.floor(abs(scaled) + 0.5)) * (1 if scaled >= 0 else -1)  # std::round
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def requant_params(x_scale: float, w_scale: np.ndarray, y_scale: float,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) int64 arrays of length ``n`` for TF Lite's
    ``x_scale * w_scale[o] / y_scale`` (each a float32, the product in float64)."""
    ws = np.broadcast_to(np.asarray(w_scale, dtype=np.float32).reshape(-1), (n,))
    xs, ys = float(np.float32(x_scale)), float(np.float32(y_scale))
    pairs = [quantize_multiplier(xs * float(s) / ys) for s in ws]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    return mult, shift


def _round_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def activation_range(name: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TF Lite's CalculateActivationRangeQuantized for int8 outputs (relu, relu6 or none)."""
    lo, hi = -128, 127
    if name in ("relu", "relu6"):
        lo = max(lo, zero_point)
    if name == "relu6":
        hi = min(hi, zero_point + _round_away(float(np.float32(6.0) / np.float32(scale))))
    return lo, hi


@jit(error_model="numpy")
def quantize_kernel(x: np.ndarray, y: np.ndarray, scale: float, zp: int) -> None:
    """y = clamp(round_half_away(x / scale) + zp, -128, 127); 1-D contiguous, float32 ->
    int8. The division is float32 as TF Lite's; the rounding in float64 so that
    0.49999997 stays 0."""
    s = _F(scale)
    for i in range(x.shape[0]):
        v = np.float64(x[i] / s)
        r = np.floor(np.abs(v) + 0.5)  # float: no int64 overflow on huge or inf inputs
        r = r if v >= 0 else -r
        y[i] = np.int8(min(max(r + zp, -128.0), 127.0))


@jit(error_model="numpy")
def dequantize_kernel(q: np.ndarray, y: np.ndarray, scale: float, zp: int) -> None:
    """y = float32(float64(scale) * (q - zp)); 1-D contiguous int8 -> float32."""
    s = np.float64(_F(scale))
    for i in range(q.shape[0]):
        y[i] = _F(s * (np.int64(q[i]) - zp))
