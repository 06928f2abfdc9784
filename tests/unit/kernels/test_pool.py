"""Pooling ops through their bindings vs the float64 reference (and onnxruntime)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.executor.bindings.conv as conv_binding
from engine.kernels.reference import conv as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-5, 1e-5


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, *shape]).normal(size=shape).astype(np.float32)


def _check_pool(op: str, x: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    (got,) = run_op(op, "conv", [x], attrs)
    pads = attrs.get("pads", (0, 0, 0, 0))
    if op == "MaxPool2D":
        want = ref.max_pool2d(x, attrs["pool_size"], attrs["strides"], pads)
    else:
        want = ref.avg_pool2d(x, attrs["pool_size"], attrs["strides"], pads,
                              attrs.get("count_include_pad", False))
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return got


POOL_CASES = [
    # x shape, pool, strides, pads
    ((1, 8, 8, 3), (2, 2), (2, 2), (0, 0, 0, 0)),  # Keras default, batch 1
    ((3, 7, 9, 5), (3, 3), (2, 2), (0, 0, 0, 0)),  # window doesn't tile the image
    ((2, 6, 6, 4), (3, 3), (1, 1), (1, 1, 1, 1)),  # same padding
    ((2, 7, 8, 6), (3, 2), (2, 1), (0, 1, 1, 0)),  # asymmetric pads and strides
    ((1, 5, 5, 2), (2, 2), (2, 2), (1, 0, 1, 0)),  # corner windows with one real pixel
    ((2, 4, 4, 33), (4, 4), (1, 1), (0, 0, 0, 0)),  # a single window, odd channels
    ((1, 1, 9, 3), (1, 3), (1, 2), (0, 0, 1, 1)),  # 1-D pooling as 1xK
]


@pytest.mark.parametrize(("x_shape", "pool", "strides", "pads"), POOL_CASES)
@pytest.mark.parametrize("op", ["MaxPool2D", "AvgPool2D"])
def test_pool(op: str, x_shape: tuple[int, int, int, int], pool: tuple[int, int],
              strides: tuple[int, int], pads: tuple[int, int, int, int]) -> None:
    _check_pool(op, _x(x_shape), {"pool_size": pool, "strides": strides, "pads": pads})


@pytest.mark.parametrize("include", [False, True])
def test_avg_pool_count_include_pad(include: bool) -> None:
    x = np.ones((1, 3, 3, 1), dtype=np.float32)
    attrs = {"pool_size": (2, 2), "strides": (2, 2), "pads": (1, 0, 1, 0),
             "count_include_pad": include}
    got = _check_pool("AvgPool2D", x, attrs)
    # the top-left window holds one real pixel out of four
    assert got[0, 0, 0, 0] == pytest.approx(0.25 if include else 1.0)
    assert got[0, 1, 1, 0] == pytest.approx(1.0)


def test_max_pool_ignores_padding() -> None:
    x = -np.ones((1, 2, 2, 1), dtype=np.float32)  # all negative: zero padding would win
    (got,) = run_op("MaxPool2D", "conv", [x],
                    {"pool_size": (2, 2), "strides": (1, 1), "pads": (1, 1, 1, 1)})
    np.testing.assert_array_equal(got, -np.ones((1, 3, 3, 1), dtype=np.float32))


@pytest.mark.parametrize("op", ["MaxPool2D", "AvgPool2D"])
def test_pool_parallel(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prange kernel, whatever the size threshold; 40 channels: a tile and a tail."""
    monkeypatch.setattr(conv_binding, "POOL_PAR_MIN", 0)
    x = _x((3, 17, 19, 40), seed=1)
    attrs = {"pool_size": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
             "count_include_pad": op == "AvgPool2D"}
    _check_pool(op, x, attrs)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["GlobalAvgPool2D", "GlobalMaxPool2D"])
@pytest.mark.parametrize("x_shape", [(1, 5, 7, 3), (3, 4, 4, 16), (8, 32, 32, 8), (2, 1, 1, 5)])
def test_global_pool(op: str, keepdims: bool, x_shape: tuple[int, int, int, int],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    if x_shape[0] == 8:  # also through the prange kernel
        monkeypatch.setattr(conv_binding, "POOL_PAR_MIN", 0)
    x = _x(x_shape, seed=2)
    (got,) = run_op(op, "conv", [x], {"keepdims": keepdims})
    fn = ref.global_avg_pool2d if op == "GlobalAvgPool2D" else ref.global_max_pool2d
    want = fn(x, keepdims)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_pool_float64() -> None:
    x = _x((2, 6, 6, 3), seed=3).astype(np.float64)
    got = _check_pool("AvgPool2D", x, {"pool_size": (2, 2), "strides": (2, 2)})
    assert got.dtype == np.float64
    (g,) = run_op("GlobalMaxPool2D", "conv", [x], {})
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, x.max(axis=(1, 2)), rtol=1e-6)


@st.composite
def _pool_params(draw: st.DrawFn) -> tuple[Any, ...]:
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
    h = draw(st.integers(max(1, kh - pads[0] - pads[1]), 9))
    w = draw(st.integers(max(1, kw - pads[2] - pads[3]), 9))
    shape = (draw(st.integers(1, 3)), h, w, draw(st.integers(1, 7)))
    op = draw(st.sampled_from(["MaxPool2D", "AvgPool2D"]))
    attrs = {"pool_size": (kh, kw), "strides": (sh, sw), "pads": pads,
             "count_include_pad": draw(st.booleans())}
    return op, shape, attrs, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(_pool_params())
def test_pool_random(params: tuple[Any, ...]) -> None:
    op, shape, attrs, seed = params
    if op == "MaxPool2D":
        del attrs["count_include_pad"]
    _check_pool(op, _x(shape, seed), attrs)


@pytest.mark.parametrize("include", [0, 1])
def test_avg_pool_matches_onnxruntime(include: int) -> None:
    """Independent semantics check (pad order, count_include_pad) against ONNX."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    x = _x((2, 7, 8, 3), seed=4)
    pt, pb, pl, pr = 1, 0, 1, 1
    nodes = [helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 2], strides=[2, 2],
                              pads=[pt, pl, pb, pr], count_include_pad=include),
             helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 2], strides=[2, 2],
                              pads=[pt, pl, pb, pr])]
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("a", "m")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want_a, want_m = (y.transpose(0, 2, 3, 1)
                      for y in sess.run(None, {"x": x.transpose(0, 3, 1, 2).copy()}))
    attrs = {"pool_size": (3, 2), "strides": (2, 2), "pads": (pt, pb, pl, pr)}
    (got_m,) = run_op("MaxPool2D", "conv", [x], attrs)
    (got_a,) = run_op("AvgPool2D", "conv", [x], {**attrs, "count_include_pad": bool(include)})
    np.testing.assert_allclose(got_m, want_m, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_a, want_a, rtol=RTOL, atol=ATOL)
