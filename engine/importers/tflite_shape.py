"""TF Lite builtin operators -> engine nodes: RESHAPE, PAD, and the shape arithmetic (SHAPE,
STRIDED_SLICE, PACK) that converters emit around dynamic batch sizes.

Shape arithmetic is evaluated at import time on int vectors whose dynamic entries are None
(the batch): Keras' Flatten becomes SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE, and the RESHAPE
ends up with a static target such as ``(0, 1024)`` (0: keep the input's dynamic dim).
"""

from __future__ import annotations

import numpy as np

from engine.importers.tflite_ctx import Context
from engine.importers.tflite_ops import converts
from engine.importers.tflite_read import TOperator

__all__: list[str] = []


@converts("SHAPE")
def _shape(ctx: Context, op: TOperator) -> None:
    shape = ctx.type_of(op.inputs[0]).shape
    ctx.set_known(op.outputs[0], np.array(list(shape), dtype=object))


@converts("PACK")
def _pack(ctx: Context, op: TOperator) -> None:
    vals = [ctx.known(i) for i in op.inputs]
    if any(v is None for v in vals):
        ctx.unsupported(op, "PACK is supported only on values known at import time (shape "
                            "arithmetic)")
        return
    ctx.set_known(op.outputs[0], np.stack(vals, axis=int(op.options.get("Axis", 0))))  # type: ignore[arg-type]


@converts("STRIDED_SLICE")
def _strided_slice(ctx: Context, op: TOperator) -> None:
    x, begin, end, strides = (ctx.known(i) for i in op.inputs[:4])
    o = op.options
    if x is None or begin is None or end is None or strides is None or x.ndim != 1:
        ctx.unsupported(op, "STRIDED_SLICE is supported only on 1-D values known at import "
                            "time (shape arithmetic)")
        return
    if o.get("EllipsisMask", 0) or o.get("NewAxisMask", 0):
        ctx.unsupported(op, "ellipsis and new-axis masks are not supported")
        return
    b, e, s = int(begin[0]), int(end[0]), int(strides[0])
    if o.get("Offset", False):
        e = b + e
    if o.get("ShrinkAxisMask", 0) & 1:
        ctx.set_known(op.outputs[0], np.array(x[b], dtype=object))
        return
    start = None if o.get("BeginMask", 0) & 1 else b
    stop = None if o.get("EndMask", 0) & 1 else e
    ctx.set_known(op.outputs[0], np.array(list(x[start:stop:s]), dtype=object))


@converts("RESHAPE")
def _reshape(ctx: Context, op: TOperator) -> None:
    x, out = op.inputs[0], op.outputs[0]
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        target = ctx.known(op.inputs[1])
        if target is None:
            ctx.unsupported(op, f"the new shape (tensor {op.inputs[1]}) is computed at run "
                                "time; only shapes known at import are supported")
            return
    else:
        target = np.array(op.options.get("NewShape", []), dtype=object)
    xt = ctx.type_of(x)
    shape: list[int] = []
    for pos, d in enumerate(target.flat):
        if d is None:  # a dynamic dim carried through shape arithmetic
            if pos < xt.rank and xt.shape[pos] is None:
                shape.append(0)
            elif -1 not in list(target.flat):
                shape.append(-1)
            else:
                ctx.unsupported(op, f"cannot express new shape {list(target.flat)} statically")
                return
        elif int(d) == 0:
            ctx.unsupported(op, "zero-sized dimensions are not supported")
            return
        else:
            shape.append(int(d))
    same_q = ctx.is_int8(x) and ctx.is_int8(out) and ctx.qparams(x) == ctx.qparams(out)
    if same_q or not (ctx.is_int8(x) or ctx.is_int8(out)):
        ctx.emit("Reshape", [ctx.value(x)], {"shape": tuple(shape)}, out=out)
        return
    y = ctx.emit("Reshape", [ctx.float_in(x)], {"shape": tuple(shape)}, hint=ctx.names[out])
    ctx.set_float(out, y)


@converts("PAD", "PADV2")
def _pad(ctx: Context, op: TOperator) -> None:
    x, out = op.inputs[0], op.outputs[0]
    pads = ctx.const(op.inputs[1])
    xt = ctx.type_of(x)
    if pads is None or pads.shape != (xt.rank, 2):
        ctx.unsupported(op, f"paddings (tensor {op.inputs[1]}) must be a constant of shape "
                            f"({xt.rank}, 2)")
        return
    if op.opcode == "PADV2" and len(op.inputs) > 2:
        v = ctx.const(op.inputs[2])
        fill = None if v is None else float(np.asarray(v, np.float64).reshape(-1)[0])
        if ctx.is_int8(op.inputs[2]) and v is not None:
            fill = float(v.reshape(-1)[0]) - ctx.qparams(op.inputs[2])[1]
        if fill != 0.0:
            ctx.unsupported(op, "PADV2 is supported only with the constant value 0")
            return
    c = xt.shape[3] if xt.rank == 4 else None
    if xt.rank != 4 or c is None or np.any(pads[0] != 0) or np.any(pads[3] != 0):
        ctx.unsupported(op, f"padding {pads.tolist()} of {xt}: only height/width padding of "
                            "NHWC tensors with static channels is supported")
        return
    # zero padding = a 1x1 depthwise conv with unit weights and the pads (exact); a conv
    # reading the result folds the pads into its own instead, leaving this node dead
    ones = ctx.add_const(np.ones((1, 1, 1, c), np.float32), f"{ctx.names[out]}/unit")
    hw = (int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1]))
    attrs = {"groups": c, "pads": hw}
    same_q = ctx.is_int8(x) and ctx.is_int8(out) and ctx.qparams(x) == ctx.qparams(out)
    if same_q or not (ctx.is_int8(x) or ctx.is_int8(out)):
        ctx.padded[out] = (x, hw)
    if not ctx.is_int8(out):
        ctx.emit("Conv2D", [ctx.float_in(x), ones], attrs, out=out)
        return
    y = ctx.emit("Conv2D", [ctx.float_in(x), ones], attrs, hint=ctx.names[out])
    ctx.set_float(out, y)
