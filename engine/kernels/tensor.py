"""Pad: each output row copied from a source row, or filled, by precomputed index maps.

The binding views the input as (R_in, D_in * B) and the output as (R_out, D_out * B): D is
the last padded axis, B the product of the unpadded axes after it, R the axes before it.
``rmap[r]`` is the input row of output row r (-1: fill the row), ``cmap[c]`` the input column
group of output column group c (-1: fill); columns c0:c1 are the untouched interior, copied as
one contiguous run. Every mode (constant, edge, reflect, wrap) and cropping (negative pads) is
in the maps, so one kernel serves them all. Elements move as unsigned ints of their size.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = ["PAR_MIN", "pad_block", "pad"]

PAR_MIN = 1 << 17  # output elements below which the serial body wins (memory-bound copies)


@jit
def pad_block(x: np.ndarray, out: np.ndarray, rmap: np.ndarray, cmap: np.ndarray, nb: int,
              c0: int, c1: int, off: int, fill: np.generic, lo: int, hi: int) -> None:
    """Write output rows lo:hi (see the module docstring); input column group c - off feeds
    interior output column group c."""
    ncols = cmap.shape[0]
    width = (c1 - c0) * nb
    d0, s0 = c0 * nb, (c0 - off) * nb
    for r in range(lo, hi):
        dst = out[r]
        src_row = rmap[r]
        if src_row < 0:
            for j in range(dst.shape[0]):
                dst[j] = fill
            continue
        src = x[src_row]
        # slices whose subscripts count up from 0: numba drops the wraparound select and LLVM
        # vectorizes the copy
        dseg = dst[d0:d0 + width]
        sseg = src[s0:s0 + width]
        for j in range(width):
            dseg[j] = sseg[j]
        for side in range(2):  # the border column groups: 0:c0, then c1:ncols
            cs, ce = (0, c0) if side == 0 else (c1, ncols)
            for c in range(cs, ce):
                cell = dst[c * nb:(c + 1) * nb]
                sc = cmap[c]
                if sc < 0:
                    for j in range(nb):
                        cell[j] = fill
                else:
                    from_ = src[sc * nb:(sc + 1) * nb]
                    for j in range(nb):
                        cell[j] = from_[j]


@pjit
def pad(x: np.ndarray, out: np.ndarray, rmap: np.ndarray, cmap: np.ndarray, nb: int, c0: int,
        c1: int, off: int, fill: np.generic, chunks: int) -> None:
    """Parallel ``pad_block``: output rows split into ``chunks`` ranges."""
    n = out.shape[0]
    chunks = max(min(chunks, n), 1)
    for k in prange(chunks):
        pad_block(x, out, rmap, cmap, nb, c0, c1, off, fill, k * n // chunks,
                  (k + 1) * n // chunks)
