"""Elementwise ops through their bindings vs the float64 numpy reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from engine.executor.bindings.elementwise import PAR_MIN_CHEAP
from engine.executor.bindings.elementwise_binary import broadcast_plan
from engine.kernels import elementwise as K
from engine.kernels.reference import elementwise as ref
from tests.unit.kernels.harness import run_op

UNARY = ("Relu", "Relu6", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Neg", "Abs",
         "Reciprocal", "Identity", "Floor", "Ceil", "LeakyRelu", "Gelu", "Clip")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum")
RTOL, ATOL = 1e-5, 1e-6
# one size below every threshold, one above the parallel one for all ops
SIZES = ((5,), (3, 4, 7), (2, 190, 190))
assert 2 * 190 * 190 > PAR_MIN_CHEAP


def _inputs(op: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=shape).astype(np.float32)
    if op in ("Log", "Sqrt"):
        x = np.abs(x) + np.float32(1e-3)
    if op == "Reciprocal":
        x = np.where(np.abs(x) < 0.1, np.float32(0.5), x).astype(np.float32)
    return x


def _close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- unary


@pytest.mark.parametrize("op", UNARY)
@pytest.mark.parametrize("shape", SIZES)
def test_unary_float32(op: str, shape: tuple[int, ...]) -> None:
    x = _inputs(op, shape)
    (got,) = run_op(op, "elementwise", [x])
    assert got.dtype == np.float32
    _close(got, ref.unary(op, x))


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("attrs", [{"alpha": 0.01}, {"alpha": 0.3}])
def test_leaky_relu_alpha(shape: tuple[int, ...], attrs: dict[str, Any]) -> None:
    x = _inputs("LeakyRelu", shape)
    (got,) = run_op("LeakyRelu", "elementwise", [x], attrs)
    _close(got, ref.unary("LeakyRelu", x, **attrs))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", SIZES)
def test_gelu(approximate: str, shape: tuple[int, ...]) -> None:
    x = _inputs("Gelu", shape)
    (got,) = run_op("Gelu", "elementwise", [x], {"approximate": approximate})
    _close(got, ref.unary("Gelu", x, approximate=approximate))


def test_gelu_variants_differ() -> None:
    x = np.linspace(-4, 4, 101, dtype=np.float32)
    (a,) = run_op("Gelu", "elementwise", [x], {"approximate": "none"})
    (b,) = run_op("Gelu", "elementwise", [x], {"approximate": "tanh"})
    assert 1e-5 < np.max(np.abs(a - b)) < 1e-2


@pytest.mark.parametrize("bounds", [(None, None), (-1.0, None), (None, 2.5), (-0.5, 0.5)])
@pytest.mark.parametrize("shape", SIZES)
def test_clip_bounds(bounds: tuple[float | None, float | None], shape: tuple[int, ...]) -> None:
    x = _inputs("Clip", shape)
    attrs = {"min": bounds[0], "max": bounds[1]}
    (got,) = run_op("Clip", "elementwise", [x], attrs)
    _close(got, ref.unary("Clip", x, **attrs))


@pytest.mark.parametrize(
    ("op", "dtype"),
    [("Abs", "int32"), ("Neg", "int64"), ("Relu", "float64"), ("Floor", "int32"),
     ("Ceil", "float64"), ("Identity", "uint8"), ("Sigmoid", "float64"), ("Exp", "float64"),
     ("Clip", "int32"), ("Relu6", "float16")],
)
def test_unary_other_dtypes(op: str, dtype: str) -> None:
    x = (np.random.default_rng(1).normal(scale=5, size=(4, 9))).astype(dtype)
    attrs = {"min": -2, "max": 3} if op == "Clip" else {}
    (got,) = run_op(op, "elementwise", [x], attrs)
    assert got.dtype == x.dtype
    want = ref.unary(op, x, **attrs).astype(dtype)
    rtol = 1e-3 if dtype == "float16" else RTOL
    _close(got.astype(np.float64), want.astype(np.float64), rtol=rtol)


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(UNARY),
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
)
def test_unary_property(op: str, shape: list[int]) -> None:
    x = _inputs(op, tuple(shape), seed=len(shape))
    (got,) = run_op(op, "elementwise", [x])
    _close(got, ref.unary(op, x))


# ------------------------------------------------------- the polynomial transcendentals


def _sweep() -> np.ndarray:
    lin = np.linspace(-120, 120, 400_001)
    tiny = np.logspace(-30, 1, 2000)
    return np.concatenate([lin, tiny, -tiny, [0.0, -0.0, 88.7, 88.72, -87.3, -87.4]]).astype(
        np.float32)


def _kernel(op: str, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    K.unary_serial(x, out, K.UNARY_CODES[op], 0.0, 0.0)
    return out


def test_exp_accuracy_and_limits() -> None:
    x = _sweep()
    got = _kernel("Exp", x)
    want = np.exp(x.astype(np.float64))
    normal = (want > 1.2e-38) & (want < 3.4e38)
    rel = np.abs(got[normal] - want[normal]) / want[normal]
    assert rel.max() < 3e-7  # ~2 ulp
    assert np.all(got[want > 3.41e38] == np.inf)
    assert np.all(got[x < -87.34] == 0.0)
    special = _kernel("Exp", np.array([np.inf, -np.inf, np.nan, 0.0], np.float32))
    assert special[0] == np.inf and special[1] == 0.0 and np.isnan(special[2])
    assert special[3] == 1.0


@pytest.mark.parametrize("op", ["Tanh", "Erf", "Sigmoid", "Gelu"])
def test_transcendental_accuracy(op: str) -> None:
    x = _sweep()
    got = _kernel(op, x).astype(np.float64)
    want = ref.unary(op, x)
    err = np.abs(got - want)
    assert err.max() < 3e-7 * max(1.0, float(np.abs(x).max()) if op == "Gelu" else 1.0)
    # relative accuracy where the value is small (odd functions near 0)
    small = (np.abs(x) < 1e-3) & (x != 0)
    if op in ("Tanh", "Erf"):
        assert np.max(err[small] / np.abs(want[small])) < 3e-7
    special = _kernel(op, np.array([np.inf, -np.inf, np.nan], np.float32))
    assert np.isnan(special[2])


# ----------------------------------------------------------------------------- binary

PATTERNS = [
    ((4, 5), (4, 5)),  # same shape, small
    ((3, 200, 200), (3, 200, 200)),  # same shape, parallel
    ((3, 200, 200), ()),  # 0-d scalar
    ((), (2, 3)),  # scalar first
    ((6, 7), (1,)),  # size-1 vector
    ((2, 32, 32, 3), (3,)),  # RGB channels: regrouped rows
    ((2, 32, 32, 16), (1, 1, 1, 16)),  # per-channel, short rows
    ((64, 64, 64), (64,)),  # per-channel, long rows, parallel
    ((5, 7, 11), (11,)),  # per-channel, d1 prime: no regrouping
    ((3,), (4, 5, 3)),  # vector first
    ((10, 1), (10, 6)),  # per-row scalar, short rows
    ((300, 1), (300, 40)),  # per-row scalar (x - mean), long rows
    ((), (3, 200, 200)),  # scalar first, parallel
    ((4, 1, 5), (1, 3, 5)),  # both broadcast
    ((2, 1, 4, 1, 6, 1), (3, 1, 5, 1, 7)),  # rank 6 alternating: beyond 3 dims
    ((2, 1, 1, 6), (2, 5, 7, 6)),  # (N, 1, 1, C) scales (N, H, W, C)
    ((1, 9), (9, 1)),  # outer product
    ((0, 4), (4,)),  # empty
]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize(("sa", "sb"), PATTERNS)
@pytest.mark.parametrize("const_b", [False, True])
def test_binary_broadcast(op: str, sa: tuple[int, ...], sb: tuple[int, ...], const_b: bool) -> None:
    rng = np.random.default_rng(len(sa) * 7 + len(sb))
    a = rng.normal(size=sa).astype(np.float32)
    b = rng.normal(size=sb).astype(np.float32)
    if op == "Pow":
        a = np.abs(a) + np.float32(0.1)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, np.float32(0.7), b).astype(np.float32)
    (got,) = run_op(op, "elementwise", [a, b], const=[False, const_b])
    assert got.dtype == np.float32
    _close(got, ref.binary(op, a, b), rtol=2e-6 if op == "Pow" else RTOL)


@pytest.mark.parametrize("const_a", [False, True])
def test_binary_const_vector_first(const_a: bool) -> None:
    a = np.arange(3, dtype=np.float32) + 1
    b = np.random.default_rng(0).normal(size=(4, 8, 3)).astype(np.float32)
    for op in ("Sub", "Div"):
        (got,) = run_op(op, "elementwise", [a, b], const=[const_a, False])
        _close(got, ref.binary(op, a, b))


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(BINARY),
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=5, max_side=5),
    const_b=st.booleans(),
)
def test_binary_property(op: str, shapes: Any, const_b: bool) -> None:
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(len(sa) + 10 * len(sb))
    a = np.abs(rng.normal(size=sa)).astype(np.float32) + np.float32(0.5)
    b = rng.normal(size=sb).astype(np.float32)
    (got,) = run_op(op, "elementwise", [a, b], const=[False, const_b])
    assert got.shape == shapes.result_shape
    _close(got, ref.binary(op, a, b), rtol=2e-6 if op == "Pow" else RTOL)


@pytest.mark.parametrize("shape", [(4, 5), (300, 300)])
def test_pow_const_two_is_square(shape: tuple[int, ...]) -> None:
    a = np.random.default_rng(2).normal(size=shape).astype(np.float32)  # negative bases too
    two = np.array(2.0, np.float32)
    (got,) = run_op("Pow", "elementwise", [a, two], const=[False, True])
    _close(got, a.astype(np.float64) ** 2)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_binary_integers(dtype: str) -> None:
    a = np.array([[7, -7, 9, -9, 0, 5]], dtype=dtype)
    b = np.array([[2], [-2], [4]], dtype=dtype)
    for op in ("Add", "Sub", "Mul", "Div", "Maximum", "Minimum"):
        (got,) = run_op(op, "elementwise", [a, b])
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, ref.binary(op, a, b))
    (got,) = run_op("Div", "elementwise", [np.array([7, -7], dtype), np.array([2], dtype)])
    np.testing.assert_array_equal(got, [3, -3])  # truncation, not floor


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater"])
@pytest.mark.parametrize(("sa", "sb"), [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5, 1), ())])
def test_compare(op: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(-2, 3, size=sa).astype(np.float32)
    b = rng.integers(-2, 3, size=sb).astype(np.float32)
    (got,) = run_op(op, "elementwise", [a, b])
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref.binary(op, a, b))


def test_not() -> None:
    x = np.random.default_rng(4).random((3, 5)) > 0.5
    (got,) = run_op("Not", "elementwise", [x])
    np.testing.assert_array_equal(got, ~x)


@pytest.mark.parametrize(
    ("sc", "sx", "sy"),
    [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), ()), ((4,), (2, 3, 4), (3, 1)),
     ((), (5,), (5,)), ((2, 1, 3), (1,), (4, 1))],
)
def test_where_broadcast(sc: tuple[int, ...], sx: tuple[int, ...], sy: tuple[int, ...]) -> None:
    rng = np.random.default_rng(5)
    c = rng.random(sc) > 0.5
    x = rng.normal(size=sx).astype(np.float32)
    y = rng.normal(size=sy).astype(np.float32)
    (got,) = run_op("Where", "elementwise", [c, x, y])
    np.testing.assert_array_equal(got, ref.where(c, x, y))


# ----------------------------------------------------------------------------- softmax


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 10), -1), ((1, 1000), 1), ((64, 512), -1), ((3, 4, 5), 0), ((3, 4, 5), 1),
     ((3, 4, 5), 2), ((2, 8, 300, 7), 2), ((2, 4, 6, 1), -1), ((5, 1), 0), ((40, 30, 20), -2),
     ((7,), 0)],
)
def test_softmax_axes(shape: tuple[int, ...], axis: int) -> None:
    x = np.random.default_rng(6).normal(scale=4.0, size=shape).astype(np.float32)
    (got,) = run_op("Softmax", "elementwise", [x], {"axis": axis})
    _close(got, ref.softmax(x, axis))
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_masked_and_large(axis: int) -> None:
    x = np.random.default_rng(7).normal(scale=50.0, size=(16, 16)).astype(np.float32)
    x[::3, ::2] = -np.inf  # attention masks
    x[1, 1] = 1e4  # large logits must not overflow
    (got,) = run_op("Softmax", "elementwise", [x], {"axis": axis})
    _close(got, ref.softmax(x, axis))


@pytest.mark.parametrize(
    "row",
    [[-3.0, -1.0, -2.0], [-np.inf, -5.0], [-0.0, 0.0], [0.0, -0.0], [-1e-40, -1e-38],
     [1e-40, -1.0], [-np.inf, -np.inf], [np.inf, 1.0], [7.0], list(range(-40, -7))],
)
def test_row_max_bit_trick(row: list[float]) -> None:
    x = np.array(row, dtype=np.float32)
    assert K._row_max(x) == x.max()  # -0.0 vs 0.0 may come out either way: both are fine


def test_softmax_float64() -> None:
    x = np.random.default_rng(8).normal(size=(3, 5))
    (got,) = run_op("Softmax", "elementwise", [x], {"axis": 0})
    assert got.dtype == np.float64
    _close(got, ref.softmax(x, 0), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- cast


@pytest.mark.parametrize(
    ("src", "to"),
    [("float32", "int32"), ("float32", "int64"), ("int64", "float32"), ("float32", "bool"),
     ("bool", "float32"), ("float64", "float32"), ("float32", "float16"), ("int32", "uint8")],
)
def test_cast(src: str, to: str) -> None:
    rng = np.random.default_rng(9)
    x = (rng.normal(scale=10, size=(3, 7)) if src != "bool" else rng.random((3, 7)) > 0.5)
    x = np.abs(x).astype(src) if to == "uint8" else x.astype(src)
    (got,) = run_op("Cast", "elementwise", [x], {"to": to})
    assert got.dtype == np.dtype(to)
    np.testing.assert_array_equal(got, ref.cast(x, to))


def test_cast_truncates_toward_zero() -> None:
    (got,) = run_op("Cast", "elementwise", [np.array([-2.7, -0.5, 0.5, 2.7], np.float32)],
                    {"to": "int32"})
    np.testing.assert_array_equal(got, [-2, 0, 0, 2])


# ----------------------------------------------------------------------------- planning


def test_broadcast_plan_collapses() -> None:
    assert broadcast_plan((2, 3, 4), [(2, 3, 4), (2, 3, 4)]) == (
        (1, 1, 24), [(0, 0, 1), (0, 0, 1)])
    assert broadcast_plan((8, 5, 5, 16), [(8, 5, 5, 16), (16,)]) == (
        (1, 200, 16), [(0, 16, 1), (0, 0, 1)])
    assert broadcast_plan((8, 5, 5, 16), [(8, 5, 5, 16), (8, 1, 1, 16)]) == (
        (8, 25, 16), [(400, 16, 1), (16, 0, 1)])
    assert broadcast_plan((2, 3, 4, 5, 6), [(2, 1, 4, 1, 6), (3, 1, 5, 1)]) is None
