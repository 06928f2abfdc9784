"""Converters: elementwise math, comparisons, activations, Softmax, Gemm and MatMul."""

from __future__ import annotations

import numpy as np

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []

_SAME = {
    "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow",
    "Equal": "Equal", "Less": "Less", "Greater": "Greater", "LessOrEqual": "LessEqual",
    "GreaterOrEqual": "GreaterEqual", "And": "And", "Or": "Or", "Xor": "Xor",
    "Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log",
    "Sqrt": "Sqrt", "Erf": "Erf", "Neg": "Neg", "Abs": "Abs", "Reciprocal": "Reciprocal",
    "Floor": "Floor", "Ceil": "Ceil", "Identity": "Identity", "Not": "Not", "Where": "Where",
    "IsNaN": "IsNaN", "Sin": "Sin", "Cos": "Cos", "Sign": "Sign",
}


def _scalar(ctx: Context, value: float, like: str) -> str:
    return ctx.add_const(np.asarray(value, dtype=ctx.type_of(like).dtype), "scalar")


@converts(*_SAME, since=1)
def _direct(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    ctx.emit(_SAME[node.op_type], node.inputs, outputs=node.outputs[:1], hint=node.name)


@converts("Mod", since=10)
def _mod(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"fmod": (0, 1)}):
        ctx.emit("Mod", node.inputs, {"fmod": node.attr("fmod", 0)}, outputs=node.outputs)


@converts("IsInf", since=10)
def _isinf(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"detect_negative": (0, 1), "detect_positive": (0, 1)}):
        ctx.emit("IsInf", node.inputs, {"detect_negative": node.attr("detect_negative", 1),
                                        "detect_positive": node.attr("detect_positive", 1)},
                 outputs=node.outputs)


@converts("Max", "Min", "Sum", "Mean", since=8)
def _variadic(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    op = {"Max": "Maximum", "Min": "Minimum", "Sum": "Add", "Mean": "Add"}[node.op_type]
    acc = node.inputs[0]
    last = len(node.inputs) - 1
    for i, other in enumerate(node.inputs[1:], 1):
        out = node.outputs[0] if i == last and node.op_type != "Mean" else None
        acc = ctx.emit1(op, [acc, other], output=out, hint=node.name)
    if node.op_type == "Mean" and last > 0:
        ctx.emit("Div", [acc, _scalar(ctx, len(node.inputs), acc)], outputs=node.outputs)
    elif last == 0:
        ctx.emit("Identity", [acc], outputs=node.outputs)


@converts("LeakyRelu", since=6)
def _leaky(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"alpha": None}):
        ctx.emit("LeakyRelu", node.inputs, {"alpha": node.attr("alpha", 0.01)},
                 outputs=node.outputs)


@converts("Gelu", since=20)
def _gelu(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"approximate": ("none", "tanh")}):
        ctx.emit("Gelu", node.inputs, {"approximate": node.attr("approximate", "none")},
                 outputs=node.outputs)


@converts("Elu", "Selu", "Celu", since=6)
def _elu_family(ctx: Context, node: OnnxNode) -> None:
    """Where(x > 0, scale*x, scale*alpha*(exp(x/a) - 1)): composed from engine ops."""
    if not ctx.check_attrs(node, {"alpha": None, "gamma": None}):
        return
    x = node.inputs[0]
    alpha = node.attr("alpha", {"Elu": 1.0, "Selu": 1.67326319217681884765625,
                                "Celu": 1.0}[node.op_type])
    scale = node.attr("gamma", 1.05070102214813232421875) if node.op_type == "Selu" else 1.0
    inner = x
    if node.op_type == "Celu":
        inner = ctx.emit1("Div", [x, _scalar(ctx, alpha, x)], hint=node.name)
    em1 = ctx.emit1("Sub", [ctx.emit1("Exp", [inner], hint=node.name), _scalar(ctx, 1.0, x)],
                    hint=node.name)
    neg = ctx.emit1("Mul", [em1, _scalar(ctx, scale * alpha, x)], hint=node.name)
    pos = x if scale == 1.0 else ctx.emit1("Mul", [x, _scalar(ctx, scale, x)], hint=node.name)
    cond = ctx.emit1("Greater", [x, _scalar(ctx, 0.0, x)], hint=node.name)
    ctx.emit("Where", [cond, pos, neg], outputs=node.outputs)


@converts("HardSigmoid", "HardSwish", since=6)
def _hard(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"alpha": None, "beta": None}):
        return
    x = node.inputs[0]
    swish = node.op_type == "HardSwish"
    alpha = 1.0 / 6 if swish else node.attr("alpha", 0.2)
    beta = 0.5 if swish else node.attr("beta", 0.5)
    lin = ctx.emit1("Add", [ctx.emit1("Mul", [x, _scalar(ctx, alpha, x)], hint=node.name),
                            _scalar(ctx, beta, x)], hint=node.name)
    if not swish:
        ctx.emit("Clip", [lin], {"min": 0.0, "max": 1.0}, outputs=node.outputs)
        return
    hs = ctx.emit1("Clip", [lin], {"min": 0.0, "max": 1.0}, hint=node.name)
    ctx.emit("Mul", [x, hs], outputs=node.outputs)


@converts("Softplus", "Softsign", since=1)
def _soft(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    x = node.inputs[0]
    one = _scalar(ctx, 1.0, x)
    if node.op_type == "Softsign":
        den = ctx.emit1("Add", [ctx.emit1("Abs", [x], hint=node.name), one], hint=node.name)
        ctx.emit("Div", [x, den], outputs=node.outputs)
        return
    # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow for large x
    t = ctx.emit1("Exp", [ctx.emit1("Neg", [ctx.emit1("Abs", [x], hint=node.name)],
                                    hint=node.name)], hint=node.name)
    lg = ctx.emit1("Log", [ctx.emit1("Add", [t, one], hint=node.name)], hint=node.name)
    ctx.emit("Add", [ctx.emit1("Relu", [x], hint=node.name), lg], outputs=node.outputs)


@converts("PRelu", since=9)
def _prelu(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    x, slope = node.inputs
    neg = ctx.emit1("Mul", [x, slope], hint=node.name)
    cond = ctx.emit1("Greater", [x, _scalar(ctx, 0.0, x)], hint=node.name)
    ctx.emit("Where", [cond, x, neg], outputs=node.outputs)


@converts("Clip", since=11)
def _clip(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    x = node.inputs[0]
    bounds: list[float | None] = [None, None]
    dynamic: list[tuple[str, str]] = []
    for i, op in ((1, "Maximum"), (2, "Minimum")):
        name = node.input(i)
        if not name:
            continue
        value = ctx.const_value(name)
        if value is None:
            dynamic.append((op, name))
        else:
            bounds[i - 1] = float(np.asarray(value).reshape(-1)[0])
    if not dynamic:
        ctx.emit("Clip", [x], {"min": bounds[0], "max": bounds[1]}, outputs=node.outputs)
        return
    if bounds != [None, None]:
        x = ctx.emit1("Clip", [x], {"min": bounds[0], "max": bounds[1]}, hint=node.name)
    for k, (op, name) in enumerate(dynamic):
        out = node.outputs[0] if k == len(dynamic) - 1 else None
        x = ctx.emit1(op, [x, name], output=out, hint=node.name)


@converts("Dropout", since=12)
def _dropout(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"seed": None}):
        return
    training = ctx.const_value(node.input(2)) if node.input(2) else np.asarray(False)
    if training is None or bool(np.asarray(training).reshape(-1)[0]):
        ctx.unsupported(node, "training_mode must be a constant false (inference only)")
        return
    ctx.emit("Identity", node.inputs[:1], outputs=node.outputs[:1])
    if len(node.outputs) > 1 and node.outputs[1]:
        shape = ctx.emit1("Shape", node.inputs[:1], hint=node.name)
        ctx.emit("ConstantOfShape", [shape], {"value": True, "dtype": "bool"},
                 outputs=node.outputs[1:2])


@converts("Cast", since=6)
def _cast(ctx: Context, node: OnnxNode) -> None:
    from engine.importers.onnx import _np_dtype

    if not ctx.check_attrs(node, {"to": None, "saturate": (1,)}):
        return
    to = _np_dtype(node.attr("to"))
    if to is None:
        ctx.unsupported(node, f"Cast to ONNX type {node.attr('to')} is not supported")
        return
    ctx.emit("Cast", node.inputs, {"to": to}, outputs=node.outputs)


@converts("CastLike", since=15)
def _cast_like(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"saturate": (1,)}):
        to = ctx.type_of(node.inputs[1]).dtype
        ctx.emit("Cast", node.inputs[:1], {"to": to}, outputs=node.outputs)


@converts("Softmax", "LogSoftmax", since=1)
def _softmax(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axis": None}):
        return
    op = node.op_type
    x = node.inputs[0]
    rank = ctx.type_of(x).rank
    if ctx.opset >= 13:
        ctx.emit(op, [x], {"axis": node.attr("axis", -1)}, outputs=node.outputs)
        return
    # opset < 13: softmax over the input coerced to 2-D at `axis`, i.e. over all later axes
    axis = node.attr("axis", 1) % max(rank, 1)
    flat = ctx.emit1("Flatten", [x], {"axis": axis}, hint=node.name)
    soft = ctx.emit1(op, [flat], {"axis": 1}, hint=node.name)
    shape = ctx.emit1("Shape", [x], hint=node.name)
    ctx.emit("DynamicReshape", [soft, shape], outputs=node.outputs)


@converts("MatMul", since=1)
def _matmul(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    a, b = node.inputs
    w = ctx.const_value(b)
    if w is not None and w.ndim == 2 and w.dtype == np.float32 and ctx.type_of(a).rank >= 2 \
            and ctx.type_of(a).dtype == "float32":
        ctx.emit("Dense", [a, b], outputs=node.outputs)  # one GEMM; bias/activation fuse later
        return
    ctx.emit("MatMul", [a, b], outputs=node.outputs)


@converts("Gemm", since=11)
def _gemm(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"alpha": None, "beta": None, "transA": (0, 1),
                                  "transB": (0, 1)}):
        return
    a, b = node.inputs[0], node.inputs[1]
    c = node.input(2)
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if node.attr("transA", 0):
        a = ctx.emit1("Transpose", [a], {"perm": (1, 0)}, hint=node.name)
    w = ctx.const_value(b)
    if w is not None:  # fold transB and alpha into the weight
        w = w.T if node.attr("transB", 0) else w
        b = ctx.add_const(np.ascontiguousarray(w * np.asarray(alpha, w.dtype))
                          if alpha != 1.0 else w, f"{node.name}_w")
        alpha = 1.0
    elif node.attr("transB", 0):
        b = ctx.emit1("Transpose", [b], {"perm": (1, 0)}, hint=node.name)
    n = ctx.type_of(b).shape[1]
    cv = ctx.const_value(c) if c else None
    dense_ok = ctx.type_of(a).dtype == "float32" and ctx.type_of(b).dtype == "float32"
    if dense_ok and (not c or (cv is not None and n is not None and cv.size in (1, n)
                               and (cv.ndim < 2 or cv.shape[0] == 1))):
        ins = [a, b]
        if cv is not None:
            scaled = cv.reshape(-1) * np.float32(beta)
            bias = np.broadcast_to(scaled, (int(n or 0),)).astype(np.float32)
            ins.append(ctx.add_const(bias, f"{node.name}_b"))
        if alpha == 1.0:
            ctx.emit("Dense", ins, outputs=node.outputs)
            return
        y = ctx.emit1("MatMul", [a, b], hint=node.name)
        y = ctx.emit1("Mul", [y, _scalar(ctx, alpha, y)], hint=node.name)
        if len(ins) == 3:
            y = ctx.emit1("Add", [y, ins[2]], hint=node.name)
        ctx.emit("Identity", [y], outputs=node.outputs)
        return
    y = ctx.emit1("MatMul", [a, b], hint=node.name)
    if alpha != 1.0:
        y = ctx.emit1("Mul", [y, _scalar(ctx, alpha, y)], hint=node.name)
    if c:
        if beta != 1.0:
            c = ctx.emit1("Mul", [c, _scalar(ctx, beta, c)], hint=node.name)
        y = ctx.emit1("Add", [y, c], hint=node.name)
    ctx.emit("Identity", [y], outputs=node.outputs)
