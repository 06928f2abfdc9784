"""Single ONNX ops and small graphs, ours vs onnxruntime (rtol 1e-5, atol 1e-6 on float32)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.unit.importers.test_onnx_util import assert_matches, engine_model, make_model, vi

n = helper.make_node
F32 = np.float32
RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(F32)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"])
def test_binary_broadcast(op: str) -> None:
    a, b = np.abs(_x(2, 3, 4)) + F32(0.5), _x(3, 1)
    m = make_model([n(op, ["a", "b"], ["y"])], [vi("a", F32, [2, 3, 4]), vi("b", F32, [3, 1])],
                   [vi("y", F32, [2, 3, 4])])
    assert_matches(m, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Exp", "Erf", "Neg", "Abs", "Floor",
                                "Ceil", "Sin", "Cos", "Sign", "Softplus", "Softsign", "Elu",
                                "Selu", "HardSigmoid", "HardSwish", "Identity"])
def test_unary(op: str) -> None:
    m = make_model([n(op, ["x"], ["y"])], [vi("x", F32, ["N", 5])], [vi("y", F32, ["N", 5])])
    assert_matches(m, {"x": _x(3, 5) * 3})


def test_sqrt_log_reciprocal_chain() -> None:
    m = make_model([n("Sqrt", ["x"], ["s"]), n("Log", ["s"], ["l"]), n("Reciprocal", ["x"], ["r"]),
                    n("Add", ["l", "r"], ["y"])],
                   [vi("x", F32, [4, 6])], [vi("y", F32, [4, 6])])
    assert_matches(m, {"x": np.abs(_x(4, 6)) + F32(0.5)})


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax(op: str, axis: int) -> None:
    m = make_model([n(op, ["x"], ["y"], axis=axis)], [vi("x", F32, [3, 4, 5])],
                   [vi("y", F32, [3, 4, 5])])
    assert_matches(m, {"x": _x(3, 4, 5)})


@pytest.mark.parametrize("trans", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("const_b", [True, False])
def test_gemm(trans: tuple[int, int], const_b: bool) -> None:
    a = _x(4, 3) if trans[0] else _x(3, 4)
    b = _x(5, 4) if trans[1] else _x(4, 5)
    c = _x(5)
    node = n("Gemm", ["a", "b", "c"], ["y"], transA=trans[0], transB=trans[1], alpha=0.7, beta=1.3)
    inputs = [vi("a", F32, a.shape)] + ([] if const_b else [vi("b", F32, b.shape)])
    inits = {"c": c, **({"b": b} if const_b else {})}
    m = make_model([node], inputs, [vi("y", F32, [3, 5])], inits)
    assert_matches(m, {"a": a, **({} if const_b else {"b": b})})


def test_matmul_batch_dims_and_dense() -> None:
    w = _x(6, 2)
    m = make_model([n("MatMul", ["a", "b"], ["ab"]), n("MatMul", ["ab", "w"], ["y"])],
                   [vi("a", F32, ["B", 2, 3, 4]), vi("b", F32, [2, 4, 6])],
                   [vi("y", F32, ["B", 2, 3, 2])], {"w": w})
    ours = engine_model(m)
    for batch in (1, 2):
        assert_matches(m, {"a": _x(batch, 2, 3, 4), "b": _x(2, 4, 6)}, ours)


def test_clip_forms_and_where_compare() -> None:
    lo = np.array(-0.5, F32)
    m = make_model([n("Clip", ["x", "lo", ""], ["c1"]), n("Clip", ["x", "lo", "hi"], ["c2"]),
                    n("GreaterOrEqual", ["c1", "c2"], ["ge"]), n("Not", ["ge"], ["ng"]),
                    n("IsNaN", ["x"], ["nan"]), n("Or", ["ng", "nan"], ["m"]),
                    n("Where", ["m", "c1", "c2"], ["y"])],
                   [vi("x", F32, [3, 4]), vi("hi", F32, [])], [vi("y", F32, [3, 4])], {"lo": lo})
    x = _x(3, 4)
    x[0, 0] = np.nan
    assert_matches(m, {"x": x, "hi": np.array(0.3, F32)})


@pytest.mark.parametrize("to", [np.int64, np.int32, np.bool_, np.float64])
def test_cast(to: type) -> None:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(to))
    m = make_model([n("Cast", ["x"], ["y"], to=elem)], [vi("x", F32, [2, 5])],
                   [vi("y", to, [2, 5])])
    assert_matches(m, {"x": _x(2, 5) * 4})


def test_shape_ops_static() -> None:
    inits = {"shape": np.array([0, -1], np.int64), "starts": np.array([1, -1], np.int64),
             "ends": np.array([-1, -1000], np.int64), "axes": np.array([0, 2], np.int64),
             "steps": np.array([1, -2], np.int64), "ax": np.array([1], np.int64),
             "idx": np.array([[0, 2], [1, 1]], np.int64), "split": np.array([1, 2], np.int64)}
    m = make_model(
        [n("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
         n("Reshape", ["x", "shape"], ["r"]),
         n("Unsqueeze", ["r", "ax"], ["u"]), n("Squeeze", ["u", "ax"], ["q"]),
         n("Gather", ["x", "idx"], ["g"], axis=1),
         n("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
         n("Flatten", ["x"], ["f"], axis=-1),
         n("Split", ["x", "split"], ["p0", "p1"], axis=1),
         n("Concat", ["p1", "p0"], ["c"], axis=1)],
        [vi("x", F32, [4, 3, 5])],
        [vi("s", F32, [2, 3, 3]), vi("q", F32, [4, 15]), vi("g", F32, [4, 2, 2, 5]),
         vi("t", F32, [5, 4, 3]), vi("f", F32, [12, 5]), vi("c", F32, [4, 3, 5])], inits)
    assert_matches(m, {"x": _x(4, 3, 5)})


def test_reductions_and_layernorm() -> None:
    axes = np.array([1], np.int64)
    nodes = [n("ReduceSum", ["x", "axes"], ["rs"], keepdims=0),
             n("ReduceMean", ["x"], ["rm"], axes=[-1]),
             n("ReduceMax", ["x"], ["rx"], axes=[0, 2], keepdims=0),
             n("ReduceMin", ["x"], ["rn"], axes=[1]),
             n("ReduceL2", ["x"], ["l2"], axes=[2]),
             n("ReduceLogSumExp", ["x"], ["lse"], axes=[1], keepdims=0),
             n("LayerNormalization", ["x", "g", "b"], ["ln", "mean", "inv"], axis=1)]
    m = make_model(nodes, [vi("x", F32, [2, 3, 4])],
                   [vi("rs", F32, [2, 4]), vi("rm", F32, [2, 3, 1]), vi("rx", F32, [3]),
                    vi("rn", F32, [2, 1, 4]), vi("l2", F32, [2, 3, 1]), vi("lse", F32, [2, 4]),
                    vi("ln", F32, [2, 3, 4]), vi("mean", F32, [2, 1, 1]),
                    vi("inv", F32, [2, 1, 1])],
                   {"axes": axes, "g": _x(3, 4), "b": _x(4)}, opset=17)
    assert_matches(m, {"x": _x(2, 3, 4)})


def test_dynamic_shape_ops_per_plan() -> None:
    """ConstantOfShape, Range, Expand, Tile, Slice and Reshape with parameters computed from
    a dynamic input's shape: resolved per input shape by specialize."""
    c = {"i0": np.array(0, np.int64), "i1": np.array(1, np.int64), "two": np.array(2, np.int64),
         "ax0": np.array([0], np.int64), "neg1": np.array([-1], np.int64),
         "reps": np.array([1, 2], np.int64)}
    nodes = [
        n("Shape", ["x"], ["shp"]), n("Gather", ["shp", "i1"], ["len"]),
        n("Range", ["i0", "len", "i1"], ["r"]), n("Cast", ["r"], ["rf"], to=1),
        n("Expand", ["rf", "shp"], ["e"]), n("Add", ["x", "e"], ["xe"]),
        n("ConstantOfShape", ["shp"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.5])),
        n("Mul", ["xe", "ones"], ["m"]),
        n("Div", ["len", "two"], ["half"]), n("Unsqueeze", ["half", "ax0"], ["half1"]),
        n("Slice", ["m", "half1", "neg1", "neg1"], ["s"]),  # m[..., len//2 : -1]
        n("Tile", ["s", "reps"], ["t"]),
        n("Reshape", ["t", "neg1"], ["y"]),
    ]
    m = make_model(nodes, [vi("x", F32, ["B", "L"])], [vi("y", F32, ["F"])], c)
    ours = engine_model(m)
    for b, length in ((2, 6), (3, 9)):
        assert_matches(m, {"x": _x(b, length)}, ours)
    assert len(ours._plans) == 2
