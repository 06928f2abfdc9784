"""Kernel bindings: elementwise family, unary and activation ops (binary and comparison ops
are in ``elementwise_binary``).

float32 ops run the numba kernels of ``engine.kernels.elementwise`` (serial below a size
threshold, ``prange`` above); other dtypes, Not, Cast and the rare math ops use numpy ufuncs
with ``out=``. Every decision (kernel, threshold) is made here, once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError, UnsupportedOpError
from engine.executor.binding import Native, Prepared, bind, native_prepared
from engine.executor.threads import use_parallel
from engine.ir.graph import TensorType
from engine.ir.schema import normalize_axis
from engine.kernels import elementwise as K

__all__ = ["PAR_MIN_CHEAP", "PAR_MIN_HEAVY", "PAR_MIN_SOFTMAX"]

# Sizes (elements) from which the prange kernels beat the serial ones on 2 cores (measured:
# relu/add ~64k, exp ~24k, gelu ~12k, softmax rows ~32k). A parallel region costs 2-4 us, and
# far more when other processes hold a core, so the thresholds err on the high side.
PAR_MIN_CHEAP = 1 << 16
PAR_MIN_HEAVY = 1 << 14
PAR_MIN_SOFTMAX = 1 << 15
_HEAVY_UNARY = {"Sigmoid", "Exp", "Erf", "Gelu", "GeluTanh", "Sqrt", "Reciprocal"}
# Below the parallel threshold numpy's own SIMD loops match or beat ours for these, and a
# direct ufunc call skips the flattening reshapes (~0.5 us on tiny tensors).
_NUMPY_SMALL = {"Neg", "Abs", "Exp", "Tanh", "Floor", "Ceil"}

_F32 = "float32"

Arrays = Sequence[np.ndarray]


def _static(shape: Sequence[int | None]) -> tuple[int, ...]:
    """A bound shape: plans are prepared per concrete shape, so no dim is dynamic here."""
    if any(d is None for d in shape):
        raise ShapeError(f"shape {tuple(shape)} is not static")
    return tuple(int(d) for d in shape if d is not None)


def _size(shape: Sequence[int | None]) -> int:
    return math.prod(_static(shape))


def _noop(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
    return None


def _per_op(prepare_op: Callable[..., Prepared], op: str) -> Callable[..., Prepared]:
    """The binding of ``op``: ``prepare_op(op, attrs, in_types, out_types, consts)``."""

    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        return prepare_op(op, attrs, in_types, out_types, consts)

    prepare.__name__ = f"prepare_{op}"
    return prepare


# ----------------------------------------------------------------------------- unary


def _unary_fast(op: str, p0: float, p1: float, n: int) -> Prepared:
    code = K.UNARY_CODES[op]
    threshold = PAR_MIN_HEAVY if op in _HEAVY_UNARY else PAR_MIN_CHEAP
    ref = "EK.unary_par" if use_parallel(n >= threshold) else "EK.unary_serial"

    def args(ins: Arrays, outs: Arrays, scratch: Arrays) -> tuple[Any, ...]:
        return ins[0].reshape(-1), outs[0].reshape(-1), code, p0, p1

    return native_prepared(Native(ref, args))


def _numpy_unary(op: str, attrs: Mapping[str, Any]) -> Callable[[np.ndarray, np.ndarray], Any]:
    """The same op for any dtype, written into ``out`` by numpy."""
    if op == "Identity":
        return lambda x, out: np.copyto(out, x)
    if op == "Relu":
        return lambda x, out: np.maximum(x, 0, out=out, casting="unsafe")
    if op == "Relu6":
        return lambda x, out: np.clip(x, 0, 6, out=out, casting="unsafe")
    if op == "LeakyRelu":
        alpha = attrs["alpha"]
        return lambda x, out: np.copyto(out, np.where(x > 0, x, alpha * x), casting="unsafe")
    if op == "Clip":
        lo, hi = attrs["min"], attrs["max"]
        if lo is None and hi is None:
            return lambda x, out: np.copyto(out, x)
        return lambda x, out: np.clip(x, lo, hi, out=out, casting="unsafe")
    ufuncs: dict[str, Callable[..., Any]] = {
        "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Neg": np.negative, "Abs": np.absolute,
        "Reciprocal": np.reciprocal, "Floor": np.floor, "Ceil": np.ceil, "Tanh": np.tanh,
    }
    if op in ufuncs:
        uf = ufuncs[op]
        return lambda x, out: uf(x, out=out, casting="unsafe")
    if op == "Sigmoid":
        return lambda x, out: np.copyto(out, 1.0 / (1.0 + np.exp(-x)), casting="unsafe")
    if op in ("Erf", "Gelu", "GeluTanh"):
        # rare dtypes: go through the float32 kernel
        code = K.UNARY_CODES[op]

        def run32(x: np.ndarray, out: np.ndarray) -> None:
            tmp = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
            res = np.empty_like(tmp)
            K.unary_serial(tmp, res, code, 0.0, 0.0)
            np.copyto(out, res.reshape(out.shape), casting="unsafe")

        return run32
    raise UnsupportedOpError(f"{op} has no numpy fallback")


def _floor_ceil_int(x: np.ndarray, out: np.ndarray) -> None:
    np.copyto(out, x)


def _prepare_unary(
    op: str,
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    n = _size(out_types[0].shape)
    if n == 0:
        return Prepared(_noop)
    if op == "Gelu":
        approx = attrs["approximate"]
        if approx not in ("none", "tanh"):
            raise UnsupportedOpError(f"Gelu approximate={approx!r}; supported: 'none', 'tanh'")
        op = "GeluTanh" if approx == "tanh" else "Gelu"
    dtype = in_types[0].dtype
    p0 = p1 = 0.0
    if op == "LeakyRelu":
        p0 = float(attrs["alpha"])
    if op == "Clip":
        p0 = -math.inf if attrs["min"] is None else float(attrs["min"])
        p1 = math.inf if attrs["max"] is None else float(attrs["max"])
    f32 = dtype == _F32 and out_types[0].dtype == _F32
    # Identity is a memcpy; numpy's SIMD log beats libm's logf called per element
    if f32 and op not in ("Identity", "Log") and not (op in _NUMPY_SMALL and n < PAR_MIN_CHEAP):
        return _unary_fast(op, p0, p1, n)
    if op in ("Floor", "Ceil") and np.issubdtype(np.dtype(dtype), np.integer):
        fn: Callable[[np.ndarray, np.ndarray], Any] = _floor_ceil_int
    else:
        fn = _numpy_unary(op, attrs)

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        fn(ins[0], outs[0])

    return Prepared(run)


_ALL_UNARY = ("Relu", "Relu6", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Neg", "Abs",
              "Reciprocal", "Identity", "Floor", "Ceil", "LeakyRelu", "Gelu", "Clip")
for _op in _ALL_UNARY:
    bind(_op)(_per_op(_prepare_unary, _op))


# ----------------------------------------------------------------------------- the rest


@bind("Cast")
def _prepare_cast(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    # numpy's unsafe cast: float -> int truncates toward zero, nonzero -> True
    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        np.copyto(outs[0], ins[0], casting="unsafe")

    return Prepared(run)


@bind("Softmax")
def _prepare_softmax(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _static(in_types[0].shape)
    axis = normalize_axis(int(attrs["axis"]), len(shape))
    outer, n, inner = _size(shape[:axis]), shape[axis], _size(shape[axis + 1:])
    if outer * n * inner == 0:
        return Prepared(_noop)
    if in_types[0].dtype != _F32:
        def run_numpy(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            x = ins[0]
            e = np.exp(x - np.max(x, axis=axis, keepdims=True))
            np.divide(e, np.sum(e, axis=axis, keepdims=True), out=outs[0], casting="unsafe")

        return Prepared(run_numpy)
    if inner == 1:
        par = use_parallel(outer > 1 and outer * n >= PAR_MIN_SOFTMAX)
        fn = K.softmax_rows_par if par else K.softmax_rows_serial

        def run_rows(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            fn(ins[0].reshape(outer, n), outs[0].reshape(outer, n))

        return Prepared(run_rows)

    def run_strided(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        K.softmax_strided(ins[0].reshape(outer, n, inner), outs[0].reshape(outer, n, inner))

    return Prepared(run_strided)


# ----------------------------------------------------------------------------- numpy-backed
# Ops imported models use rarely and on small tensors (masks, shape arithmetic): one ufunc.

# one numpy ufunc into the preallocated output (bool outputs: Not, IsNaN)
_NUMPY_UNARY: dict[str, Callable[..., Any]] = {"Sin": np.sin, "Cos": np.cos, "Sign": np.sign,
                                               "Not": np.logical_not, "IsNaN": np.isnan}


def _ufunc_binding(fn: Callable[..., Any], arity: int) -> Callable[..., Prepared]:
    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            fn(*ins[:arity], out=outs[0], casting="unsafe")

        return Prepared(run)

    return prepare


for _op, _fn in _NUMPY_UNARY.items():
    bind(_op)(_ufunc_binding(_fn, 1))


@bind("IsInf")
def _prepare_isinf(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    neg, pos = bool(attrs["detect_negative"]), bool(attrs["detect_positive"])

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        x = ins[0]
        if x.dtype.kind != "f":
            outs[0].fill(False)
        elif neg and pos:
            np.isinf(x, out=outs[0])
        elif pos:
            np.equal(x, np.inf, out=outs[0])
        elif neg:
            np.equal(x, -np.inf, out=outs[0])
        else:
            outs[0].fill(False)

    return Prepared(run)


@bind("LogSoftmax")
def _prepare_log_softmax(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    axis = normalize_axis(int(attrs["axis"]), in_types[0].rank)

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        x = ins[0]
        if x.size == 0:
            return
        shifted = x - np.max(x, axis=axis, keepdims=True)
        lse = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        np.subtract(shifted, lse, out=outs[0], casting="unsafe")

    return Prepared(run)
