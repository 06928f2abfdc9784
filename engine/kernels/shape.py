"""Data-movement kernels: the two transposes numpy copies slowly, and checked gathers.

They move 4-byte elements viewed as uint32 (float32 and int32 alike, bit-exact), so one
compiled specialization serves every 4-byte dtype; bindings use numpy for other itemsizes.
Each has a serial block body over work items ``lo:hi`` and a parallel driver that splits
them into ``chunks`` (about one per thread).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = [
    "copy_bytes",
    "PAR_MIN",
    "TILE",
    "swap_middle_block",
    "swap_middle",
    "transpose_last2_block",
    "transpose_last2",
    "check_indices",
    "gather_block",
    "gather",
    "gather_elements_block",
    "gather_elements",
]

PAR_MIN = 1 << 17  # elements moved below which the serial body wins (memory-bound copies)
TILE = 32  # square tile of the blocked 2-D transpose (32x32x4 B = 4 KiB, fits L1 twice)


@jit
def copy_bytes(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[:] = src over two flat byte views: a reshape's copy as one kernel call, so it can
    join a plan's chained steps."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


@jit
def swap_middle_block(x: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """x (A, B, C, D) -> out (A, C, B, D), for work items ac in lo:hi (a = ac // C)."""
    _, nb, nc, nd = x.shape
    for ac in range(lo, hi):
        a = ac // nc
        c = ac - a * nc
        for b in range(nb):
            src = x[a, b, c]
            dst = out[a, c, b]
            for d in range(nd):
                dst[d] = src[d]


@pjit
def swap_middle(x: np.ndarray, out: np.ndarray, chunks: int) -> None:
    n = x.shape[0] * x.shape[2]
    chunks = min(chunks, n)
    for k in prange(chunks):
        swap_middle_block(x, out, k * n // chunks, (k + 1) * n // chunks)


@jit
def transpose_last2_block(x: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """x (A, B, C) -> out (A, C, B) in TILE x TILE tiles; work items are (a, tile of B) pairs.

    Reads run along contiguous rows of x, writes stride down columns of out. Indices are
    taken relative to slices so every subscript counts up from 0: numba then drops its
    negative-index wraparound select, which otherwise keeps LLVM from vectorizing (2x here).
    """
    _, nb, nc = x.shape
    tb = (nb + TILE - 1) // TILE
    for item in range(lo, hi):
        a = item // tb
        b0 = (item - a * tb) * TILE
        b1 = min(b0 + TILE, nb)
        xs = x[a, b0:b1]
        os = out[a, :, b0:b1]
        for c0 in range(0, nc, TILE):
            cw = min(TILE, nc - c0)
            for b in range(b1 - b0):
                src = xs[b, c0:c0 + cw]
                dst = os[c0:c0 + cw, b]
                for c in range(cw):
                    dst[c] = src[c]


@pjit
def transpose_last2(x: np.ndarray, out: np.ndarray, chunks: int) -> None:
    n = x.shape[0] * ((x.shape[1] + TILE - 1) // TILE)
    chunks = min(chunks, n)
    for k in prange(chunks):
        transpose_last2_block(x, out, k * n // chunks, (k + 1) * n // chunks)


@jit
def check_indices(idx: np.ndarray, n: int) -> int:
    """Position of the first index outside [-n, n), or -1 when all are valid."""
    for k in range(idx.shape[0]):
        v = idx[k]
        if v < -n or v >= n:
            return k
    return -1


@jit
def gather_block(x: np.ndarray, idx: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """out[a, k, :] = x[a, idx[k], :] (negative indices count from the end), for the work
    items a * K + k in lo:hi. Indices must have passed ``check_indices``."""
    nd = x.shape[1]
    nk = idx.shape[0]
    nb = x.shape[2]
    for item in range(lo, hi):
        a = item // nk
        k = item - a * nk
        j = idx[k]
        if j < 0:
            j += nd
        src = x[a, j]
        dst = out[a, k]
        for b in range(nb):
            dst[b] = src[b]


@pjit
def gather(x: np.ndarray, idx: np.ndarray, out: np.ndarray, chunks: int) -> None:
    n = x.shape[0] * idx.shape[0]
    chunks = min(chunks, n)
    for k in prange(chunks):
        gather_block(x, idx, out, k * n // chunks, (k + 1) * n // chunks)


@jit
def gather_elements_block(x: np.ndarray, idx: np.ndarray, out: np.ndarray, lo: int,
                          hi: int) -> int:
    """out[a, k, b] = x[a, idx[a, k, b], b] for the work items a * K + k in lo:hi; negative
    indices count from the end. Returns the flat position in ``idx`` of the first index
    outside [-D, D) (the rest of the block is then left unwritten), or -1."""
    nd = x.shape[1]
    nk, nb = idx.shape[1], idx.shape[2]
    if hi <= lo:
        return -1
    # counters instead of a division per item: with B = 1 (the last axis) an item is 1 element
    a = lo // nk
    k = lo - a * nk
    for item in range(lo, hi):
        for b in range(nb):
            j = idx[a, k, b]
            if j < 0:
                j += nd
            if j < 0 or j >= nd:
                return int(item * nb + b)
            out[a, k, b] = x[a, j, b]
        k += 1
        if k == nk:
            k = 0
            a += 1
    return -1


@pjit
def gather_elements(x: np.ndarray, idx: np.ndarray, out: np.ndarray, chunks: int) -> int:
    """Parallel ``gather_elements_block`` over ``chunks`` ranges of work items."""
    n = idx.shape[0] * idx.shape[1]
    chunks = max(min(chunks, n), 1)
    bad = np.full(chunks, -1, np.int64)
    for c in prange(chunks):
        bad[c] = gather_elements_block(x, idx, out, c * n // chunks, (c + 1) * n // chunks)
    for c in range(chunks):
        if bad[c] >= 0:
            return int(bad[c])
    return -1
