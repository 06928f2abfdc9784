"""ONNX CNN ops (Conv, ConvTranspose, pooling, BatchNormalization, LRN, InstanceNormalization) and a
ResNet-style network exported by torch, through our importer vs onnxruntime.

Tolerance: float32, 1e-4 relative and 1e-5 absolute (``RTOL``/``ATOL``), at batch sizes 1 and
3 of a dynamic batch axis.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from engine.errors import UnsupportedOpError
from tests.unit.importers.test_onnx_util import assert_matches, engine_model, make_model, vi

RTOL, ATOL = 1e-4, 1e-5
BATCHES = (1, 3)
rng = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _out(name: str, rank: int, elem: int = onnx.TensorProto.FLOAT) -> onnx.ValueInfoProto:
    """An output of known rank; its dims are left to shape inference."""
    return helper.make_tensor_value_info(name, elem, [f"{name}{i}" for i in range(rank)])


def _check(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    ours = engine_model(model)
    for n in BATCHES:
        assert_matches(model, {"x": _f32(n, *shape)}, ours, rtol=RTOL, atol=ATOL)


def _single(op: str, shape: tuple[int, ...], inits: dict[str, np.ndarray] | None = None,
            **attrs: Any) -> onnx.ModelProto:
    names = ["x", *(inits or {})]
    node = helper.make_node(op, names, ["y"], **attrs)
    return make_model([node], [vi("x", np.float32, ["N", *shape])], [_out("y", len(shape) + 1)],
                      inits)


CONV_CASES = [
    # in (C, H, W), out channels, attrs
    ((3, 9, 9), 4, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((4, 10, 8), 6, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 1, 0]}),
    ((4, 11, 11), 8, {"kernel_shape": [3, 3], "dilations": [2, 2], "group": 2}),
    ((6, 8, 8), 6, {"kernel_shape": [3, 3], "group": 6, "pads": [1, 1, 1, 1]}),  # depthwise
    ((3, 8, 8), 6, {"kernel_shape": [3, 3], "group": 3, "strides": [2, 2]}),  # multiplier 2
    ((3, 7, 9), 5, {"kernel_shape": [4, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((3, 7, 9), 5, {"kernel_shape": [4, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((3, 7, 9), 5, {"kernel_shape": [3, 3], "auto_pad": "VALID"}),
    ((5, 12), 4, {"kernel_shape": [3], "pads": [2, 1], "strides": [2]}),  # 1-D
    ((4, 12), 4, {"kernel_shape": [3], "group": 4, "dilations": [2]}),  # 1-D depthwise
]


@pytest.mark.parametrize(("shape", "out", "attrs"), CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(shape: tuple[int, ...], out: int, attrs: dict[str, Any], bias: bool) -> None:
    groups = attrs.get("group", 1)
    inits = {"w": _f32(out, shape[0] // groups, *attrs["kernel_shape"])}
    if bias:
        inits["b"] = _f32(out)
    _check(_single("Conv", shape, inits, **attrs), shape)


DECONV_CASES = [
    # in (C, H, W), out channels per group, attrs
    ((3, 5, 5), 4, {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((4, 4, 6), 3, {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 0, 0, 1],
                    "output_padding": [1, 0]}),
    ((4, 5, 5), 2, {"kernel_shape": [3, 3], "group": 2, "dilations": [2, 1], "pads": [2, 2, 3, 3]}),
    ((2, 6, 6), 3, {"kernel_shape": [4, 4], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((3, 7), 2, {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),  # 1-D
]


@pytest.mark.parametrize(("shape", "out", "attrs"), DECONV_CASES)
def test_conv_transpose(shape: tuple[int, ...], out: int, attrs: dict[str, Any]) -> None:
    inits = {"w": _f32(shape[0], out, *attrs["kernel_shape"]),
             "b": _f32(out * attrs.get("group", 1))}
    _check(_single("ConvTranspose", shape, inits, **attrs), shape)


POOL_CASES = [
    ((3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((3, 9, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((3, 9, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                 "ceil_mode": 1}),
    ((2, 10, 10), {"kernel_shape": [2, 3], "strides": [1, 2], "dilations": [2, 2]}),
    ((2, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((4, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),  # 1-D
]


@pytest.mark.parametrize(("shape", "attrs"), POOL_CASES)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "AveragePool+pad"])
def test_pool(shape: tuple[int, ...], attrs: dict[str, Any], op: str) -> None:
    if op == "AveragePool+pad":
        op, attrs = "AveragePool", {**attrs, "count_include_pad": 1}
    if op == "AveragePool" and "dilations" in attrs:
        pytest.skip("AveragePool has dilations from opset 19 (these models are opset 17)")
    _check(_single(op, shape, **attrs), shape)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(5, 6, 7), (4, 9)])
def test_global_pool(op: str, shape: tuple[int, ...]) -> None:
    _check(_single(op, shape), shape)


def test_batchnorm() -> None:
    c = 5
    inits = {"s": _f32(c), "b": _f32(c), "m": _f32(c),
             "v": rng.uniform(0.5, 2, c).astype(np.float32)}
    _check(_single("BatchNormalization", (c, 4, 6), inits, epsilon=1e-3), (c, 4, 6))


@pytest.mark.parametrize("size", [3, 5])  # onnxruntime takes odd sizes only
def test_lrn(size: int) -> None:
    _check(_single("LRN", (7, 5, 5), size=size, alpha=0.01, beta=0.7, bias=1.5), (7, 5, 5))


def test_instance_norm() -> None:
    inits = {"s": _f32(4), "b": _f32(4)}
    _check(_single("InstanceNormalization", (4, 5, 6), inits, epsilon=1e-4), (4, 5, 6))


def test_unsupported_listed_together() -> None:
    """A 3-D conv and a MaxPool argmax output: one error naming both nodes."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv3d"),
        helper.make_node("MaxPool", ["c"], ["y", "idx"], kernel_shape=[1, 1, 1], name="mp"),
    ]
    model = make_model(nodes, [vi("x", np.float32, ["N", 2, 4, 4, 4])],
                       [_out("y", 5), _out("idx", 5, onnx.TensorProto.INT64)],
                       {"w": _f32(3, 2, 1, 1, 1)})
    with pytest.raises(UnsupportedOpError) as err:
        engine_model(model)
    assert "conv3d" in str(err.value) and "mp" in str(err.value)


class _Block(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = torch.nn.BatchNorm2d(cout)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = torch.nn.BatchNorm2d(cout)
        self.skip = (torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         torch.nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else torch.nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.skip(x))


class _ResNet(torch.nn.Module):
    """ResNet-18's shape in miniature: stem conv + max pool, residual blocks, global pool, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False),
                                        torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                        torch.nn.MaxPool2d(3, 2, 1))
        self.blocks = torch.nn.Sequential(_Block(8, 8, 1), _Block(8, 16, 2), _Block(16, 16, 1))
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.stem(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


def _randomize_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def _export(model: torch.nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17,
                      dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_resnet_style_cnn() -> None:
    torch.manual_seed(0)
    net = _ResNet().eval()
    _randomize_bn(net)
    model = _export(net, torch.randn(1, 3, 32, 32))
    ours = engine_model(model)
    ops = [n.op for n in ours.graph.nodes]
    # NHWC inside: one Transpose at the input; BatchNorms folded into the convs
    assert ops.count("Transpose") == 1, ops
    assert "BatchNorm" not in ops
    for n in BATCHES:
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        assert_matches(model, {"x": x}, ours, rtol=RTOL, atol=ATOL)
