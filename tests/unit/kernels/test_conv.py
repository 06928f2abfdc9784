"""Conv2D through its binding vs the float64 direct-loop reference (and onnxruntime)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.executor.bindings.conv as conv_binding
from engine.kernels.reference.conv import conv2d as ref_conv2d
from tests.unit.kernels.harness import run_op

ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")
RTOL, ATOL = 1e-4, 1e-4  # float32 accumulation over K = KH*KW*C/groups <= a few hundred


def _case(x_shape: tuple[int, int, int, int], kernel: tuple[int, int], out_ch: int,
          groups: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, *x_shape, *kernel, out_ch, groups])
    cg = x_shape[3] // groups
    k = kernel[0] * kernel[1] * cg
    x = rng.normal(size=x_shape).astype(np.float32)
    w = (rng.normal(size=(*kernel, cg, out_ch)) * 2 / np.sqrt(k)).astype(np.float32)
    b = rng.normal(size=(out_ch,)).astype(np.float32)
    return x, w, b


def _check(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict[str, Any],
           const: list[bool] | None = None) -> np.ndarray:
    inputs = [x, w] if b is None else [x, w, b]
    (got,) = run_op("Conv2D", "conv", inputs, attrs,
                    const=const or [False] + [True] * (len(inputs) - 1))
    want = ref_conv2d(x, w, b, attrs.get("strides", (1, 1)), attrs.get("dilations", (1, 1)),
                      attrs.get("pads", (0, 0, 0, 0)), attrs.get("groups", 1),
                      attrs.get("activation", "linear"), attrs.get("alpha", 0.2))
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return got


GEOMETRIES = [
    # x shape, kernel, out channels, attrs
    ((1, 8, 8, 3), (3, 3), 32, {}),  # valid, batch 1 (seed CNN's first conv, small)
    ((3, 7, 9, 5), (3, 3), 16, {"pads": (1, 1, 1, 1)}),  # same, batch 3
    ((2, 9, 8, 4), (3, 2), 12, {"pads": (0, 1, 2, 0)}),  # asymmetric pads, 3x2 kernel
    ((2, 9, 9, 6), (3, 3), 20, {"strides": (2, 2), "pads": (1, 1, 1, 1)}),  # stride 2
    ((1, 10, 7, 4), (3, 3), 8, {"strides": (2, 1), "pads": (0, 1, 1, 0)}),  # mixed strides
    ((2, 11, 11, 3), (3, 3), 24, {"dilations": (2, 2), "pads": (2, 2, 2, 2)}),  # dilation 2
    ((1, 9, 10, 4), (2, 3), 8, {"dilations": (2, 1), "strides": (1, 2)}),  # mixed dilation
    ((2, 6, 6, 8), (3, 3), 12, {"groups": 2, "pads": (1, 1, 1, 1)}),  # groups 2
    ((1, 7, 7, 12), (1, 1), 9, {"groups": 3}),  # groups 3, 1x1
    ((2, 8, 8, 6), (3, 3), 6, {"groups": 6, "pads": (1, 1, 1, 1)}),  # depthwise
    ((1, 9, 9, 4), (3, 3), 8, {"groups": 4, "strides": (2, 2), "pads": (0, 1, 0, 1)}),  # dw x2
    ((2, 10, 10, 5), (5, 5), 5, {"groups": 5, "dilations": (2, 2), "pads": (4, 4, 4, 4)}),
    ((2, 5, 6, 16), (1, 1), 70, {}),  # 1x1 stride 1: direct rows, several column blocks
    ((1, 6, 6, 16), (1, 1), 24, {"strides": (2, 2)}),  # 1x1 strided: through im2col
    ((1, 3, 3, 2), (3, 3), 1, {}),  # a single output pixel and channel
    ((1, 1, 1, 7), (1, 1), 5, {}),  # fewer rows than a tile
    ((2, 1, 12, 4), (1, 3), 10, {"pads": (0, 0, 1, 1)}),  # 1-D conv as 1xK
]


@pytest.mark.parametrize(("x_shape", "kernel", "out_ch", "attrs"), GEOMETRIES)
def test_conv_geometry(x_shape: tuple[int, int, int, int], kernel: tuple[int, int],
                       out_ch: int, attrs: dict[str, Any]) -> None:
    x, w, b = _case(x_shape, kernel, out_ch, attrs.get("groups", 1))
    _check(x, w, b, dict(attrs))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 2, 8])  # GEMM, grouped GEMM, depthwise
def test_conv_activation(activation: str, bias: bool, groups: int) -> None:
    x, w, b = _case((2, 6, 7, 8), (3, 3), 16, groups, seed=1)
    attrs = {"activation": activation, "alpha": 0.15, "pads": (1, 0, 0, 1), "groups": groups}
    _check(x, w, b if bias else None, attrs)


@pytest.mark.parametrize(("x_shape", "kernel", "out_ch", "attrs"), [
    ((4, 16, 16, 8), (3, 3), 48, {"pads": (1, 1, 1, 1), "activation": "relu"}),
    ((3, 20, 20, 16), (1, 1), 64, {}),
    ((2, 32, 32, 32), (3, 3), 32, {"groups": 32, "pads": (1, 1, 1, 1), "activation": "relu6"}),
    ((2, 16, 16, 16), (3, 3), 32, {"groups": 2, "strides": (2, 2), "pads": (0, 1, 0, 1)}),
    # few pixels, many channels: threads split the output channels
    ((1, 5, 5, 64), (3, 3), 200, {"pads": (1, 1, 1, 1), "activation": "gelu"}),
    ((1, 5, 5, 64), (3, 3), 128, {"groups": 2, "pads": (1, 1, 1, 1)}),
])
def test_conv_parallel(x_shape: tuple[int, int, int, int], kernel: tuple[int, int],
                       out_ch: int, attrs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The prange kernels (chunked by pixels or by channels), whatever the size threshold."""
    monkeypatch.setattr(conv_binding, "CONV_PAR_MIN_FMA", 0)
    x, w, b = _case(x_shape, kernel, out_ch, attrs.get("groups", 1), seed=2)
    _check(x, w, b, dict(attrs))


@pytest.mark.parametrize("const", [[False, False, False], [False, True, False],
                                   [False, False, True], [True, True, True]])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv_runtime_weights(const: list[bool], groups: int) -> None:
    x, w, b = _case((2, 5, 5, 4), (3, 3), 8, groups, seed=3)
    _check(x, w, b, {"groups": groups, "pads": (1, 1, 1, 1), "activation": "tanh"}, const)


def test_conv_float64() -> None:
    x, w, b = _case((1, 6, 6, 3), (3, 3), 4, seed=4)
    got = _check(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                 {"pads": (1, 1, 1, 1)})
    assert got.dtype == np.float64


def test_conv_reference_is_not_trivially_zero() -> None:
    """Guard the reference itself: a hand-computed 2x2 conv."""
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.array([1, 2, 3, 4], dtype=np.float32).reshape(2, 2, 1, 1)
    want = np.array([[0 + 2 + 9 + 16, 1 + 4 + 12 + 20], [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]])
    np.testing.assert_allclose(ref_conv2d(x, w)[0, :, :, 0], want)
    (got,) = run_op("Conv2D", "conv", [x, w], {}, const=[False, True])
    np.testing.assert_allclose(got[0, :, :, 0], want, rtol=1e-6)


@st.composite
def _conv_params(draw: st.DrawFn) -> tuple[Any, ...]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and groups == 1
    cg = 1 if depthwise else draw(st.integers(1, 5))
    c = draw(st.integers(1, 6)) if depthwise else cg * groups
    if depthwise:
        groups = c
    out_ch = groups * draw(st.integers(1, 3 if depthwise else 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, (kh - 1) * dh + 1 - pads[0] - pads[1]), 10))
    w = draw(st.integers(max(1, (kw - 1) * dw + 1 - pads[2] - pads[3]), 10))
    n = draw(st.integers(1, 3))
    act = draw(st.sampled_from(ACTIVATIONS))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    attrs = {"strides": (sh, sw), "dilations": (dh, dw), "pads": pads, "groups": groups,
             "activation": act}
    return (n, h, w, c), (kh, kw), out_ch, attrs, bias, seed


@settings(max_examples=30, deadline=None)
@given(_conv_params())
def test_conv_random(params: tuple[Any, ...]) -> None:
    x_shape, kernel, out_ch, attrs, bias, seed = params
    x, w, b = _case(x_shape, kernel, out_ch, attrs["groups"], seed)
    _check(x, w, b if bias else None, attrs)


def test_conv_matches_onnxruntime() -> None:
    """Independent semantics check (pad order, dilation, groups) against ONNX's Conv."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    x, w, b = _case((2, 9, 10, 6), (3, 2), 8, groups=2, seed=5)
    pt, pb, pl, pr = 1, 0, 2, 1
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 1], dilations=[1, 2],
                            pads=[pt, pl, pb, pr], group=2)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.transpose(3, 2, 0, 1).copy(), "w"),
         numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x.transpose(0, 3, 1, 2).copy()})[0].transpose(0, 2, 3, 1)
    attrs = {"strides": (2, 1), "dilations": (1, 2), "pads": (pt, pb, pl, pr), "groups": 2}
    (got,) = run_op("Conv2D", "conv", [x, w, b], attrs, const=[False, True, True])
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_conv_concurrent_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One prepared (parallel) conv run from several threads at once, own buffers each."""
    import threading

    monkeypatch.setattr(conv_binding, "CONV_PAR_MIN_FMA", 0)
    from engine.executor.binding import binding_for
    from engine.ir import TensorType, schema_for

    x_shape, w_shape = (2, 12, 12, 16), (3, 3, 16, 32)
    attrs = schema_for("Conv2D").resolve_attrs({"pads": (1, 1, 1, 1), "activation": "relu"}, "t")
    in_types = [TensorType("float32", x_shape), TensorType("float32", w_shape)]
    out_types = schema_for("Conv2D").infer(in_types, attrs)
    _, w, _ = _case(x_shape, (3, 3), 32, seed=6)
    prepared = binding_for("Conv2D")(attrs, in_types, out_types, [None, w])
    xs = [_case(x_shape, (3, 3), 32, seed=10 + i)[0] for i in range(4)]
    wants = [ref_conv2d(x, w, None, pads=(1, 1, 1, 1), activation_name="relu") for x in xs]
    errors: list[Exception] = []

    def worker(i: int) -> None:
        try:
            y = np.empty(tuple(int(d) for d in out_types[0].shape), dtype=np.float32)
            scratch = [np.empty(s, dtype=d) for s, d in prepared.scratch]
            for _ in range(20):
                y[:] = np.nan
                prepared.run([xs[i]], [y], scratch)
                np.testing.assert_allclose(y, wants[i], rtol=RTOL, atol=ATOL)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
