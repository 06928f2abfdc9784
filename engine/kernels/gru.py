"""GRU kernels (Keras layout: gates z, r, h in column blocks of 3U; ONNX uses the same order).

As for the LSTM (engine.kernels.recurrent): the input projection x @ kernel + input bias is
computed for every timestep first (``project``/``project_block`` there), then the
recurrence runs rows in blocks of 4 through the register-blocked ``dot_rows4``. Those
products step over output columns 4 at a time, so the transposed weights and the buffers
they fill are padded to a multiple of 4 columns (``padded``); the padding stays zero.

    z = sigmoid(xz + h Rz + bz),  r = sigmoid(xr + h Rr + br)
    reset_after:  n = tanh(xn + r * (h Rn + bn))       (ONNX linear_before_reset=1, Keras)
    otherwise:    n = tanh(xn + (r * h) Rn + bn)       (ONNX default)
    h = (1 - z) * n + z * h

The gates use libm's exp and tanh, not the LSTM's rational approximation: h mixes n and the
old h, which can cancel to near zero, and there the approximation's ~1e-7 absolute error
showed (ONNX's GRU node tests hold outputs to 1e-7 absolute). It also makes saturated gates
exact (0 and 1), which the ONNX importer's plain RNN relies on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit
from engine.kernels.recurrent import dot_row1, dot_rows4

__all__ = ["padded", "gru_recurrence_block", "gru_recurrence"]

_OPTS = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy"}


@jit(inline="always", error_model="numpy")
def _tanh(x: Any) -> Any:
    return np.float32(math.tanh(x))


@jit(inline="always", error_model="numpy")
def _sigmoid(x: Any) -> Any:
    # exp overflows to inf for x < -88: 1 / inf = 0, the right limit
    return np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-x)))


def padded(n: int) -> int:
    """``n`` rounded up to a multiple of 4 (the column step of ``dot_rows4``)."""
    return -(-n // 4) * 4


@jit(**_OPTS)
def gru_recurrence_block(
    xw: np.ndarray, rt: np.ndarray, rnt: np.ndarray, brec: np.ndarray, h: np.ndarray,
    zh: np.ndarray, rh: np.ndarray, zn: np.ndarray, out: np.ndarray, h0: np.ndarray,
    has_init: bool, reset_after: bool, reverse: bool, lo: int, hi: int,
) -> None:
    """Rows lo:hi. xw (N, T, G) holds x @ kernel + input bias (G >= 3U, padded);
    rt (padded(3U), U) the recurrent kernel transposed, zero rows past 3U; rnt (padded(U), U)
    its n block alone (used when not ``reset_after``); brec (3U) the recurrent bias.
    Scratch: h (N, U) ends as the final state, zh (N, padded(3U)), rh (N, U),
    zn (N, padded(U)). out (N, T, U) gets every h, aligned with x; h0 (N, U) when has_init.
    """
    steps = xw.shape[1]
    u = h.shape[1]
    g3 = 3 * u
    i = lo
    while i < hi:
        nb = 4 if hi - i >= 4 else 1
        for r in range(i, i + nb):
            if has_init:
                h[r, :] = h0[r]
            else:
                h[r, :] = 0.0
        for t0 in range(steps):
            t = steps - 1 - t0 if reverse else t0
            for r in range(i, i + nb):
                zr = zh[r]
                for j in range(g3):
                    zr[j] = brec[j]
            if nb == 4:
                dot_rows4(h, rt, zh, i)
            else:
                dot_row1(h, rt, zh, i)
            if not reset_after:
                for r in range(i, i + nb):
                    xr, zr, hr, rr, nr = xw[r, t], zh[r], h[r], rh[r], zn[r]
                    for j in range(u):
                        rr[j] = _sigmoid(xr[u + j] + zr[u + j]) * hr[j]
                    for j in range(u):
                        nr[j] = brec[2 * u + j]
                if nb == 4:
                    dot_rows4(rh, rnt, zn, i)
                else:
                    dot_row1(rh, rnt, zn, i)
            for r in range(i, i + nb):
                xr, zr, hr, nr = xw[r, t], zh[r], h[r], zn[r]
                o = out[r, t]
                for j in range(u):
                    zg = _sigmoid(xr[j] + zr[j])
                    if reset_after:
                        rg = _sigmoid(xr[u + j] + zr[u + j])
                        ng = _tanh(xr[2 * u + j] + rg * zr[2 * u + j])
                    else:
                        ng = _tanh(xr[2 * u + j] + nr[j])
                    hn = (np.float32(1.0) - zg) * ng + zg * hr[j]
                    hr[j] = hn
                    o[j] = hn
        i += nb


@pjit(error_model="numpy")
def gru_recurrence(
    xw: np.ndarray, rt: np.ndarray, rnt: np.ndarray, brec: np.ndarray, h: np.ndarray,
    zh: np.ndarray, rh: np.ndarray, zn: np.ndarray, out: np.ndarray, h0: np.ndarray,
    has_init: bool, reset_after: bool, reverse: bool, chunks: int,
) -> None:
    """``gru_recurrence_block`` with blocks of 4 rows split into ``chunks`` (one per thread);
    rows are independent sequences, so threads never wait for each other."""
    n = xw.shape[0]
    blocks = (n + 3) // 4
    chunks = min(chunks, blocks)
    for k in prange(chunks):
        lo = min(n, k * blocks // chunks * 4)
        hi = min(n, (k + 1) * blocks // chunks * 4)
        gru_recurrence_block(xw, rt, rnt, brec, h, zh, rh, zn, out, h0, has_init, reset_after,
                             reverse, lo, hi)
