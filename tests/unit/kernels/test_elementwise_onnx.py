"""Elementwise and reduce ops added for imported models (LogSoftmax, And/Or/Xor, LessEqual,
GreaterEqual, Mod, IsNaN, IsInf, Sin, Cos, Sign, ReduceMin, ReduceProd) through their
bindings vs the float64 numpy reference (rtol 1e-5, atol 1e-6 for float32)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels.reference import elementwise as ref
from engine.kernels.reference import reduce as rref
from tests.unit.kernels.harness import run_op

RNG = np.random.default_rng(0)
X = RNG.normal(scale=3, size=(3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_log_softmax(axis: int) -> None:
    (got,) = run_op("LogSoftmax", "elementwise", [X], {"axis": axis})
    np.testing.assert_allclose(got, ref.log_softmax(X, axis), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["And", "Or", "Xor", "LessEqual", "GreaterEqual"])
def test_logical_and_compare(op: str) -> None:
    if op in ("And", "Or", "Xor"):
        a, b = X > 0, (X[:1] < 1)
    else:
        a, b = X, np.round(X[:, :1])
    (got,) = run_op(op, "elementwise", [a, b])
    np.testing.assert_array_equal(got, ref.logical(op, a, b))


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_mod(fmod: int, dtype: str) -> None:
    if dtype == "float32" and fmod == 0:
        pytest.skip("ONNX requires fmod=1 for floats")
    a = (X * 10).astype(dtype)
    b = np.array([3, -4, 5, -7, 2], dtype=dtype)
    (got,) = run_op("Mod", "elementwise", [a, b], {"fmod": fmod})
    np.testing.assert_allclose(got, ref.mod(a, b, fmod), rtol=1e-6)


def test_predicates_and_trig() -> None:
    x = X.copy()
    x[0, 0, :3] = [np.nan, np.inf, -np.inf]
    (nan,) = run_op("IsNaN", "elementwise", [x])
    np.testing.assert_array_equal(nan, ref.predicate("IsNaN", x))
    for neg, pos in ((1, 1), (0, 1), (1, 0), (0, 0)):
        attrs = {"detect_negative": neg, "detect_positive": pos}
        (inf,) = run_op("IsInf", "elementwise", [x], attrs)
        np.testing.assert_array_equal(inf, ref.predicate("IsInf", x, neg, pos))
    for op in ("Sin", "Cos", "Sign"):
        (got,) = run_op(op, "elementwise", [X])
        np.testing.assert_allclose(got, ref.trig(op, X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("axes", [None, (1,), (0, 2)])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_reduce_min_prod(op: str, axes: tuple[int, ...] | None, dtype: str) -> None:
    x = (X / 2).astype(dtype)
    for keepdims in (True, False):
        (got,) = run_op(op, "reduce", [x], {"axes": axes, "keepdims": keepdims})
        want = rref.reduce(op, x, axes, keepdims)
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-5, atol=1e-6)
