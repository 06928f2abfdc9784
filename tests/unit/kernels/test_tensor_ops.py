"""GatherElements, ArgMax/ArgMin and Pad through their bindings vs the numpy references
(exact: these ops only move or select elements)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

from engine.errors import InputError, ShapeError
from engine.executor.binding import binding_for
from engine.executor.bindings.tensor import axis_map
from engine.ir import TensorType, schema_for
from engine.kernels.reference import reduce as ref_reduce
from engine.kernels.reference import shape as ref_shape
from engine.kernels.reference import tensor as ref_tensor
from tests.unit.kernels.harness import run_op

for _family in ("shape", "reduce", "tensor"):
    importlib.import_module(f"engine.executor.bindings.{_family}")


def _rand(shape: tuple[int, ...], dtype: str = "float32", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(-1000, 1000, size=shape).astype(dtype)


# -- GatherElements ----------------------------------------------------------------------------


def _indices(data_shape: tuple[int, ...], shape: tuple[int, ...], axis: int,
             dtype: str = "int64", seed: int = 1) -> np.ndarray:
    n = data_shape[axis]
    return np.random.default_rng(seed).integers(-n, n, size=shape).astype(dtype)


@pytest.mark.parametrize(
    ("data_shape", "idx_shape", "axis"),
    [((3, 5), (3, 4), 1),  # along the last axis (B = 1)
     ((3, 5), (7, 5), 0),
     ((2, 6, 4, 3), (2, 9, 4, 3), 1),
     ((2, 6, 4, 3), (2, 6, 4, 3), -1),
     ((4, 5, 6), (2, 3, 6), 1),  # indices shorter than data off the axis: a corner of data
     ((1, 256), (1, 7), 1),  # BERT's token types
     ((64, 128, 32), (64, 100, 32), 1),  # big enough for the parallel kernel
     ((5,), (0,), 0)],  # empty output
)
@pytest.mark.parametrize("const", [False, True])
def test_gather_elements(data_shape: tuple[int, ...], idx_shape: tuple[int, ...], axis: int,
                         const: bool) -> None:
    x = _rand(data_shape)
    idx = _indices(data_shape, idx_shape, axis % len(data_shape))
    (got,) = run_op("GatherElements", "shape", [x, idx], {"axis": axis}, const=[False, const])
    want = ref_shape.gather_elements(x, idx, axis)
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["int64", "float64", "float16", "bool", "int8"])
@pytest.mark.parametrize("idx_dtype", ["int32", "int64", "int16", "uint8"])
def test_gather_elements_dtypes(dtype: str, idx_dtype: str) -> None:
    x = _rand((4, 6, 3), dtype)
    idx = np.random.default_rng(2).integers(0, 6, size=(4, 5, 3)).astype(idx_dtype)
    if idx_dtype != "uint8":
        idx[0, 0, 0] = -1  # counts from the end
    (got,) = run_op("GatherElements", "shape", [x, idx], {"axis": 1})
    np.testing.assert_array_equal(got, ref_shape.gather_elements(x, idx, 1))


@pytest.mark.parametrize("bad", [6, -7, 100])
def test_gather_elements_out_of_range(bad: int) -> None:
    x = _rand((2, 6))
    idx = np.zeros((2, 3), np.int64)
    idx[1, 2] = bad
    with pytest.raises(InputError, match=f"index {bad} is out of range for axis 1 of size 6"):
        run_op("GatherElements", "shape", [x, idx], {"axis": 1})
    with pytest.raises(ShapeError, match=f"index {bad} is out of range"):
        run_op("GatherElements", "shape", [x, idx], {"axis": 1}, const=[False, True])
    with pytest.raises(IndexError):
        ref_shape.gather_elements(x, idx, 1)


def test_gather_elements_shape_errors() -> None:
    schema = schema_for("GatherElements")
    with pytest.raises(ShapeError, match="rank"):
        schema.infer([TensorType("float32", (2, 3)), TensorType("int64", (2,))], {"axis": 0})
    with pytest.raises(ShapeError, match="exceed"):
        schema.infer([TensorType("float32", (2, 3)), TensorType("int64", (2, 4))], {"axis": 0})


# -- ArgMax / ArgMin ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((7,), 0), ((3, 10), -1), ((3, 10), 0), ((2, 5, 4, 3), 2), ((1, 1000), 1),
     ((64, 100, 40), 1),  # parallel, split A
     ((1, 50, 4096), 1),  # parallel, split B
     ((512, 300), 1)],
)
@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("last", [False, True])
def test_arg_reduce(op: str, shape: tuple[int, ...], axis: int, keepdims: bool,
                    last: bool) -> None:
    # few distinct values: ties everywhere, so first vs last index matters
    x = np.random.default_rng(3).integers(0, 5, size=shape).astype(np.float32)
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    (got,) = run_op(op, "reduce", [x], attrs)
    want = ref_reduce.arg_reduce(op, x, axis, keepdims, last)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("dtype", ["float32", "int64", "int32", "float64", "uint8"])
@pytest.mark.parametrize("last", [False, True])
def test_arg_reduce_dtypes_and_nan(op: str, dtype: str, last: bool) -> None:
    x = np.random.default_rng(4).integers(0, 4, size=(6, 9, 5)).astype(dtype)
    if dtype.startswith("float"):
        x[1, 3, 2] = x[1, 6, 2] = x[4, 2, 0] = np.nan  # NaN wins, as in numpy
    for axis in (0, 1, 2):
        attrs = {"axis": axis, "keepdims": True, "select_last_index": last}
        (got,) = run_op(op, "reduce", [x], attrs)
        np.testing.assert_array_equal(got, ref_reduce.arg_reduce(op, x, axis, True, last))


def test_arg_reduce_empty_axis() -> None:
    with pytest.raises(ShapeError, match="empty"):
        run_op("ArgMax", "reduce", [np.zeros((3, 0), np.float32)], {"axis": 1})
    (got,) = run_op("ArgMin", "reduce", [np.zeros((0, 4), np.float32)], {"axis": 1})
    assert got.shape == (0, 1)


# -- Pad ---------------------------------------------------------------------------------------


def _pad(x: np.ndarray, pads: list[int], mode: str = "constant", value: Any = None,
         axes: list[int] | None = None, const_value: bool = True) -> np.ndarray:
    """Like harness.run_op, but the output type follows the pads' value (as plans do)."""
    schema = schema_for("Pad")
    attrs = schema.resolve_attrs({"mode": mode, "axes": axes}, "Pad")
    ins = [x, np.asarray(pads, np.int64)]
    if value is not None:
        ins.append(np.asarray(value, x.dtype))
    in_types = [TensorType(a.dtype.name, a.shape) for a in ins]
    (t,) = schema.infer_with(in_types, attrs, ins)
    assert t.is_static()
    consts = [None, ins[1]] + ([ins[2] if const_value else None] if value is not None else [])
    prepared = binding_for("Pad")(attrs, in_types, [t], consts)
    out = np.full(tuple(int(d or 0) for d in t.shape), 77, dtype=x.dtype)  # garbage
    prepared.run(ins, [out], [])
    return out


MODES = ["constant", "reflect", "edge", "wrap"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("shape", "pads", "axes"),
    [((1, 3, 4, 5), [0, 0, 1, 3, 0, 0, 2, 4], None),  # ONNX's example, NCHW
     ((2, 7, 6, 3), [0, 2, 1, 0, 0, 3, 2, 0], None),  # NHWC spatial padding
     ((1, 3, 4, 5), [3, 4], [-1]),
     ((1, 3, 4, 5), [1, 0, 2, 1], [1, 3]),  # axes given, an axis before the last padded one
     ((6,), [2, 3], None),
     ((3, 4), [0, 0, 0, 0], None),  # nothing to pad: a copy
     ((2, 5, 6), [0, -1, 2, 0, 2, -3], None),  # negative pads crop first
     ((8, 64, 66, 32), [0, 1, 1, 0, 0, 1, 1, 0], None)],  # parallel kernel
)
def test_pad(mode: str, shape: tuple[int, ...], pads: list[int], axes: list[int] | None) -> None:
    x = _rand(shape)
    value = 1.5 if mode == "constant" else None
    got = _pad(x, pads, mode, value, axes)
    want = ref_tensor.pad(x, pads, mode, 0.0 if value is None else value, axes)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["reflect", "wrap", "edge"])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_pad_longer_than_axis(mode: str, d: int) -> None:
    """Pads longer than the axis repeat the pattern, as numpy.pad does."""
    x = _rand((2, d), "int32")
    pads = [0, 7, 0, 11]
    np.testing.assert_array_equal(_pad(x, pads, mode), ref_tensor.pad(x, pads, mode))


@pytest.mark.parametrize("dtype", ["float32", "int64", "float16", "bool", "uint8", "int32"])
@pytest.mark.parametrize("const_value", [True, False])
def test_pad_dtypes(dtype: str, const_value: bool) -> None:
    x = _rand((2, 3, 4), dtype)
    value = np.asarray(3).astype(dtype)
    got = _pad(x, [1, 0, 2, 0, 2, 1], "constant", value, const_value=const_value)
    np.testing.assert_array_equal(got, ref_tensor.pad(x, [1, 0, 2, 0, 2, 1], "constant",
                                                      value))
    np.testing.assert_array_equal(_pad(x, [1, 0, 2, 0, 2, 1]),
                                  ref_tensor.pad(x, [1, 0, 2, 0, 2, 1]))


def test_pad_empty_input() -> None:
    x = np.zeros((2, 0, 3), np.float32)
    np.testing.assert_array_equal(_pad(x, [0, 2, 0, 0, 1, 0], "constant", 4.0),
                                  ref_tensor.pad(x, [0, 2, 0, 0, 1, 0], "constant", 4.0))
    with pytest.raises(ShapeError, match="empty axis"):
        _pad(x, [0, 2, 0, 0, 1, 0], "edge")


def test_pad_errors() -> None:
    schema = schema_for("Pad")
    attrs = schema.resolve_attrs({}, "Pad")
    x = TensorType("float32", (2, 3))
    pads_t = TensorType("int64", (4,))
    with pytest.raises(ShapeError, match="crop more than"):
        schema.infer_with([x, pads_t], attrs, [None, np.array([0, -2, 0, -2])])
    with pytest.raises(ShapeError, match="4 values"):
        schema.infer_with([x, TensorType("int64", (3,))], attrs, [None, None])
    unknown = schema.infer_with([x, pads_t], attrs, [None, None])[0]
    assert unknown.shape == (None, None)  # resolved by specialize once pads are known


def test_axis_map() -> None:
    assert axis_map(4, 2, 1, "constant").tolist() == [-1, -1, 0, 1, 2, 3, -1]
    assert axis_map(4, 2, 1, "reflect").tolist() == [2, 1, 0, 1, 2, 3, 2]
    assert axis_map(4, 2, 1, "edge").tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert axis_map(4, 2, 1, "wrap").tolist() == [2, 3, 0, 1, 2, 3, 0]
    assert axis_map(4, -1, 1, "edge").tolist() == [1, 2, 3, 3]
