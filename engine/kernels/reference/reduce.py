"""Reference reductions: numpy in float64 (max in the input dtype); ArgMax/ArgMin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["reduce", "arg_reduce"]

_FUNCS: dict[str, Callable[..., Any]] = {
    "ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min,
    "ReduceProd": np.prod,
}


def reduce(
    op: str, x: np.ndarray, axes: Sequence[int] | None = None, keepdims: bool = True
) -> np.ndarray:
    x = np.asarray(x)
    if op not in ("ReduceMax", "ReduceMin") and x.dtype.kind == "f":
        x = x.astype(np.float64)
    ax = None if axes is None else tuple(a % x.ndim for a in axes)
    return np.asarray(_FUNCS[op](x, axis=ax, keepdims=keepdims))


def arg_reduce(op: str, x: np.ndarray, axis: int = 0, keepdims: bool = True,
               select_last_index: bool = False) -> np.ndarray:
    """ArgMax/ArgMin as int64: the first extreme along ``axis`` (numpy's rule, NaN wins), or
    the last one, found as the first one along the reversed axis."""
    x = np.asarray(x)
    axis %= x.ndim
    fn = np.argmax if op == "ArgMax" else np.argmin
    if select_last_index:
        idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    if keepdims:
        idx = np.expand_dims(idx, axis)
    return np.asarray(idx, dtype=np.int64)
