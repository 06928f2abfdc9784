"""LSTM kernels (Keras layout: gates i, f, c, o in column blocks of 4U). No BLAS.

The recurrence is serial in time but every batch row is an independent sequence, so rows are
split across threads with no per-step synchronisation. Two forms:

* small batches: ``project`` computes x @ kernel + bias for every timestep at once (a GEMM over
  N*T rows, parallel), then ``lstm_recurrence`` runs z = xw_t + h @ R serially;
* batches of 8 and more: ``lstm_fused`` gives each thread blocks of 4 rows, and each step is one
  product z = [x_t, h] @ [kernel; recurrent] + bias.

The products use ``_dot_rows4``: a 4x4 register-blocked dot kernel that LLVM vectorizes well
(within ~10-30 % of OpenBLAS on one core for these shapes). Keeping BLAS out means the op
never hands the cores between numba's thread pool and a BLAS pool.

numba has no vector exp/tanh here (no SVML), so libm calls would dominate; sigmoid and tanh use
Eigen's rational tanh approximation (|error| < 1e-6, the one Eigen and onnxruntime's MLAS use),
which is plain arithmetic and vectorizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = [
    "dot_rows4",
    "dot_row1",
    "fast_tanh",
    "fast_sigmoid",
    "lstm_gates",
    "lstm_fused_block",
    "lstm_fused",
    "project_block",
    "project",
    "lstm_recurrence",
]

# numpy error model: no ZeroDivisionError branch, so loops with a division vectorize.
_OPTS = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy"}

_f = np.float32
_CLAMP = _f(7.90531110763549805)
_A1, _A3, _A5 = _f(4.89352455891786e-03), _f(6.37261928875436e-04), _f(1.48572235717979e-05)
_A7, _A9 = _f(5.12229709037114e-08), _f(-8.60467152213735e-11)
_A11, _A13 = _f(2.00018790482477e-13), _f(-2.76076847742355e-16)
_B0, _B2 = _f(4.89352518554385e-03), _f(2.26843463243900e-03)
_B4, _B6 = _f(1.18534705686654e-04), _f(1.19825839466702e-06)
_HALF = _f(0.5)


@jit(inline="always", error_model="numpy")
def fast_tanh(x: Any) -> Any:  # float32 in, float32 out (generic in numba)
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = p * x2 + _A9
    p = p * x2 + _A7
    p = p * x2 + _A5
    p = p * x2 + _A3
    p = p * x2 + _A1
    q = x2 * _B6 + _B4
    q = q * x2 + _B2
    q = q * x2 + _B0
    return x * p / q


@jit(inline="always", error_model="numpy")
def fast_sigmoid(x: Any) -> Any:
    return _HALF + _HALF * fast_tanh(_HALF * x)


@jit(**_OPTS)
def lstm_gates(z: np.ndarray, h: np.ndarray, c: np.ndarray) -> None:
    """One row: z (4U) full pre-activations -> new c and h (U each), in place."""
    u = h.shape[0]
    # one slice per gate: subscripts from 0 let numba drop its wraparound select and vectorize
    zi, zf, zc, zo = z[:u], z[u:2 * u], z[2 * u:3 * u], z[3 * u:]
    for j in range(u):
        ig = fast_sigmoid(zi[j])
        fg = fast_sigmoid(zf[j])
        cg = fast_tanh(zc[j])
        og = fast_sigmoid(zo[j])
        cn = fg * c[j] + ig * cg
        c[j] = cn
        h[j] = og * fast_tanh(cn)


@jit(**_OPTS)
def _dot_rows4(a: np.ndarray, wt: np.ndarray, z: np.ndarray, i0: int) -> None:
    """z[i0:i0+4] += a[i0:i0+4] @ wt.T for wt (G, K), G a multiple of 4.

    4 rows x 4 columns of 16 scalar accumulators: LLVM vectorizes the k loop into 16 vector
    reductions (8 loads per 16 FMAs), and the inner loop only loads, so no aliasing checks.
    """
    kk = a.shape[1]
    g = wt.shape[0]
    a0, a1, a2, a3 = a[i0], a[i0 + 1], a[i0 + 2], a[i0 + 3]
    z0, z1, z2, z3 = z[i0], z[i0 + 1], z[i0 + 2], z[i0 + 3]
    zero = np.float32(0.0)
    for j in range(0, g, 4):
        w0, w1, w2, w3 = wt[j], wt[j + 1], wt[j + 2], wt[j + 3]
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
        for k in range(kk):
            x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
            v0, v1, v2, v3 = w0[k], w1[k], w2[k], w3[k]
            s00 += x0 * v0
            s01 += x0 * v1
            s02 += x0 * v2
            s03 += x0 * v3
            s10 += x1 * v0
            s11 += x1 * v1
            s12 += x1 * v2
            s13 += x1 * v3
            s20 += x2 * v0
            s21 += x2 * v1
            s22 += x2 * v2
            s23 += x2 * v3
            s30 += x3 * v0
            s31 += x3 * v1
            s32 += x3 * v2
            s33 += x3 * v3
        z0[j] += s00
        z0[j + 1] += s01
        z0[j + 2] += s02
        z0[j + 3] += s03
        z1[j] += s10
        z1[j + 1] += s11
        z1[j + 2] += s12
        z1[j + 3] += s13
        z2[j] += s20
        z2[j + 1] += s21
        z2[j + 2] += s22
        z2[j + 3] += s23
        z3[j] += s30
        z3[j + 1] += s31
        z3[j + 2] += s32
        z3[j + 3] += s33


@jit(**_OPTS)
def _dot_row1(a: np.ndarray, wt: np.ndarray, z: np.ndarray, i0: int) -> None:
    """z[i0] += a[i0] @ wt.T, four columns at a time (a GEMV: bound by loading wt)."""
    kk = a.shape[1]
    g = wt.shape[0]
    a0 = a[i0]
    z0 = z[i0]
    zero = np.float32(0.0)
    for j in range(0, g, 4):
        w0, w1, w2, w3 = wt[j], wt[j + 1], wt[j + 2], wt[j + 3]
        s0 = s1 = s2 = s3 = zero
        for k in range(kk):
            x0 = a0[k]
            s0 += x0 * w0[k]
            s1 += x0 * w1[k]
            s2 += x0 * w2[k]
            s3 += x0 * w3[k]
        z0[j] += s0
        z0[j + 1] += s1
        z0[j + 2] += s2
        z0[j + 3] += s3


@jit(**_OPTS)
def lstm_fused_block(
    x: np.ndarray, wrt: np.ndarray, bias: np.ndarray, hx: np.ndarray, c: np.ndarray,
    z: np.ndarray, out: np.ndarray, ret_seq: bool, lo: int, hi: int, h0: np.ndarray,
    c0: np.ndarray, has_init: bool, reverse: bool,
) -> None:
    """Batch rows lo:hi, in blocks of 4 rows, each block its own recurrence.

    Per step z = [x_t, h] @ [kernel; recurrent] + bias with one hand GEMM: x (N, T, F);
    wrt (4U, F+U) is [kernel; recurrent] transposed; scratch hx (N, F+U) holds [x_t, h],
    c (N, U), z (N, 4U); out (N, T, U) when ret_seq else (N, 1, U) for the last h.
    The state starts at h0, c0 (N, U) when ``has_init``, else at zero; ``reverse`` runs time
    backwards (out stays aligned with x). The final state is left in hx[:, F:] and c.
    """
    _, steps, f = x.shape
    g4 = wrt.shape[0]
    u = g4 // 4
    i = lo
    while i < hi:
        nb = 4 if hi - i >= 4 else 1
        for r in range(i, i + nb):
            if has_init:
                hx[r, f:] = h0[r]
                c[r, :] = c0[r]
            else:
                hx[r, f:] = 0.0
                c[r, :] = 0.0
        for t0 in range(steps):
            t = steps - 1 - t0 if reverse else t0
            for r in range(i, i + nb):
                xr = x[r, t]
                ar = hx[r]
                for j in range(f):
                    ar[j] = xr[j]
                zr = z[r]
                for j in range(g4):
                    zr[j] = bias[j]
            if nb == 4:
                _dot_rows4(hx, wrt, z, i)
            else:
                _dot_row1(hx, wrt, z, i)
            for r in range(i, i + nb):
                hr = hx[r, f:]
                lstm_gates(z[r], hr, c[r])
                if ret_seq:
                    o = out[r, t]
                    for j in range(u):
                        o[j] = hr[j]
        if not ret_seq:
            for r in range(i, i + nb):
                o = out[r, 0]
                hr = hx[r, f:]
                for j in range(u):
                    o[j] = hr[j]
        i += nb


@pjit(error_model="numpy")
def lstm_fused(
    x: np.ndarray, wrt: np.ndarray, bias: np.ndarray, hx: np.ndarray, c: np.ndarray,
    z: np.ndarray, out: np.ndarray, ret_seq: bool, chunks: int, h0: np.ndarray, c0: np.ndarray,
    has_init: bool, reverse: bool,
) -> None:
    """``lstm_fused_block`` with the blocks of 4 rows split into ``chunks`` (one per thread).

    Rows are independent sequences, so threads never wait for each other."""
    n = x.shape[0]
    blocks = (n + 3) // 4
    chunks = min(chunks, blocks)
    for k in prange(chunks):
        lo = min(n, k * blocks // chunks * 4)
        hi = min(n, (k + 1) * blocks // chunks * 4)
        lstm_fused_block(x, wrt, bias, hx, c, z, out, ret_seq, lo, hi, h0, c0, has_init,
                         reverse)


@jit(**_OPTS)
def project_block(
    x: np.ndarray, wt: np.ndarray, bias: np.ndarray, xw: np.ndarray, lo: int, hi: int
) -> None:
    """xw[i] = x[i] @ wt.T + bias for rows lo:hi (4 at a time, then singles)."""
    g = wt.shape[0]
    for i in range(lo, hi):
        zr = xw[i]
        for j in range(g):
            zr[j] = bias[j]
    i = lo
    while i + 4 <= hi:
        _dot_rows4(x, wt, xw, i)
        i += 4
    while i < hi:
        _dot_row1(x, wt, xw, i)
        i += 1


@pjit(error_model="numpy")
def project(
    x: np.ndarray, wt: np.ndarray, bias: np.ndarray, xw: np.ndarray, chunks: int
) -> None:
    """``project_block`` over all rows, split in ``chunks`` on 4-row boundaries."""
    n = x.shape[0]
    blocks = (n + 3) // 4
    chunks = min(chunks, blocks)
    for k in prange(chunks):
        lo = min(n, k * blocks // chunks * 4)
        hi = min(n, (k + 1) * blocks // chunks * 4)
        project_block(x, wt, bias, xw, lo, hi)


@jit(**_OPTS)
def lstm_recurrence(
    xw: np.ndarray, rt: np.ndarray, h: np.ndarray, c: np.ndarray, z: np.ndarray,
    out: np.ndarray, ret_seq: bool, h0: np.ndarray, c0: np.ndarray, has_init: bool,
    reverse: bool,
) -> None:
    """The recurrence over a precomputed projection xw (N, T, 4U) = x @ kernel + bias.

    rt (4U, U) is the recurrent kernel transposed; scratch h, c (N, U), z (N, 4U); out
    (N, T, U) when ret_seq else (N, 1, U). Rows in blocks of 4 share each pass over rt.
    Initial state, direction and final state as in ``lstm_fused_block`` (final: h and c).
    """
    n, steps, g4 = xw.shape
    u = g4 // 4
    i = 0
    while i < n:
        nb = 4 if n - i >= 4 else 1
        for r in range(i, i + nb):
            if has_init:
                h[r, :] = h0[r]
                c[r, :] = c0[r]
            else:
                h[r, :] = 0.0
                c[r, :] = 0.0
        for t0 in range(steps):
            t = steps - 1 - t0 if reverse else t0
            for r in range(i, i + nb):
                xr = xw[r, t]
                zr = z[r]
                for j in range(g4):
                    zr[j] = xr[j]
            if t0 > 0 or has_init:  # a zero state adds nothing
                if nb == 4:
                    _dot_rows4(h, rt, z, i)
                else:
                    _dot_row1(h, rt, z, i)
            for r in range(i, i + nb):
                hr = h[r]
                lstm_gates(z[r], hr, c[r])
                if ret_seq:
                    o = out[r, t]
                    for j in range(u):
                        o[j] = hr[j]
        if not ret_seq:
            for r in range(i, i + nb):
                o = out[r, 0]
                hr = h[r]
                for j in range(u):
                    o[j] = hr[j]
        i += nb


# the register-blocked products, for the GRU kernels (engine.kernels.gru)
dot_rows4 = _dot_rows4
dot_row1 = _dot_row1
