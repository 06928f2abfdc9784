"""TF Lite builtin operators -> engine nodes: elementwise, activations, softmax, reductions,
concatenation and the QUANTIZE / DEQUANTIZE boundaries.

These run in float; on int8 tensors they sit between Dequantize and Quantize (TF Lite's integer
kernels round differently, so results agree within one quantization step).
"""

from __future__ import annotations

import numpy as np

from engine.importers.tflite_ctx import Context, dequantize_array
from engine.importers.tflite_ops import converts
from engine.importers.tflite_read import TOperator

__all__: list[str] = []

_BINARY = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul"}
_UNARY = {"RELU": "relu", "RELU6": "relu6", "TANH": "tanh", "RELU_N1_TO_1": "relu_n1_to_1"}


@converts("ADD", "SUB", "MUL")
def _binary(ctx: Context, op: TOperator) -> None:
    act = ctx.fused(op)
    if act is None:
        return
    a, b = (ctx.float_in(i) for i in op.inputs[:2])
    y = ctx.emit(_BINARY[op.opcode], [a, b], hint=ctx.names[op.outputs[0]])
    ctx.set_float(op.outputs[0], y, act)


@converts("RELU", "RELU6", "TANH", "RELU_N1_TO_1", "LOGISTIC")
def _unary(ctx: Context, op: TOperator) -> None:
    x = ctx.float_in(op.inputs[0])
    if op.opcode == "LOGISTIC":
        y = ctx.emit("Sigmoid", [x], hint=ctx.names[op.outputs[0]])
        ctx.set_float(op.outputs[0], y)
        return
    if not ctx.is_int8(op.outputs[0]):
        ctx.activation(x, _UNARY[op.opcode], op.outputs[0], "")
        return
    ctx.set_float(op.outputs[0], x, _UNARY[op.opcode])


@converts("SOFTMAX")
def _softmax(ctx: Context, op: TOperator) -> None:
    x = ctx.float_in(op.inputs[0])
    beta = float(op.options.get("Beta", 1.0))
    if beta != 1.0:
        b = ctx.add_const(np.array(beta, np.float32), f"{ctx.names[op.outputs[0]]}/beta")
        x = ctx.emit("Mul", [x, b], hint=f"{ctx.names[op.outputs[0]]}/scaled")
    ctx.set_float(op.outputs[0], ctx.emit("Softmax", [x], {"axis": -1},
                                          hint=ctx.names[op.outputs[0]]))


@converts("MEAN", "SUM", "REDUCE_MAX")
def _reduce(ctx: Context, op: TOperator) -> None:
    axes = ctx.known(op.inputs[1])
    if axes is None or any(a is None for a in axes.flat):
        ctx.unsupported(op, f"the axes (tensor {op.inputs[1]}) must be a constant")
        return
    engine_op = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax"}[op.opcode]
    attrs = {"axes": tuple(int(a) for a in axes.flat),
             "keepdims": bool(op.options.get("KeepDims", False))}
    y = ctx.emit(engine_op, [ctx.float_in(op.inputs[0])], attrs, hint=ctx.names[op.outputs[0]])
    ctx.set_float(op.outputs[0], y)


@converts("CONCATENATION")
def _concat(ctx: Context, op: TOperator) -> None:
    act = ctx.fused(op)
    if act is None:
        return
    axis = int(op.options.get("Axis", 0))
    vals = [ctx.known(i) for i in op.inputs]
    if all(v is not None for v in vals):  # shape arithmetic, folded at import
        ctx.set_known(op.outputs[0], np.concatenate(vals, axis=axis))  # type: ignore[arg-type]
        return
    out = op.outputs[0]
    params = {ctx.qparams(i) if ctx.is_int8(i) else None for i in (*op.inputs, out)}
    if act == "linear" and ctx.is_int8(out) and len(params) == 1:
        # one scale and zero point everywhere: concatenating the int8 values is exact
        ctx.emit("Concat", [ctx.value(i) for i in op.inputs], {"axis": axis}, out=out)
        return
    y = ctx.emit("Concat", [ctx.float_in(i) for i in op.inputs], {"axis": axis},
                 hint=ctx.names[out])
    ctx.set_float(out, y, act)


@converts("QUANTIZE")
def _quantize(ctx: Context, op: TOperator) -> None:
    x, y = op.inputs[0], op.outputs[0]
    if not ctx.is_int8(y):
        ctx.unsupported(op, f"quantizing to {ctx.tensor(y).tflite_type} is not supported "
                            "(int8 only)")
        return
    if ctx.tensor(x).tflite_type not in ("FLOAT32", "INT8"):
        ctx.unsupported(op, f"quantizing from {ctx.tensor(x).tflite_type} is not supported")
        return
    # float -> int8, or an int8 requantization (done through float)
    ctx.set_float(y, ctx.float_in(x))


@converts("DEQUANTIZE")
def _dequantize(ctx: Context, op: TOperator) -> None:
    x, y = op.inputs[0], op.outputs[0]
    t = ctx.tensor(x)
    c = ctx.const(x)
    if c is not None:  # float16 or int8 weights stored narrow: widen once, at import
        if t.tflite_type == "FLOAT16":
            ctx.set_const(y, c.astype(np.float32))
            return
        if t.quantized and t.tflite_type in ("INT8", "UINT8", "INT16"):
            assert t.scale is not None and t.zero_point is not None
            ctx.set_const(y, dequantize_array(c, t.scale, t.zero_point, t.quantized_dimension))
            return
    if not ctx.is_int8(x) or ctx.tensor(y).tflite_type != "FLOAT32":
        ctx.unsupported(op, f"dequantizing {t.tflite_type} is not supported (int8 per tensor "
                            "at run time, or constant float16/int8)")
        return
    scale, zp = ctx.qparams(x)
    ctx.emit("Dequantize", [ctx.value(x)], {"scale": scale, "zero_point": zp}, out=y)
