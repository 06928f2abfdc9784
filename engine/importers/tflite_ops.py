"""TF Lite builtin operators -> engine nodes: convolution, pooling, fully connected.

TF Lite layouts: activations NHWC (as the engine); CONV_2D weights OHWI, DEPTHWISE_CONV_2D
weights 1HW(C*M), FULLY_CONNECTED weights (O, I). SAME padding is computed as TF Lite does:
``out = ceil(in / stride)``, the total pad split with the odd pixel at the bottom / right.

Float ops map to Conv2D / Dense / pools; int8 conv, depthwise conv and fully connected map to
QConv2D / QDense (TF Lite's integer arithmetic); int8 pools run in float between Dequantize and
Quantize.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.importers.tflite_ctx import Context
from engine.importers.tflite_read import TOperator, enum_name

__all__ = ["CONVERTERS", "Converter", "converts", "quantized_range", "same_pads"]

Converter = Callable[[Context, TOperator], None]
CONVERTERS: dict[str, Converter] = {}


def converts(*opcodes: str) -> Callable[[Converter], Converter]:
    def deco(fn: Converter) -> Converter:
        for code in opcodes:
            CONVERTERS[code] = fn
        return fn

    return deco


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF Lite's SAME padding along one axis: (before, after)."""
    span = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _pads(ctx: Context, op: TOperator, x: int, kh: int, kw: int, sh: int, sw: int,
          dh: int = 1, dw: int = 1) -> tuple[int, int, int, int] | None:
    padding = enum_name("padding", op.options.get("Padding", 0))
    if padding == "VALID":
        return (0, 0, 0, 0)
    if padding != "SAME":
        ctx.unsupported(op, f"padding {padding} is not supported (expected SAME or VALID)")
        return None
    _, h, w, _ = ctx.type_of(x).shape
    if h is None or w is None:
        ctx.unsupported(op, "SAME padding needs a static input height and width")
        return None
    pt, pb = same_pads(h, kh, sh, dh)
    pl, pr = same_pads(w, kw, sw, dw)
    return (pt, pb, pl, pr)


def _rank4(ctx: Context, op: TOperator, i: int) -> bool:
    if ctx.type_of(i).rank != 4:
        ctx.unsupported(op, f"input tensor {i} must be NHWC (rank 4), got {ctx.type_of(i)}")
        return False
    return True


def _bias(ctx: Context, op: TOperator, n: int) -> np.ndarray | None:
    """The op's bias constant (zeros when omitted); None when it is not a constant."""
    i = op.inputs[2] if len(op.inputs) > 2 else -1
    if i < 0:
        return np.zeros(n, np.int32 if ctx.is_int8(op.inputs[0]) else np.float32)
    b = ctx.const(i)
    if b is None:
        ctx.unsupported(op, f"bias tensor {i} must be a constant")
    return b


@converts("CONV_2D", "DEPTHWISE_CONV_2D")
def _conv(ctx: Context, op: TOperator) -> None:
    x, wi = op.inputs[0], op.inputs[1]
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    o = op.options
    w = ctx.const(wi)
    act = ctx.fused(op, ("NONE", "RELU", "RELU6", "RELU_N1_TO_1") if ctx.is_int8(x) else
                    ("NONE", "RELU", "RELU6", "TANH", "RELU_N1_TO_1"))
    if o.get("QuantizedBiasType", 0) != 0:
        ctx.unsupported(op, "a non-default quantized bias type is not supported")
        return
    if w is None or w.ndim != 4:
        ctx.unsupported(op, f"weight tensor {wi} must be a rank-4 constant")
        return
    if not _rank4(ctx, op, x) or act is None:
        return
    c = ctx.type_of(x).shape[3]
    if depthwise:
        _, kh, kw, cm = w.shape
        if c is None or cm % c:
            ctx.unsupported(op, f"depthwise weight {w.shape} does not fit input channels {c}")
            return
        weight, groups = w.reshape(kh, kw, 1, cm), c
    else:
        cout, kh, kw, ci = w.shape
        if c is None or c % ci:
            ctx.unsupported(op, f"weight {w.shape} (OHWI) does not fit input channels {c}")
            return
        weight, groups = w.transpose(1, 2, 3, 0), c // ci
    strides = (int(o.get("StrideH", 1)), int(o.get("StrideW", 1)))
    dil = (int(o.get("DilationHFactor", 1)), int(o.get("DilationWFactor", 1)))
    pads = _pads(ctx, op, x, kh, kw, *strides, *dil)
    bias = _bias(ctx, op, weight.shape[3])
    if pads is None or bias is None:
        return
    if x in ctx.padded:  # read the PAD's input; its zeros (real 0 for int8) become conv pads
        x, extra = ctx.padded[x]
        pads = (pads[0] + extra[0], pads[1] + extra[1], pads[2] + extra[2], pads[3] + extra[3])
    geo = {"strides": strides, "dilations": dil, "pads": pads, "groups": groups}
    if ctx.is_int8(x):
        _qconv(ctx, op, x, weight, bias, geo, act, axis=3 if depthwise else 0)
        return
    if weight.dtype != np.float32 or ctx.type_of(x).dtype != "float32":
        ctx.unsupported(op, f"{ctx.type_of(x).dtype} input with {weight.dtype} weights is not "
                            "supported (float32, or int8 activations and weights)")
        return
    ins = [ctx.value(x), ctx.add_const(weight, f"{ctx.names[wi]}/hwio"),
           ctx.add_const(bias.astype(np.float32), f"{ctx.names[op.outputs[0]]}/bias")]
    if act == "relu_n1_to_1":
        y = ctx.emit("Conv2D", ins, geo, hint=ctx.names[op.outputs[0]])
        ctx.activation(y, act, op.outputs[0], "")
    else:
        ctx.emit("Conv2D", ins, {**geo, "activation": act}, out=op.outputs[0])


def _weight_qparams(ctx: Context, op: TOperator, wi: int, axis: int,
                    n: int) -> np.ndarray | None:
    """The weight's per-channel (or per-tensor) scales, checking TF Lite's int8 rules."""
    t = ctx.tensor(wi)
    if t.tflite_type != "INT8" or not t.quantized:
        ctx.unsupported(op, f"int8 activations need int8 weights; weight tensor {wi} is "
                            f"{t.tflite_type}")
        return None
    assert t.scale is not None and t.zero_point is not None
    if np.any(t.zero_point != 0):
        ctx.unsupported(op, f"weight tensor {wi} has nonzero zero points (TF Lite int8 weights "
                            "are symmetric)")
        return None
    if t.scale.size not in (1, n) or (t.scale.size > 1 and t.quantized_dimension != axis):
        ctx.unsupported(op, f"weight tensor {wi} is quantized along axis "
                            f"{t.quantized_dimension} with {t.scale.size} scales; expected "
                            f"{n} along axis {axis}, or one")
        return None
    return t.scale.astype(np.float32)


def _qio(ctx: Context, op: TOperator, x: int) -> dict[str, float | int] | None:
    y = op.outputs[0]
    if not ctx.is_int8(y):
        ctx.unsupported(op, f"int8 input with a {ctx.tensor(y).tflite_type} output is not "
                            "supported")
        return None
    xs, xz = ctx.qparams(x)
    ys, yz = ctx.qparams(y)
    return {"x_scale": xs, "x_zero_point": xz, "y_scale": ys, "y_zero_point": yz}


def _qconv(ctx: Context, op: TOperator, x: int, weight: np.ndarray, bias: np.ndarray,
           geo: dict[str, object], act: str, axis: int) -> None:
    scales = _weight_qparams(ctx, op, op.inputs[1], axis, weight.shape[3])
    qio = _qio(ctx, op, x)
    if scales is None or qio is None:
        return
    if bias.dtype != np.int32:
        ctx.unsupported(op, f"int8 conv needs an int32 bias, got {bias.dtype}")
        return
    out = op.outputs[0]
    ins = [ctx.value(x), ctx.add_const(weight, f"{ctx.names[op.inputs[1]]}/hwio"),
           ctx.add_const(scales, f"{ctx.names[op.inputs[1]]}/scale"),
           ctx.add_const(bias, f"{ctx.names[out]}/bias")]
    if act == "relu_n1_to_1":  # clamp in float: exact, the bounds quantize as TF Lite's do
        y = ctx.emit("QConv2D", ins, {**geo, **qio}, hint=ctx.names[out])
        ctx.set_float(out, ctx.emit("Dequantize", [y], {"scale": qio["y_scale"],
                                                        "zero_point": qio["y_zero_point"]},
                                    hint=ctx.names[out]), act)
        return
    ctx.emit("QConv2D", ins, {**geo, **qio, "activation": act}, out=out)


@converts("FULLY_CONNECTED")
def _fully_connected(ctx: Context, op: TOperator) -> None:
    x, wi = op.inputs[0], op.inputs[1]
    o = op.options
    q = ctx.is_int8(x)
    act = ctx.fused(op, ("NONE", "RELU", "RELU6", "RELU_N1_TO_1") if q else
                    ("NONE", "RELU", "RELU6", "TANH", "RELU_N1_TO_1"))
    w = ctx.const(wi)
    if o.get("WeightsFormat", 0) != 0:
        ctx.unsupported(op, "shuffled weights formats are not supported (DEFAULT only)")
        return
    if o.get("QuantizedBiasType", 0) != 0:
        ctx.unsupported(op, "a non-default quantized bias type is not supported")
        return
    if w is None or w.ndim != 2:
        ctx.unsupported(op, f"weight tensor {wi} must be a rank-2 constant (O, I)")
        return
    if act is None:
        return
    units, k = w.shape
    bias = _bias(ctx, op, units)
    if bias is None:
        return
    xt = ctx.type_of(x)
    xv = ctx.value(x)
    if xt.shape[-1] != k or not o.get("KeepNumDims", False):
        if xt.rank != 2 or xt.shape[-1] != k:  # TF Lite flattens to (-1, I)
            xv = ctx.emit("Reshape", [xv], {"shape": (-1, k)}, hint=f"{ctx.names[x]}/2d")
    out = op.outputs[0]
    if q:
        scales = _weight_qparams(ctx, op, wi, 0, units)
        qio = _qio(ctx, op, x)
        if scales is None or qio is None:
            return
        if bias.dtype != np.int32:
            ctx.unsupported(op, f"int8 fully connected needs an int32 bias, got {bias.dtype}")
            return
        ins = [xv, ctx.add_const(np.ascontiguousarray(w.T), f"{ctx.names[wi]}/kn"),
               ctx.add_const(scales, f"{ctx.names[wi]}/scale"),
               ctx.add_const(bias, f"{ctx.names[out]}/bias")]
        if act == "relu_n1_to_1":
            y = ctx.emit("QDense", ins, qio, hint=ctx.names[out])
            ctx.set_float(out, ctx.emit("Dequantize", [y], {"scale": qio["y_scale"],
                                                            "zero_point": qio["y_zero_point"]},
                                        hint=ctx.names[out]), act)
        else:
            ctx.emit("QDense", ins, {**qio, "activation": act}, out=out)
        return
    if w.dtype != np.float32 or xt.dtype != "float32":
        ctx.unsupported(op, f"{xt.dtype} input with {w.dtype} weights is not supported "
                            "(float32, or int8 activations and weights)")
        return
    ins = [xv, ctx.add_const(np.ascontiguousarray(w.T), f"{ctx.names[wi]}/kn"),
           ctx.add_const(bias.astype(np.float32), f"{ctx.names[out]}/bias")]
    if act == "relu_n1_to_1":
        ctx.activation(ctx.emit("Dense", ins, hint=ctx.names[out]), act, out, "")
    else:
        ctx.emit("Dense", ins, {"activation": act}, out=out)


@converts("MAX_POOL_2D", "AVERAGE_POOL_2D")
def _pool(ctx: Context, op: TOperator) -> None:
    x = op.inputs[0]
    o = op.options
    act = ctx.fused(op)
    if not _rank4(ctx, op, x) or act is None:
        return
    size = (int(o.get("FilterHeight", 1)), int(o.get("FilterWidth", 1)))
    strides = (int(o.get("StrideH", 1)), int(o.get("StrideW", 1)))
    pads = _pads(ctx, op, x, *size, *strides)
    if pads is None:
        return
    engine_op = "MaxPool2D" if op.opcode == "MAX_POOL_2D" else "AvgPool2D"
    # TF Lite's average pool divides by the number of elements inside the image
    attrs = {"pool_size": size, "strides": strides, "pads": pads, "count_include_pad": False}
    out = op.outputs[0]
    if (ctx.is_int8(x) and ctx.is_int8(out) and ctx.qparams(x) == ctx.qparams(out)
            and act in ("linear", "relu", "relu6", "relu_n1_to_1")
            and (engine_op == "MaxPool2D" or size[0] * size[1] <= _EXACT_AVG_MAX)):
        # TF Lite pools the raw int8 values (average rounded half away from zero); on exact
        # float copies of them the engine's pool and Quantize(scale 1) round the same way
        q = ctx.emit("Cast", [ctx.value(x)], {"to": "float32"}, hint=f"{ctx.names[x]}/q")
        y = ctx.emit(engine_op, [q], attrs, hint=ctx.names[out])
        if act != "linear":
            lo, hi = quantized_range(act, *ctx.qparams(out))
            y = ctx.emit("Clip", [y], {"min": float(lo), "max": float(hi)}, hint=ctx.names[out])
        ctx.emit("Quantize", [y], {"scale": 1.0, "zero_point": 0}, out=out)
        return
    y = ctx.emit(engine_op, [ctx.float_in(x)], attrs, hint=ctx.names[out])
    ctx.set_float(out, y, act)


# Up to this many taps, sum * float32(1 / count) rounds half away from zero exactly as TF
# Lite's integer (sum +- count / 2) / count does (checked for every int8 sum; 82 is the first
# window size where a tie lands one float32 step off).
_EXACT_AVG_MAX = 81


def quantized_range(act: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TF Lite's CalculateActivationRangeQuantized for int8 outputs."""
    def q(v: float) -> int:
        r = float(np.float32(v) / np.float32(scale))
        return zero_point + int(np.sign(r) * np.floor(abs(r) + 0.5))

    lo, hi = -128, 127
    if act in ("relu", "relu6"):
        lo = max(lo, q(0.0))
    if act == "relu6":
        hi = min(hi, q(6.0))
    if act == "relu_n1_to_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi
