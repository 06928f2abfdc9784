"""Convolution and pooling over NHWC images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ShapeError
from engine.ir.graph import Dim, TensorType
from engine.ir.schema import REQUIRED, register
from engine.ir.schemas._common import check_activation, expect_rank, same_dim

_CONV_ATTRS = {
    "strides": (1, 1),
    "dilations": (1, 1),
    "pads": (0, 0, 0, 0),  # top, bottom, left, right
    "groups": 1,
    "activation": "linear",
    "alpha": 0.2,  # leaky_relu slope
}


def out_dim(size: Dim, kernel: int, stride: int, dilation: int, pad_a: int, pad_b: int) -> Dim:
    if size is None:
        return None
    span = (kernel - 1) * dilation + 1
    out = (size + pad_a + pad_b - span) // stride + 1
    if out <= 0:
        raise ShapeError(f"window {span} (stride {stride}) does not fit input size {size} + pads")
    return out


@register("Conv2D", inputs=(2, 3), attrs=_CONV_ATTRS,
          doc="x NHWC, w (KH, KW, C/groups, O), optional bias (O); fused activation")
def _conv2d(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, w = ins[0], ins[1]
    expect_rank("Conv2D input", x.shape, 4)
    expect_rank("Conv2D weight", w.shape, 4)
    check_activation(a["activation"])
    n, h, wd, c = x.shape
    kh, kw, ci, co = w.shape
    g = a["groups"]
    assert kh is not None and kw is not None and co is not None
    if c is not None and ci is not None:
        same_dim("Conv2D input channels / groups vs weight", c // g if c % g == 0 else -1, ci)
    if co % g:
        raise ShapeError(f"Conv2D output channels {co} not divisible by groups {g}")
    if len(ins) == 3:
        expect_rank("Conv2D bias", ins[2].shape, 1)
        same_dim("Conv2D bias length vs output channels", ins[2].shape[0], co)
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pb, pl, pr = a["pads"]
    oh = out_dim(h, kh, sh, dh, pt, pb)
    ow = out_dim(wd, kw, sw, dw, pl, pr)
    return [TensorType(x.dtype, (n, oh, ow, co))]


_POOL_ATTRS = {
    "pool_size": REQUIRED,
    "strides": REQUIRED,
    "pads": (0, 0, 0, 0),
    "count_include_pad": False,  # AvgPool2D only: divide by the full window
    "dilations": (1, 1),
    # ONNX/PyTorch ceil_mode: round the output size up, but no window may start in the end pad
    "ceil_mode": False,
}


def pool_out_dim(size: Dim, kernel: int, stride: int, dilation: int, pad_a: int, pad_b: int,
                 ceil_mode: bool) -> Dim:
    if size is None or not ceil_mode:
        return out_dim(size, kernel, stride, dilation, pad_a, pad_b)
    span = (kernel - 1) * dilation + 1
    out = -(-(size + pad_a + pad_b - span) // stride) + 1
    if (out - 1) * stride >= size + pad_a:
        out -= 1
    if out <= 0:
        raise ShapeError(f"window {span} (stride {stride}) does not fit input size {size} + pads")
    return out


def _pool(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    expect_rank("pool input", x.shape, 4)
    n, h, w, c = x.shape
    kh, kw = a["pool_size"]
    sh, sw = a["strides"]
    pt, pb, pl, pr = a["pads"]
    dh, dw = a["dilations"]
    ceil = bool(a["ceil_mode"])
    oh = pool_out_dim(h, kh, sh, dh, pt, pb, ceil)
    ow = pool_out_dim(w, kw, sw, dw, pl, pr, ceil)
    return [TensorType(x.dtype, (n, oh, ow, c))]


register("MaxPool2D", inputs=1, attrs=_POOL_ATTRS, doc="NHWC max pooling")(_pool)
register("AvgPool2D", inputs=1, attrs=_POOL_ATTRS, doc="NHWC average pooling")(_pool)


def _global_pool(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    expect_rank("global pool input", x.shape, 4)
    n, _, _, c = x.shape
    return [TensorType(x.dtype, (n, 1, 1, c) if a["keepdims"] else (n, c))]


register("GlobalAvgPool2D", inputs=1, attrs={"keepdims": False}, doc="NHWC -> (N, C)")(_global_pool)
register("GlobalMaxPool2D", inputs=1, attrs={"keepdims": False}, doc="NHWC -> (N, C)")(_global_pool)
