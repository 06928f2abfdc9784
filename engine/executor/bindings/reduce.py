"""Kernel bindings: reduce family (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
ArgMax, ArgMin)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.executor.binding import Prepared, PrepareFn, bind
from engine.executor.threads import plan_threads, use_parallel
from engine.ir.graph import TensorType
from engine.kernels import reduce as K

__all__ = ["canonical_arb"]

_F32 = np.dtype(np.float32)


def canonical_arb(shape: Sequence[int], axes: set[int]) -> tuple[int, int, int] | None:
    """(A, R, B) when the reduced axes form one run once size-1 dims are dropped, else None."""
    groups: list[tuple[int, bool]] = []  # (size, reduced)
    for i, d in enumerate(shape):
        if d == 1:
            continue
        red = i in axes
        if groups and groups[-1][1] == red:
            groups[-1] = (groups[-1][0] * d, red)
        else:
            groups.append((d, red))
    flags = [red for _, red in groups]
    if flags.count(True) > 1:
        return None
    if True not in flags:  # nothing non-trivial is reduced: R = 1
        return math.prod(shape), 1, 1
    k = flags.index(True)
    a = groups[k - 1][0] if k > 0 else 1
    b = groups[k + 1][0] if k + 1 < len(groups) else 1
    return a, groups[k][0], b


def _make(op: str, code: int, np_fn: Callable[..., Any]) -> PrepareFn:
    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        shape = tuple(int(d or 0) for d in in_types[0].shape)
        rank = len(shape)
        axes = set(range(rank)) if attrs["axes"] is None else {a % rank for a in attrs["axes"]}
        kd_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
        if code in (K.MAX, -1) and math.prod(shape) == 0 and math.prod(kd_shape) > 0:
            raise ShapeError(f"{op} over an empty axis of shape {shape} has no value")
        arb = canonical_arb(shape, axes)
        dtype = np.dtype(in_types[0].dtype)

        if arb is None or dtype != _F32 or math.prod(kd_shape) == 0 or code < 0:
            ax = tuple(sorted(axes))
            exact = dtype.kind == "f" or code not in (K.MEAN, _PROD)  # int out: cast

            def run_np(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
                okd = outs[0].reshape(kd_shape)
                if exact:
                    np_fn(ins[0], axis=ax, keepdims=True, out=okd)
                else:
                    np.copyto(okd, np_fn(ins[0], axis=ax, keepdims=True), casting="unsafe")

            return Prepared(run_np)

        a, r, b = arb
        parallel = use_parallel(a * r * b >= K.PAR_MIN and (a >= 2 or b >= 32))
        par, block = K.reduce_arb, K.reduce_block
        nt = plan_threads()

        def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
            x3, o2 = ins[0].reshape(a, r, b), outs[0].reshape(a, b)
            if parallel:
                par(x3, code, o2, nt)
            else:
                block(x3, code, o2, 0, a, 0, b)

        return Prepared(run)

    prepare.__name__ = f"_prepare_{op}"
    return prepare


bind("ReduceSum")(_make("ReduceSum", K.SUM, np.sum))
bind("ReduceMean")(_make("ReduceMean", K.MEAN, np.mean))
bind("ReduceMax")(_make("ReduceMax", K.MAX, np.max))
# rare in models (shape arithmetic, masks): numpy only, no kernel code
_PROD = -2
bind("ReduceMin")(_make("ReduceMin", -1, np.min))
bind("ReduceProd")(_make("ReduceProd", _PROD, np.prod))


def _make_arg(op: str, find_max: bool) -> PrepareFn:
    np_fn = np.argmax if find_max else np.argmin

    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        shape = tuple(int(d or 0) for d in in_types[0].shape)
        axis = attrs["axis"] % len(shape)
        a, r, b = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
        if r == 0:
            raise ShapeError(f"{op} over the empty axis {axis} of shape {shape} has no value")
        last = bool(attrs["select_last_index"])
        kd_shape = shape[:axis] + (1,) + shape[axis + 1:]

        # numpy's first-index search along contiguous rows is SIMD (~6x our row scan)
        if np.dtype(in_types[0].dtype) != _F32 or a * b == 0 or (b == 1 and not last):
            def run_np(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
                okd = outs[0].reshape(kd_shape)
                if last:  # numpy gives the first extreme: search the reversed axis
                    np.subtract(r - 1, np_fn(np.flip(ins[0], axis), axis=axis, keepdims=True),
                                out=okd)
                else:
                    np_fn(ins[0], axis=axis, keepdims=True, out=okd)

            return Prepared(run_np)

        parallel = use_parallel(a * r * b >= K.PAR_MIN and (a >= 2 or b >= 32))
        par, block = K.arg_arb, K.arg_block
        nt = plan_threads()

        def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
            x3, o2 = ins[0].reshape(a, r, b), outs[0].reshape(a, b)
            if parallel:
                par(x3, find_max, last, o2, nt)
            else:
                block(x3, find_max, last, o2, 0, a, 0, b)

        return Prepared(run)

    prepare.__name__ = f"_prepare_{op}"
    return prepare


bind("ArgMax")(_make_arg("ArgMax", True))
bind("ArgMin")(_make_arg("ArgMin", False))
