"""Value-dependent shape ops (Shape, DynamicReshape, DynamicSlice, Expand, Tile, Range,
ConstantOfShape) through their bindings vs the numpy reference, parameters constant (as after
specialize) and, where the binding allows, given at run time."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

from engine.executor.binding import binding_for
from engine.ir import TensorType, schema_for
from engine.kernels.reference import shape as ref

importlib.import_module("engine.executor.bindings.shape")


def _run(op: str, inputs: list[np.ndarray], attrs: dict[str, Any] | None = None,
         const: bool = True) -> np.ndarray:
    """Like harness.run_op, but output types use the parameters' values (as plans do)."""
    schema = schema_for(op)
    resolved = schema.resolve_attrs(attrs or {}, op)
    in_types = [TensorType(x.dtype.name, x.shape) for x in inputs]
    out_types = schema.infer_with(in_types, resolved, [x for x in inputs])
    consts = [None] + [x if const else None for x in inputs[1:]]
    prepared = binding_for(op)(resolved, in_types, out_types, consts)
    (t,) = out_types
    assert t.is_static()
    out = np.zeros(tuple(int(d) for d in t.shape if d is not None), dtype=t.dtype)
    prepared.run(inputs, [out], [])
    return out


def _i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


X = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)


def test_shape() -> None:
    np.testing.assert_array_equal(_run("Shape", [X]), ref.shape_of(X))
    np.testing.assert_array_equal(_run("Shape", [X], {"start": 1, "end": -1}),
                                  ref.shape_of(X, 1, -1))


@pytest.mark.parametrize("target", [(0, -1), (4, 0, 2), (-1,), (24, 1)])
def test_dynamic_reshape(target: tuple[int, ...]) -> None:
    np.testing.assert_array_equal(_run("DynamicReshape", [X, _i64(*target)]),
                                  ref.reshape(X, target))


@pytest.mark.parametrize("const", [True, False])
def test_dynamic_slice(const: bool) -> None:
    args = [_i64(1, -1), _i64(-1, -100), _i64(1, 2), _i64(1, -2)]
    got = _run("DynamicSlice", [X, *args], const=const)
    np.testing.assert_array_equal(got, ref.slice_(X, [1, -1], [-1, -100], [1, 2], [1, -2]))


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 1), (5, 2, 1, 1), (1,)])
def test_expand(shape: tuple[int, ...]) -> None:
    x = np.ascontiguousarray(X[0, :, :1])  # (3, 1)
    np.testing.assert_array_equal(_run("Expand", [x, _i64(*shape)]), ref.expand(x, shape))


@pytest.mark.parametrize("reps", [(1, 1, 1), (2, 1, 3), (1, 0, 2)])
def test_tile(reps: tuple[int, ...]) -> None:
    np.testing.assert_array_equal(_run("Tile", [X, _i64(*reps)]), ref.tile(X, reps))


@pytest.mark.parametrize(("start", "limit", "delta", "dtype"),
                         [(0, 7, 1, "int64"), (10, 1, -3, "int32"), (1.0, 2.0, 0.3, "float32"),
                          (5, 5, 1, "int64")])
def test_range(start: float, limit: float, delta: float, dtype: str) -> None:
    args = [np.array(v, dtype=dtype) for v in (start, limit, delta)]
    got = _run("Range", args)
    want = ref.range_(start, limit, delta, dtype)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(("value", "dtype"), [(0.0, "float32"), (7, "int64"), (True, "bool")])
def test_constant_of_shape(value: Any, dtype: str) -> None:
    got = _run("ConstantOfShape", [_i64(2, 3)], {"value": value, "dtype": dtype})
    np.testing.assert_array_equal(got, ref.constant_of_shape((2, 3), value, dtype))
    assert got.dtype == np.dtype(dtype)


def test_types_without_values_are_dynamic() -> None:
    t = TensorType("float32", (None, 4))
    shp = TensorType("int64", (3,))
    assert schema_for("Expand").infer([t, shp], {}) == [TensorType("float32", (None, None, 4))]
    assert schema_for("DynamicReshape").infer([t, shp], {"allowzero": 0}) == [
        TensorType("float32", (None, None, None))]
