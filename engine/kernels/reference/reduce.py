"""Reference reductions: numpy in float64 (max in the input dtype)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["reduce"]

_FUNCS: dict[str, Callable[..., Any]] = {
    "ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max,
}


def reduce(
    op: str, x: np.ndarray, axes: Sequence[int] | None = None, keepdims: bool = True
) -> np.ndarray:
    x = np.asarray(x)
    if op != "ReduceMax" and x.dtype.kind == "f":
        x = x.astype(np.float64)
    ax = None if axes is None else tuple(a % x.ndim for a in axes)
    return np.asarray(_FUNCS[op](x, axis=ax, keepdims=keepdims))
