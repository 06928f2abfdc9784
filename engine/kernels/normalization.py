"""Normalization kernels: per-channel affine (inference BatchNorm) and LayerNorm.

Each kernel has a serial block body (rows ``lo:hi``) and a parallel driver that splits the rows
into one chunk per thread; bindings call the body directly for small tensors, where waking the
thread pool costs more than the work.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = [
    "PAR_MIN",
    "channel_affine_block",
    "channel_affine",
    "layer_norm_block",
    "layer_norm",
    "lrn_block",
    "lrn",
]

PAR_MIN = 1 << 16  # elements below which the serial body wins over waking the thread pool

# Reassociation lets LLVM vectorize the float64 row sums (no NaN/Inf assumptions are made);
# the numpy error model drops the ZeroDivisionError branch that blocks vectorization.
_OPTS = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy"}


@jit(error_model="numpy")
def channel_affine_block(
    x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out: np.ndarray, lo: int, hi: int
) -> None:
    """out[a, c, b] = x[a, c, b] * scale[c] + shift[c] for a in lo:hi; x, out are (A, C, B)."""
    nc, nb = x.shape[1], x.shape[2]
    if nb == 1:  # channel-last: vectorize over channels
        x2 = x.reshape(x.shape[0], nc)
        o2 = out.reshape(x.shape[0], nc)
        for a in range(lo, hi):
            xr = x2[a]
            orow = o2[a]
            for c in range(nc):
                orow[c] = xr[c] * scale[c] + shift[c]
    else:
        for a in range(lo, hi):
            for c in range(nc):
                s = scale[c]
                h = shift[c]
                xr = x[a, c]
                orow = out[a, c]
                for b in range(nb):
                    orow[b] = xr[b] * s + h


@pjit
def channel_affine(
    x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out: np.ndarray, chunks: int
) -> None:
    """``channel_affine_block`` over A split in ``chunks`` (about one per thread)."""
    rows = x.shape[0]
    chunks = min(chunks, rows)
    for k in prange(chunks):
        channel_affine_block(x, scale, shift, out, k * rows // chunks, (k + 1) * rows // chunks)


@jit(error_model="numpy")
def _ln_out(
    row: np.ndarray, m_hi: np.float32, m_lo: np.float32, inv: np.float32, gamma: np.ndarray,
    beta: np.ndarray, orow: np.ndarray,
) -> None:
    # The mean is split into float32 hi + lo parts: row - m_hi is exact for values near the
    # mean (Sterbenz), so a large mean does not eat the float32 precision of the deviations.
    # No fastmath here: reassociation would fold (row - m_hi) - m_lo back into one rounding.
    d = row.shape[0]
    if beta.shape[0] == d:
        for j in range(d):
            orow[j] = ((row[j] - m_hi) - m_lo) * (inv * gamma[j]) + beta[j]
    else:
        for j in range(d):
            orow[j] = ((row[j] - m_hi) - m_lo) * (inv * gamma[j])


@jit(**_OPTS)
def layer_norm_block(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, out: np.ndarray,
    lo: int, hi: int,
) -> None:
    """Rows lo:hi of (M, D): (x - mean) / sqrt(var + eps) * gamma + beta; beta may be empty.

    Two passes in float64 (mean, then centred sum of squares) so a large mean does not
    cancel the variance away.
    """
    d = x.shape[1]
    for i in range(lo, hi):
        row = x[i]
        s = 0.0
        for j in range(d):
            s += row[j]
        mean = s / d
        q = 0.0
        for j in range(d):
            v = row[j] - mean
            q += v * v
        m_hi = np.float32(mean)
        m_lo = np.float32(mean - m_hi)
        _ln_out(row, m_hi, m_lo, np.float32(1.0 / math.sqrt(q / d + eps)), gamma, beta, out[i])


@pjit
def layer_norm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, out: np.ndarray, chunks: int
) -> None:
    rows = x.shape[0]
    chunks = min(chunks, rows)
    for k in prange(chunks):
        layer_norm_block(x, gamma, beta, eps, out, k * rows // chunks, (k + 1) * rows // chunks)


@jit(error_model="numpy")
def lrn_block(
    x: np.ndarray, out: np.ndarray, size: int, alpha: float, beta: float, bias: float,
    lo: int, hi: int,
) -> None:
    """Rows a in lo:hi of (A, C, B): out = x / (bias + alpha / size * window sum of x^2) ** beta,
    the window covering channels c - (size-1)//2 .. c + size//2 (ONNX), clipped to 0..C-1.
    Sums are float64: a running window would cancel, so each is summed afresh."""
    nc, nb = x.shape[1], x.shape[2]
    before = (size - 1) // 2
    after = size - 1 - before
    coef = alpha / size
    for a in range(lo, hi):
        for b in range(nb):
            for c in range(nc):
                s = 0.0
                for k in range(max(0, c - before), min(nc, c + after + 1)):
                    v = np.float64(x[a, k, b])
                    s += v * v
                out[a, c, b] = x[a, c, b] / (bias + coef * s) ** beta


@pjit
def lrn(x: np.ndarray, out: np.ndarray, size: int, alpha: float, beta: float, bias: float,
        chunks: int) -> None:
    rows = x.shape[0]
    chunks = min(chunks, rows)
    for k in prange(chunks):
        lrn_block(x, out, size, alpha, beta, bias, k * rows // chunks, (k + 1) * rows // chunks)
