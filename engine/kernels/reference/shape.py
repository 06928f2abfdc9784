"""Reference data-movement ops in plain numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "reshape", "flatten", "transpose", "concat", "squeeze", "unsqueeze", "slice_", "gather",
    "gather_elements",
    "expand", "tile", "range_", "constant_of_shape", "shape_of",
]


def reshape(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return np.reshape(x, target).copy()


def flatten(x: np.ndarray, axis: int = 1) -> np.ndarray:
    axis = axis % (x.ndim + 1) if axis < 0 else axis
    return np.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))).copy()


def transpose(x: np.ndarray, perm: Sequence[int] | None = None) -> np.ndarray:
    return np.transpose(x, perm).copy()


def concat(xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(list(xs), axis=axis)


def squeeze(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    return np.squeeze(x, axis=tuple(axes)).copy()


def unsqueeze(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(a % rank for a in axes)).copy()


def slice_(
    x: np.ndarray, starts: Sequence[int], ends: Sequence[int],
    axes: Sequence[int] | None = None, steps: Sequence[int] | None = None,
) -> np.ndarray:
    """x[start:end:step] on each listed axis, by Python's slice rules."""
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(axes) if steps is None else list(steps)
    index = [slice(None)] * x.ndim
    for ax, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[ax % x.ndim] = slice(s, e, st)
    return x[tuple(index)].copy()


def gather(x: np.ndarray, indices: np.ndarray, axis: int = 0) -> np.ndarray:
    """numpy.take, raising IndexError for indices outside [-n, n)."""
    return np.take(x, np.asarray(indices), axis=axis, mode="raise")


def gather_elements(x: np.ndarray, indices: np.ndarray, axis: int = 0) -> np.ndarray:
    """out[p] = x[p with p[axis] replaced by indices[p]], for every position p of ``indices``
    (negative indices count from the end); IndexError for indices outside [-n, n)."""
    indices = np.asarray(indices).astype(np.int64)
    axis %= x.ndim
    n = x.shape[axis]
    if np.any((indices < -n) | (indices >= n)):
        raise IndexError(f"an index is outside [-{n}, {n})")
    where: list[np.ndarray] = list(np.indices(indices.shape, sparse=True))
    where[axis] = np.where(indices < 0, indices + n, indices)
    return x[tuple(where)]


def expand(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """ONNX Expand: bidirectional broadcast of x and ``shape``."""
    out = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return np.broadcast_to(x, out).copy()


def tile(x: np.ndarray, repeats: Sequence[int]) -> np.ndarray:
    return np.tile(x, tuple(int(r) for r in repeats))


def range_(start: float, limit: float, delta: float, dtype: str) -> np.ndarray:
    """ONNX Range: element i is start + i * delta, max(ceil((limit - start) / delta), 0) long."""
    n = max(int(math.ceil((limit - start) / delta)), 0)
    return (start + np.arange(n, dtype=np.float64) * delta).astype(dtype)


def constant_of_shape(shape: Sequence[int], value: float, dtype: str) -> np.ndarray:
    return np.full(tuple(int(d) for d in shape), value, dtype=dtype)


def shape_of(x: np.ndarray, start: int = 0, end: int | None = None) -> np.ndarray:
    return np.array(x.shape[start:end], dtype=np.int64)
