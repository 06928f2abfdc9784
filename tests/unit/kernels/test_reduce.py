"""ReduceSum / ReduceMean / ReduceMax through their bindings vs numpy in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ShapeError
from engine.executor.bindings.reduce import canonical_arb
from engine.kernels.reference.reduce import reduce as ref
from tests.unit.kernels.harness import run_op

OPS = ("ReduceSum", "ReduceMean", "ReduceMax")


def _check(op: str, x: np.ndarray, axes: tuple[int, ...] | None, keepdims: bool) -> None:
    (got,) = run_op(op, "reduce", [x], {"axes": axes, "keepdims": keepdims})
    want = ref(op, x, axes, keepdims)
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("shape", "axes"),
    [((2, 7, 7, 64), (1, 2)),  # global average pool, NHWC
     ((8, 32, 32, 64), (1, 2)),  # same, big enough for the parallel path
     ((1, 30, 30, 256), (1, 2)),  # batch 1: the parallel path splits channels
     ((512, 384), (-1,)),  # reduce-last (row statistics)
     ((300, 70), (0,)),  # reduce-first
     ((40000,), None),  # reduce-all
     ((3, 4, 5), None),
     ((2, 3, 4, 5), (1, 2)),
     ((2, 1, 4), (0, 1)),  # size-1 axes ignored when deciding the pattern
     ((2, 3, 4), (0, 2)),  # two separate runs: numpy fallback
     ((2, 3, 4), ()),  # nothing reduced
     ((), None)],
)
@pytest.mark.parametrize("keepdims", [True, False])
def test_reduce(op: str, shape: tuple[int, ...], axes: tuple[int, ...] | None,
                keepdims: bool) -> None:
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape).astype(np.float32)
    _check(op, x, axes, keepdims)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
    op=st.sampled_from(OPS),
    keepdims=st.booleans(),
)
def test_reduce_property(shape: list[int], data: st.DataObject, op: str, keepdims: bool) -> None:
    axes = data.draw(st.none() | st.lists(
        st.integers(-len(shape), len(shape) - 1), unique_by=lambda a: a % len(shape)))
    x = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    _check(op, x, None if axes is None else tuple(axes), keepdims)


def test_sum_accumulates_in_double() -> None:
    x = np.full(1 << 20, 0.1, np.float32)  # float32 running sum would drift by ~1 %
    (got,) = run_op("ReduceSum", "reduce", [x], {"axes": None, "keepdims": False})
    assert abs(float(got) - float(np.float32(0.1)) * (1 << 20)) < 0.02


@pytest.mark.parametrize("shape,axes", [((5, 40), (1,)), ((6, 9, 50), (1,)), ((4, 3), (0,))])
def test_max_propagates_nan(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    x[(1,) * len(shape)] = np.nan
    x[(0,) * len(shape)] = np.nan
    (got,) = run_op("ReduceMax", "reduce", [x], {"axes": axes, "keepdims": False})
    np.testing.assert_array_equal(got, np.max(x, axis=axes))


@pytest.mark.parametrize("op", OPS)
def test_integer_input(op: str) -> None:
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    (got,) = run_op(op, "reduce", [x], {"axes": (1,), "keepdims": False})
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref(op, x, (1,), False).astype(np.int32))


def test_max_of_empty_axis_is_an_error() -> None:
    with pytest.raises(ShapeError):
        run_op("ReduceMax", "reduce", [np.zeros((3, 0), np.float32)], {"axes": (1,)})


def test_sum_of_empty_axis_is_zero() -> None:
    (got,) = run_op("ReduceSum", "reduce", [np.zeros((3, 0), np.float32)], {"axes": (1,)})
    np.testing.assert_array_equal(got, np.zeros((3, 1), np.float32))


def test_canonical_arb() -> None:
    assert canonical_arb((2, 7, 7, 64), {1, 2}) == (2, 49, 64)
    assert canonical_arb((1, 7, 7, 64), {1, 2}) == (1, 49, 64)
    assert canonical_arb((4, 5), {1}) == (4, 5, 1)
    assert canonical_arb((4, 5), {0, 1}) == (1, 20, 1)
    assert canonical_arb((2, 1, 3), {0, 1}) == (1, 2, 3)
    assert canonical_arb((2, 3, 4), {0, 2}) is None
    assert canonical_arb((2, 3), set()) == (6, 1, 1)


@pytest.mark.parametrize("axes", [(1,), None])
def test_max_signs_and_infinities(axes: tuple[int, ...] | None) -> None:
    """The row max works on float bit patterns: check negatives, -0.0 and infinities."""
    x = -np.random.default_rng(3).uniform(1, 100, size=(6, 37)).astype(np.float32)
    x[1, :] = -np.inf
    x[2, 5] = np.inf
    x[3, :] = -0.0
    x[4, 7] = 0.0
    x[5, :] = np.float32(-1e-45)  # denormals
    (got,) = run_op("ReduceMax", "reduce", [x], {"axes": axes, "keepdims": False})
    np.testing.assert_array_equal(got, np.max(x, axis=axes))
