"""Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Slice and Gather through their
bindings vs plain numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError, ShapeError
from engine.executor.bindings.shape import canonical_perm
from engine.kernels.reference import shape as ref
from tests.unit.kernels.harness import run_op

BIG = 2**63 - 1


def _rand(shape: tuple[int, ...], dtype: str = "float32", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(-1000, 1000, size=shape).astype(dtype)


def _one(op: str, ins: list[np.ndarray], attrs: dict, const: list[bool] | None = None):
    (got,) = run_op(op, "shape", ins, attrs, const=const)
    return got


# -- copies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "target"),
    [((2, 3, 4), (6, 4)), ((2, 3, 4), (0, -1)), ((2, 3, 4), (-1,)), ((2, 3, 4), (0, 0, 2, 2)),
     ((5,), (1, 5, 1)), ((2, 0, 3), (0, -1)), ((), (1, 1))],
)
def test_reshape(shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    x = _rand(shape)
    got = _one("Reshape", [x], {"shape": target})
    np.testing.assert_array_equal(got, ref.reshape(x, target))


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -4])
@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_flatten(axis: int, dtype: str) -> None:
    x = _rand((2, 3, 4), dtype)
    np.testing.assert_array_equal(_one("Flatten", [x], {"axis": axis}), ref.flatten(x, axis))


def test_squeeze_unsqueeze() -> None:
    x = _rand((1, 3, 1, 4))
    np.testing.assert_array_equal(_one("Squeeze", [x], {"axes": (0, -2)}),
                                  ref.squeeze(x, (0, -2)))
    y = _rand((3, 4))
    for axes in [(0,), (-1,), (0, 3), (1, -1)]:
        np.testing.assert_array_equal(_one("Unsqueeze", [y], {"axes": axes}),
                                      ref.unsqueeze(y, axes))


# -- Transpose ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "perm"),
    [((2, 16, 12, 32), (0, 2, 1, 3)),  # attention heads, small: serial kernel
     ((8, 128, 12, 64), (0, 2, 1, 3)),  # attention heads, large: parallel kernel
     ((128, 12, 64), (1, 0, 2)),
     ((2, 64, 17, 19), (0, 2, 3, 1)),  # NCHW -> NHWC
     ((2, 17, 19, 64), (0, 3, 1, 2)),  # NHWC -> NCHW
     ((8, 64, 32, 32), (0, 2, 3, 1)),  # large: parallel tiles
     ((33, 70), (1, 0)),
     ((3, 1, 5, 1, 7), (4, 3, 2, 1, 0)),
     ((2, 3, 4, 5), (3, 1, 0, 2)),  # no fast form: numpy
     ((4, 5, 6), None),
     ((2, 3), (0, 1)),
     ((), ())],
)
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_transpose(shape: tuple[int, ...], perm: tuple[int, ...] | None, dtype: str) -> None:
    x = _rand(shape, dtype)
    got = _one("Transpose", [x], {"perm": perm})
    np.testing.assert_array_equal(got, ref.transpose(x, perm))


def test_transpose_keeps_nan_bits() -> None:
    x = np.full((40, 50), np.nan, np.float32)
    x.view(np.uint32)[3, 4] = 0x7FC01234  # a NaN payload survives the uint32 view
    got = _one("Transpose", [x], {"perm": (1, 0)})
    assert got.view(np.uint32)[4, 3] == 0x7FC01234


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=5), data=st.data())
def test_transpose_property(shape: list[int], data: st.DataObject) -> None:
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = _rand(tuple(shape), seed=len(shape))
    np.testing.assert_array_equal(_one("Transpose", [x], {"perm": perm}), x.transpose(perm))


def test_canonical_perm() -> None:
    assert canonical_perm((2, 3, 4, 5), (0, 2, 1, 3)) == ((2, 3, 4, 5), (0, 2, 1, 3))
    assert canonical_perm((2, 3, 4, 5), (0, 2, 3, 1)) == ((2, 3, 20), (0, 2, 1))
    assert canonical_perm((1, 3, 4, 5), (0, 2, 1, 3)) == ((3, 4, 5), (1, 0, 2))
    assert canonical_perm((2, 3, 4), (0, 1, 2)) == ((24,), (0,))
    for perm in itertools.permutations(range(4)):
        cshape, cperm = canonical_perm((2, 3, 4, 5), perm)
        x = np.arange(120).reshape(2, 3, 4, 5)
        np.testing.assert_array_equal(
            x.reshape(cshape).transpose(cperm).reshape(-1), x.transpose(perm).reshape(-1))


# -- Concat ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "axis"),
    [([(2, 3), (2, 5)], 1), ([(2, 3), (4, 3), (1, 3)], 0), ([(2, 3, 4), (2, 3, 1)], -1),
     ([(2, 1, 4), (2, 0, 4), (2, 6, 4)], 1), ([(1, 4, 4, 8), (1, 4, 4, 16)], 3), ([(3,)], 0)],
)
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_concat(shapes: list[tuple[int, ...]], axis: int, dtype: str) -> None:
    xs = [_rand(s, dtype, seed=i) for i, s in enumerate(shapes)]
    np.testing.assert_array_equal(_one("Concat", xs, {"axis": axis}), ref.concat(xs, axis))


# -- Slice -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [((1,), (4,), None, None),
     ((-3,), (-1,), None, None),  # negative indices count from the end
     ((0, 1), (BIG, -1), (1, 2), None),  # clamping of a huge end
     ((-BIG,), (BIG,), (0,), (2,)),
     ((BIG,), (-BIG,), (1,), (-1,)),  # full reverse
     ((-1,), (-BIG,), (-1,), (-2,)),
     ((4, 2), (0, 0), (0, 2), (-1, -1)),
     ((10,), (20,), (0,), (1,)),  # start past the end: empty
     ((2,), (1,), (1,), (1,)),  # empty
     ((1, 0, 0), (5, 3, 5), None, (2, 1, 3))],
)
def test_slice(starts, ends, axes, steps) -> None:
    x = _rand((6, 5, 7))
    attrs = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    np.testing.assert_array_equal(_one("Slice", [x], attrs),
                                  ref.slice_(x, starts, ends, axes, steps))


def test_slice_zero_step_is_an_error() -> None:
    with pytest.raises(ShapeError):
        _one("Slice", [_rand((4,))], {"starts": (0,), "ends": (4,), "steps": (0,)})


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(1, 8),
    start=st.integers(-12, 12) | st.sampled_from([BIG, -BIG]),
    end=st.integers(-12, 12) | st.sampled_from([BIG, -BIG]),
    step=st.integers(-4, 4).filter(bool),
)
def test_slice_property(dim: int, start: int, end: int, step: int) -> None:
    x = _rand((3, dim), seed=dim)
    got = _one("Slice", [x], {"starts": (start,), "ends": (end,), "axes": (1,), "steps": (step,)})
    np.testing.assert_array_equal(got, x[:, start:end:step])


# -- Gather ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "indices", "axis"),
    [((10, 4), [3, 0, 9, 3], 0),
     ((10, 4), [-1, -10, 2], 0),  # negative indices count from the end
     ((5, 6, 7), [[0, 5], [-1, 2], [3, 3]], 1),  # 2-D indices
     ((5, 6, 7), [6, 0], -1),
     ((5, 6, 7), 2, 0),  # scalar index drops the axis
     ((5, 6, 7), -1, 2),
     ((1000, 384), np.arange(-512, 512).reshape(8, 128) * 7 % 1000, 0),  # embedding, parallel
     ((7,), [], 0)],
)
@pytest.mark.parametrize("itype", ["int32", "int64"])
@pytest.mark.parametrize("const", [True, False])
def test_gather(shape, indices, axis: int, itype: str, const: bool) -> None:
    x = _rand(shape)
    idx = np.asarray(indices, dtype=itype)
    got = _one("Gather", [x, idx], {"axis": axis}, const=[False, const])
    np.testing.assert_array_equal(got, ref.gather(x, idx, axis))


@pytest.mark.parametrize("dtype", ["float64", "int64", "int32", "float16"])
@pytest.mark.parametrize("itype", ["int16", "int64", "uint8"])
def test_gather_other_dtypes(dtype: str, itype: str) -> None:
    x = _rand((6, 5), dtype)
    idx = np.array([[1, 5], [0, 2]], dtype=itype)
    got = _one("Gather", [x, idx], {"axis": 0})
    np.testing.assert_array_equal(got, ref.gather(x, idx, 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [5, -6, 2**40])
def test_gather_out_of_range_raises(dtype: str, bad: int) -> None:
    x = _rand((5, 3), dtype)
    idx = np.array([0, bad, 1], dtype=np.int64)
    with pytest.raises(InputError, match="out of range"):
        _one("Gather", [x, idx], {"axis": 0})
    with pytest.raises(ShapeError, match="out of range"):
        _one("Gather", [x, idx], {"axis": 0}, const=[False, True])


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
)
def test_gather_property(shape: list[int], data: st.DataObject) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    d = shape[axis]
    ishape = data.draw(st.lists(st.integers(0, 3), max_size=2))
    idx = np.asarray(data.draw(st.lists(st.integers(-d, d - 1), min_size=int(np.prod(ishape)),
                                        max_size=int(np.prod(ishape)))), np.int64).reshape(ishape)
    x = _rand(tuple(shape), seed=len(shape))
    np.testing.assert_array_equal(_one("Gather", [x, idx], {"axis": axis}),
                                  np.take(x, idx, axis=axis))
