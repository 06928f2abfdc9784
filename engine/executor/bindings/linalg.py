"""Kernel bindings: linalg family (Dense, MatMul).

Both are one BLAS call from here (numpy's ``matmul`` with ``out=``), never inside a numba
``prange``; Dense then runs the serial numba bias + activation epilogue in place. An input
of any rank is viewed as a 2-D (rows, K) matrix: a Keras Dense on (N, H, W, C) is one GEMM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.executor.binding import Prepared, bind
from engine.executor.bindings.conv import CONV_PAR_MIN_FMA, dense_as_conv
from engine.executor.threads import plan_threads
from engine.ir.graph import TensorType
from engine.kernels.activations import activation_code
from engine.kernels.dense import dense_epilogue
from engine.kernels.elementwise import UNARY_CODES, unary_serial

__all__: list[str] = []

Arrays = Sequence[np.ndarray]
_F32 = "float32"
_DENSE_AS_CONV_ROWS = 8


def _dim(d: int | None) -> int:
    if d is None:
        raise ShapeError("Dense/MatMul bindings need static shapes")
    return int(d)


def _size(shape: Sequence[int | None]) -> int:
    return math.prod(_dim(d) for d in shape)


def _const_f32(c: np.ndarray | None) -> np.ndarray | None:
    return None if c is None else np.ascontiguousarray(c, dtype=np.float32)


@bind("Dense")
def _prepare_dense(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    x_t, w_t = in_types[0], in_types[1]
    k, units = _dim(w_t.shape[0]), _dim(w_t.shape[1])
    rows = _size(x_t.shape[:-1])
    act = str(attrs["activation"])
    alpha = float(attrs["alpha"])
    has_bias = len(in_types) == 3
    f32 = all(t.dtype == _F32 for t in in_types) and out_types[0].dtype == _F32
    if not f32:
        return _dense_numpy(rows, k, units, act, alpha, has_bias)

    code = activation_code(act)
    no_epilogue = code == 0 and not has_bias
    w_const = _const_f32(consts[1])
    b_const = _const_f32(consts[2]) if has_bias else np.zeros(units, dtype=np.float32)

    if w_const is not None and b_const is not None:
        w, b = w_const, b_const
        # one engine thread (a server's batch thread on a small machine) and at least a row
        # tile: the conv GEMM, as fast as one-thread BLAS there, and it chains with the convs;
        # else BLAS (its GEMV for a few rows, its threads for more; measured: the MLP at
        # batch 1 and 32 on two threads was 1.2-1.4x slower on the conv GEMM)
        if rows >= _DENSE_AS_CONV_ROWS and plan_threads() == 1 and \
                rows * k * units < CONV_PAR_MIN_FMA:
            return dense_as_conv(rows, k, units, w, b, act, alpha)

        def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            y = outs[0].reshape(rows, units)
            np.matmul(ins[0].reshape(rows, k), w, out=y)
            if not no_epilogue:
                dense_epilogue(y, b, code, alpha)

        return Prepared(run)

    def run_dynamic(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        w = w_const if w_const is not None else ins[1]
        b = b_const if b_const is not None else ins[2].reshape(-1)
        y = outs[0].reshape(rows, units)
        np.matmul(ins[0].reshape(rows, k), w, out=y)
        if not no_epilogue:
            dense_epilogue(y, b, code, alpha)

    return Prepared(run_dynamic)


def _numpy_activation(act: str, alpha: float) -> Callable[[np.ndarray], object]:
    """In-place activation for non-float32 Dense (rare: float64/float16 models)."""
    if act == "linear":
        return lambda y: None
    if act == "relu":
        return lambda y: np.maximum(y, 0, out=y)
    if act == "relu6":
        return lambda y: np.clip(y, 0, 6, out=y)
    if act == "leaky_relu":
        return lambda y: np.copyto(y, np.where(y > 0, y, alpha * y))
    if act == "sigmoid":
        return lambda y: np.copyto(y, 1.0 / (1.0 + np.exp(-y)))
    if act == "tanh":
        return lambda y: np.tanh(y, out=y)
    code = UNARY_CODES["GeluTanh" if act == "gelu_tanh" else "Gelu"]

    def gelu(y: np.ndarray) -> None:  # numpy has no erf: float32 kernel on a copy
        tmp = y.astype(np.float32).reshape(-1)
        unary_serial(tmp, tmp, code, 0.0, 0.0)
        np.copyto(y, tmp.reshape(y.shape), casting="unsafe")

    return gelu


def _dense_numpy(
    rows: int, k: int, units: int, act: str, alpha: float, has_bias: bool
) -> Prepared:
    activate = _numpy_activation(act, alpha)

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        y = outs[0].reshape(rows, units)
        np.matmul(ins[0].reshape(rows, k), ins[1], out=y, casting="unsafe")
        if has_bias:
            np.add(y, ins[2], out=y, casting="unsafe")
        activate(y)

    return Prepared(run)


@bind("MatMul")
def _prepare_matmul(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    a_t, b_t = in_types
    out_t = out_types[0]
    b_const = consts[1]
    if b_const is not None:
        b_const = np.ascontiguousarray(b_const, dtype=b_t.dtype)
    casting: Any = "same_kind" if a_t.dtype == b_t.dtype == out_t.dtype else "unsafe"
    if a_t.rank >= 2 and b_t.rank == 2 and casting == "same_kind":
        # (..., M, K) @ (K, N): every batch shares the right operand, so one (B*M, K) GEMM
        rows, k, n = _size(a_t.shape[:-1]), _dim(a_t.shape[-1]), _dim(b_t.shape[1])

        def run_2d(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            b = b_const if b_const is not None else ins[1]
            np.matmul(ins[0].reshape(rows, k), b, out=outs[0].reshape(rows, n))

        return Prepared(run_2d)

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        b = b_const if b_const is not None else ins[1]
        np.matmul(ins[0], b, out=outs[0], casting=casting)

    return Prepared(run)
