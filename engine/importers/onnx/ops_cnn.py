"""ONNX converters for CNN ops: Conv, pooling, BatchNormalization, LRN, InstanceNormalization.

ONNX images are NCHW; the engine's Conv2D and pooling ops are NHWC, so each such op is
wrapped as Transpose(0,2,3,1) -> op -> Transpose(0,3,1,2) and the ``cancel_transposes`` pass
removes the pairs between layers. 1-D ops run as 2-D ones on a height-1 image (an Unsqueeze
before, a Squeeze after). Ops with an ``axis`` (BatchNorm, LRN) run on NCHW directly with
axis 1; the layout pass renumbers it when it moves a Transpose through them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []

_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
_AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _spatial(ctx: Context, node: OnnxNode, x: str) -> int | None:
    """The number of spatial dims (1 or 2) of NCHW-like input ``x``, or None (recorded)."""
    rank = ctx.type_of(x).rank
    if rank in (3, 4):
        return rank - 2
    ctx.unsupported(node, f"input of rank {rank}: only 1-D and 2-D images (rank 3 or 4) "
                          "are supported")
    return None


def _pads(ctx: Context, node: OnnxNode, x: str, kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int]) -> tuple[int, int, int, int] | None:
    """ONNX pads / auto_pad as the engine's (top, bottom, left, right) for a 2-D window."""
    auto = node.attr("auto_pad", "NOTSET")
    nd = len(kernel)
    if auto in ("NOTSET", "VALID"):
        pads = [0] * (2 * nd) if auto == "VALID" else list(node.attr("pads", [0] * (2 * nd)))
        begin, end = pads[:nd], pads[nd:]
    else:
        sizes = ctx.type_of(x).shape[2:]
        begin, end = [], []
        for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
            if size is None:
                ctx.unsupported(node, f"auto_pad={auto} needs static spatial dims, got "
                                      f"{ctx.type_of(x).shape}")
                return None
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
    if nd == 1:
        return 0, 0, int(begin[0]), int(end[0])
    return int(begin[0]), int(end[0]), int(begin[1]), int(end[1])


def _as_2d(values: Sequence[int], nd: int, one: int) -> tuple[int, int]:
    return (one, int(values[0])) if nd == 1 else (int(values[0]), int(values[1]))


def _nhwc_op(ctx: Context, node: OnnxNode, x: str, op: str, extra: Sequence[str],
             attrs: dict[str, object], nd: int) -> None:
    """``op`` (NHWC) applied to NCHW ``x`` (rank nd + 2), written to the node's output."""
    x4 = ctx.emit1("Unsqueeze", [x], {"axes": (2,)}, hint=f"{node.name}/as2d") if nd == 1 else x
    t = ctx.emit1("Transpose", [x4], {"perm": _TO_NHWC}, hint=f"{node.name}/nhwc")
    y = ctx.emit1(op, [t, *extra], attrs, hint=node.name)
    if nd == 1:
        y4 = ctx.emit1("Transpose", [y], {"perm": _TO_NCHW}, hint=f"{node.name}/nchw")
        ctx.emit("Squeeze", [y4], {"axes": (2,)}, outputs=node.outputs[:1])
    else:
        ctx.emit("Transpose", [y], {"perm": _TO_NCHW}, outputs=node.outputs[:1])


@converts("Conv", since=1)
def _conv(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"auto_pad": _AUTO_PAD, "dilations": None, "group": None,
                                  "kernel_shape": None, "pads": None, "strides": None}):
        return
    x, w = node.inputs[0], node.inputs[1]
    nd = _spatial(ctx, node, x)
    if nd is None:
        return
    w_t = ctx.type_of(w)
    if w_t.rank != nd + 2 or any(d is None for d in w_t.shape):
        ctx.unsupported(node, f"weight shape {w_t.shape} does not match a {nd}-D conv")
        return
    kernel = [int(d) for d in w_t.shape[2:]]  # type: ignore[arg-type]
    strides = node.attr("strides", [1] * nd)
    dilations = node.attr("dilations", [1] * nd)
    pads = _pads(ctx, node, x, kernel, strides, dilations)
    if pads is None:
        return
    # OI[H]W -> (KH, KW, I, O); a 1-D kernel becomes 1 x K
    w4 = w if nd == 2 else ctx.emit1("Unsqueeze", [w], {"axes": (2,)}, hint=f"{w}/as2d")
    kernel_w = ctx.emit1("Transpose", [w4], {"perm": (2, 3, 1, 0)}, hint=f"{w}/hwio")
    bias = [node.inputs[2]] if node.input(2) else []
    attrs = {"strides": _as_2d(strides, nd, 1), "dilations": _as_2d(dilations, nd, 1),
             "pads": pads, "groups": int(node.attr("group", 1))}
    _nhwc_op(ctx, node, x, "Conv2D", [kernel_w, *bias], attrs, nd)


def _pool(ctx: Context, node: OnnxNode, op: str, count_include_pad: bool | None) -> None:
    x = node.inputs[0]
    nd = _spatial(ctx, node, x)
    if nd is None:
        return
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.unsupported(node, "the Indices output of MaxPool is not supported")
        return
    kernel = node.attr("kernel_shape")
    if kernel is None or len(kernel) != nd:
        ctx.unsupported(node, f"kernel_shape {kernel} does not match {nd}-D input")
        return
    strides = node.attr("strides", [1] * nd)
    dilations = node.attr("dilations", [1] * nd)
    pads = _pads(ctx, node, x, kernel, strides, dilations)
    if pads is None:
        return
    attrs: dict[str, object] = {
        "pool_size": _as_2d(kernel, nd, 1), "strides": _as_2d(strides, nd, 1),
        "dilations": _as_2d(dilations, nd, 1), "pads": pads,
        "ceil_mode": bool(node.attr("ceil_mode", 0)),
    }
    if count_include_pad is not None:
        attrs["count_include_pad"] = count_include_pad
    _nhwc_op(ctx, node, x, op, [], attrs, nd)


@converts("MaxPool", since=1)
def _max_pool(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"auto_pad": _AUTO_PAD, "ceil_mode": (0, 1), "dilations": None,
                              "kernel_shape": None, "pads": None, "strides": None,
                              "storage_order": (0,)}):
        _pool(ctx, node, "MaxPool2D", None)


@converts("AveragePool", since=1)
def _avg_pool(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"auto_pad": _AUTO_PAD, "ceil_mode": (0, 1), "dilations": None,
                              "kernel_shape": None, "pads": None, "strides": None,
                              "count_include_pad": (0, 1)}):
        _pool(ctx, node, "AvgPool2D", bool(node.attr("count_include_pad", 0)))


@converts("GlobalAveragePool", "GlobalMaxPool", since=1)
def _global_pool(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    x = node.inputs[0]
    nd = _spatial(ctx, node, x)
    if nd is None:
        return
    op = "GlobalAvgPool2D" if node.op_type == "GlobalAveragePool" else "GlobalMaxPool2D"
    x4 = ctx.emit1("Unsqueeze", [x], {"axes": (2,)}, hint=f"{node.name}/as2d") if nd == 1 else x
    t = ctx.emit1("Transpose", [x4], {"perm": _TO_NHWC}, hint=f"{node.name}/nhwc")
    y = ctx.emit1(op, [t], {"keepdims": False}, hint=node.name)  # (N, C)
    ctx.emit("Unsqueeze", [y], {"axes": tuple(range(2, 2 + nd))}, outputs=node.outputs[:1])


@converts("BatchNormalization", since=1)
def _batchnorm(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"epsilon": None, "momentum": None, "spatial": (1,),
                                  "training_mode": (0,), "is_test": (1,),
                                  "consumed_inputs": None}):
        return
    if any(node.outputs[1:]):
        ctx.unsupported(node, "training outputs (running mean/var, saved mean/var) are not "
                              "supported; export the model in eval mode")
        return
    if ctx.type_of(node.inputs[0]).rank < 2:
        ctx.unsupported(node, "input must have a channel axis (rank >= 2)")
        return
    ctx.emit("BatchNorm", node.inputs[:5],
             {"epsilon": float(node.attr("epsilon", 1e-5)), "axis": 1},
             outputs=node.outputs[:1])


@converts("LRN", since=1)
def _lrn(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"alpha": None, "beta": None, "bias": None, "size": None}):
        return
    if node.attr("size") is None:
        ctx.unsupported(node, "attribute 'size' is required")
        return
    ctx.emit("LRN", node.inputs[:1],
             {"size": int(node.attr("size")), "alpha": float(node.attr("alpha", 1e-4)),
              "beta": float(node.attr("beta", 0.75)), "bias": float(node.attr("bias", 1.0)),
              "axis": 1},
             outputs=node.outputs[:1])


@converts("InstanceNormalization", since=1)
def _instance_norm(ctx: Context, node: OnnxNode) -> None:
    """(x - mean) / sqrt(var + eps) * scale + bias, statistics per image and channel."""
    if not ctx.check_attrs(node, {"epsilon": None}):
        return
    x, scale, bias = node.inputs[:3]
    rank = ctx.type_of(x).rank
    if rank < 3:
        ctx.unsupported(node, f"input of rank {rank}: needs (N, C, spatial...)")
        return
    axes = tuple(range(2, rank))
    shape = (-1,) + (1,) * (rank - 2)  # per-channel vectors against (N, C, ...)
    eps = ctx.add_const(np.float32(node.attr("epsilon", 1e-5)), hint=f"{node.name}/eps")
    h = node.name
    mean = ctx.emit1("ReduceMean", [x], {"axes": axes, "keepdims": True}, hint=f"{h}/mean")
    d = ctx.emit1("Sub", [x, mean], hint=f"{h}/centred")
    sq = ctx.emit1("Mul", [d, d], hint=f"{h}/sq")
    var = ctx.emit1("ReduceMean", [sq], {"axes": axes, "keepdims": True}, hint=f"{h}/var")
    std = ctx.emit1("Sqrt", [ctx.emit1("Add", [var, eps], hint=f"{h}/var_eps")], hint=f"{h}/std")
    normed = ctx.emit1("Div", [d, std], hint=f"{h}/normed")
    s = ctx.emit1("Reshape", [scale], {"shape": shape}, hint=f"{h}/scale")
    b = ctx.emit1("Reshape", [bias], {"shape": shape}, hint=f"{h}/bias")
    scaled = ctx.emit1("Mul", [normed, s], hint=f"{h}/scaled")
    ctx.emit("Add", [scaled, b], outputs=node.outputs[:1])


def _spread(ctx: Context, node: OnnxNode, t: str, axis: int, stride: int, size: int) -> str:
    """NHWC ``t`` with stride-1 zeros between neighbours along spatial ``axis`` (1 or 2):
    each pixel is followed by zero copies, the block reshaped flat, the tail cut."""
    if stride == 1:
        return t
    h = f"{node.name}/spread{axis}"
    u = ctx.emit1("Unsqueeze", [t], {"axes": (axis + 1,)}, hint=h)
    zero = ctx.add_const(np.float32(0.0), hint=f"{h}/zero")
    z = ctx.emit1("Mul", [u, zero], hint=h)  # zeros shaped like u, dynamic batch included
    cat = ctx.emit1("Concat", [u] + [z] * (stride - 1), {"axis": axis + 1}, hint=h)
    shape = list(ctx.type_of(t).shape)
    shape[0] = 0
    shape[axis] = size * stride
    flat = ctx.emit1("Reshape", [cat], {"shape": tuple(shape)}, hint=h)
    return ctx.emit1("Slice", [flat], {"starts": (0,), "ends": ((size - 1) * stride + 1,),
                                       "axes": (axis,)}, hint=h)


def _transposed_kernel(ctx: Context, node: OnnxNode, nd: int, groups: int) -> str:
    """ConvTranspose weight (C, O/g, k...) as the equivalent Conv2D's (KH, KW, C/g, O):
    spatially flipped, in/out swapped, groups side by side. Engine ops (folded when the
    weight is constant), so a weight fed at run time works too."""
    h = f"{node.name}/kernel"
    w = node.inputs[1]
    shape = ctx.type_of(w).shape
    cg = int(shape[0]) // groups  # type: ignore[arg-type]
    if nd == 1:
        w = ctx.emit1("Unsqueeze", [w], {"axes": (2,)}, hint=h)
    w = ctx.emit1("Slice", [w], {"starts": (-1, -1), "ends": (-(2**62), -(2**62)),
                                 "axes": (2, 3), "steps": (-1, -1)}, hint=h)
    w = ctx.emit1("Transpose", [w], {"perm": (2, 3, 0, 1)}, hint=h)  # (KH, KW, C, O/g)
    if groups == 1:
        return w
    parts = [ctx.emit1("Slice", [w], {"starts": (g * cg,), "ends": ((g + 1) * cg,),
                                      "axes": (2,)}, hint=h) for g in range(groups)]
    return ctx.emit1("Concat", parts, {"axis": 3}, hint=h)


@converts("ConvTranspose", since=1)
def _conv_transpose(ctx: Context, node: OnnxNode) -> None:
    """A stride-1 Conv2D over the input spread out by the strides, with the kernel flipped
    and its in/out channels swapped (per group), padded to give ONNX's output size."""
    if not ctx.check_attrs(node, {"auto_pad": ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"),
                                  "dilations": None, "group": None, "kernel_shape": None,
                                  "output_padding": None, "output_shape": None, "pads": None,
                                  "strides": None}):
        return
    x = node.inputs[0]
    nd = _spatial(ctx, node, x)
    w_t = ctx.type_of(node.inputs[1])
    if nd is None:
        return
    if w_t.rank != nd + 2 or any(d is None for d in w_t.shape):
        ctx.unsupported(node, f"weight shape {w_t.shape} does not match a {nd}-D conv")
        return
    dims = ctx.type_of(x).shape[2:]
    if any(s is None for s in dims):
        ctx.unsupported(node, f"needs static spatial dims, got {ctx.type_of(x).shape}")
        return
    sizes = [int(s or 0) for s in dims]
    groups = int(node.attr("group", 1))
    kernel = [int(d) for d in w_t.shape[2:]]  # type: ignore[arg-type]
    strides = node.attr("strides", [1] * nd)
    dil = node.attr("dilations", [1] * nd)
    out_pad = node.attr("output_padding", [0] * nd)
    auto = node.attr("auto_pad", "NOTSET")
    pads = list(node.attr("pads", [0] * (2 * nd))) if auto == "NOTSET" else [0] * (2 * nd)
    out_shape = node.attr("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(nd):
            want = out_shape[-nd + i] if out_shape is not None else sizes[i] * strides[i]
            full = (sizes[i] - 1) * strides[i] + out_pad[i] + (kernel[i] - 1) * dil[i] + 1
            total = full - int(want)
            upper = auto == "SAME_UPPER"
            pads[i], pads[nd + i] = ((total // 2, total - total // 2) if upper
                                     else (total - total // 2, total // 2))
    w_hwio = _transposed_kernel(ctx, node, nd, groups)
    conv_pads, crop = [], []
    for i in range(nd):
        span = (kernel[i] - 1) * dil[i]
        begin, end = span - pads[i], span - pads[nd + i] + out_pad[i]
        conv_pads += [max(begin, 0), max(end, 0)]
        crop.append((max(-begin, 0), max(-end, 0)))
    x4 = ctx.emit1("Unsqueeze", [x], {"axes": (2,)}, hint=f"{node.name}/as2d") if nd == 1 else x
    t = ctx.emit1("Transpose", [x4], {"perm": _TO_NHWC}, hint=f"{node.name}/nhwc")
    for i in range(nd):
        axis = i + 1 if nd == 2 else 2
        t = _spread(ctx, node, t, axis, int(strides[i]), sizes[i])
    bias = [node.inputs[2]] if node.input(2) else []
    attrs = {"dilations": _as_2d(dil, nd, 1), "groups": groups,
             "pads": tuple(conv_pads) if nd == 2 else (0, 0, *conv_pads)}
    y = ctx.emit1("Conv2D", [t, w_hwio, *bias], attrs, hint=node.name)
    for i, (lo, hi) in enumerate(crop):  # pads beyond the kernel span: cut the output
        if lo or hi:
            axis = i + 1 if nd == 2 else 2
            n = ctx.type_of(y).shape[axis]
            assert n is not None
            y = ctx.emit1("Slice", [y], {"starts": (lo,), "ends": (n - hi,), "axes": (axis,)},
                          hint=f"{node.name}/crop")
    if nd == 1:
        y4 = ctx.emit1("Transpose", [y], {"perm": _TO_NCHW}, hint=f"{node.name}/nchw")
        ctx.emit("Squeeze", [y4], {"axes": (2,)}, outputs=node.outputs[:1])
    else:
        ctx.emit("Transpose", [y], {"perm": _TO_NCHW}, outputs=node.outputs[:1])
