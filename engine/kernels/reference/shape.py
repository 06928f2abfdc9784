"""Reference data-movement ops in plain numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "reshape", "flatten", "transpose", "concat", "squeeze", "unsqueeze", "slice_", "gather",
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
