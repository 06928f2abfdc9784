# mypy: disable-error-code="no-any-return, arg-type, no-untyped-call, call-arg"
"""The hybrid int8 conv's blocks split over threads.

engine.executor.bindings.quant_hybrid_conv runs a conv block of output pixels by block:
patches (``quant_hybrid_conv.im2col``), the int8 GEMM, bias and activation. Splitting each
block's GEMM over threads costs a parallel region per block of a few hundred rows and measured
slower than one thread; here each thread takes a contiguous run of whole blocks instead, with
its own patch buffer and row scales (``chunks`` slices of the scratch), in one parallel
region per conv. Every tile is computed as the serial path computes it: the same bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from engine.kernels._jit import pjit
from engine.kernels.quant_hybrid import _tile
from engine.kernels.quant_hybrid_conv import SLACK, bias_act_rows, im2col, row_scales

__all__ = ["blocks_kernel"]

_KERNELS: dict[tuple[int, int], Any] = {}


def _build(mr: int, nr: int) -> Any:
    """The driver for one GEMM tile shape (``mr``/``nr`` closure constants, literal for the
    tile's register code, as in quant_hybrid._build)."""

    @pjit(error_model="numpy")
    def run(qflat: np.ndarray, scales: np.ndarray, geo: np.ndarray, y: np.ndarray,
            wp: np.ndarray, colsum: np.ndarray, scale: np.ndarray, bias: np.ndarray,
            patches: np.ndarray, rscale: np.ndarray, block: int, ld: int, c: int,
            pixels: int, direct: bool, epilogue: bool, code: int, alpha: float,
            chunks: int) -> None:
        """y (M, O) of the conv: ``block`` output pixels per block, ``ld`` bytes per patch row
        (ceil(K/4)*4), ``patches`` ``chunks`` buffers of block*ld + SLACK bytes, ``rscale``
        ``chunks`` runs of ``block`` scales; ``direct``: the quantized image is the patch
        matrix (1x1 stride 1, C a multiple of 4)."""
        m_total, n = y.shape
        nb, kq = wp.shape[0], wp.shape[1]
        wf = wp.reshape(-1)
        yf = y.reshape(-1)
        nblocks = -(-m_total // block)
        per = -(-nblocks // chunks)
        stride = block * ld + SLACK
        for t in prange(chunks):
            pbuf = patches[t * stride:(t + 1) * stride]
            rs = rscale[t * block:(t + 1) * block]
            for bi in range(t * per, min(nblocks, (t + 1) * per)):
                r0 = bi * block
                m = min(block, m_total - r0)
                if direct:
                    row_scales(scales, pixels, r0, m, rs)
                    xw = qflat[r0 * c:(r0 + block) * c].view(np.int32)
                else:
                    im2col(qflat, scales, geo, r0, m, pbuf, ld, rs)
                    xw = pbuf[:block * ld].view(np.int32)
                yb = yf[r0 * n:]
                for cb in range(nb):
                    col0 = cb * nr
                    cols = min(nr, n - col0)
                    for tb in range(-(-m // mr)):
                        m0 = tb * mr
                        _tile(xw, m0 * kq, kq, wf, cb * kq * nr, yb, n, m0, min(mr, m - m0),
                              col0, cols, rs, colsum, scale, mr, nr)
                if epilogue:
                    bias_act_rows(y[r0:r0 + m], bias, code, alpha)

    return run


def blocks_kernel(mr: int, nr: int) -> Any:
    """The threaded block driver for packed weights of tile MR x NR."""
    if (mr, nr) not in _KERNELS:
        _KERNELS[(mr, nr)] = _build(mr, nr)
    return _KERNELS[(mr, nr)]
