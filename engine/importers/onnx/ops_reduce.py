"""Converters: reductions (axes as attribute or constant input) and LayerNormalization."""

from __future__ import annotations

import numpy as np

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []

_ENGINE = {"ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum", "ReduceMax": "ReduceMax",
           "ReduceMin": "ReduceMin", "ReduceProd": "ReduceProd",
           "ReduceSumSquare": "ReduceSum", "ReduceL1": "ReduceSum", "ReduceL2": "ReduceSum",
           "ReduceLogSum": "ReduceSum", "ReduceLogSumExp": "ReduceSum"}


@converts(*_ENGINE, since=1)
def _reduce(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axes": None, "keepdims": (0, 1),
                                  "noop_with_empty_axes": (0, 1)}):
        return
    x = node.inputs[0]
    if node.has_attr("axes"):
        axes: list[int] | None = [int(a) for a in node.attr("axes")]
    elif node.input(1):
        value = ctx.require_const(node, 1, "axes")
        if value is None:
            return
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = None
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            ctx.emit("Identity", [x], outputs=node.outputs)
            return
        axes = None
    op = node.op_type
    if op in ("ReduceSumSquare", "ReduceL2"):
        x = ctx.emit1("Mul", [x, x], hint=node.name)
    elif op == "ReduceL1":
        x = ctx.emit1("Abs", [x], hint=node.name)
    elif op == "ReduceLogSumExp":
        # log(sum(exp(x - m))) + m with m the max over the same axes: no overflow
        m = ctx.emit1("ReduceMax", [x], {"axes": axes, "keepdims": True}, hint=node.name)
        x = ctx.emit1("Exp", [ctx.emit1("Sub", [x, m], hint=node.name)], hint=node.name)
    attrs = {"axes": axes, "keepdims": bool(node.attr("keepdims", 1))}
    post = op in ("ReduceL2", "ReduceLogSum", "ReduceLogSumExp")
    y = ctx.emit1(_ENGINE[op], [x], attrs, output=None if post else node.outputs[0],
                  hint=node.name)
    if op == "ReduceL2":
        ctx.emit("Sqrt", [y], outputs=node.outputs)
    elif op == "ReduceLogSum":
        ctx.emit("Log", [y], outputs=node.outputs)
    elif op == "ReduceLogSumExp":
        log = ctx.emit1("Log", [y], hint=node.name)
        if not attrs["keepdims"]:
            m = ctx.emit1("Squeeze", [m], {"axes": axes if axes is not None else
                                           list(range(ctx.type_of(m).rank))}, hint=node.name)
        ctx.emit("Add", [log, m], outputs=node.outputs)


@converts("LayerNormalization", since=17)
def _layer_norm(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axis": None, "epsilon": None, "stash_type": (1,)}):
        return
    x, scale = node.inputs[0], node.inputs[1]
    t = ctx.type_of(x)
    axis = node.attr("axis", -1) % t.rank
    eps = node.attr("epsilon", 1e-5)
    if any(node.outputs[1:]):
        _layer_norm_stats(ctx, node, x, axis, eps)
    norm_shape = t.shape[axis:]
    ins = [x]
    for name in (scale, node.input(2)):
        if not name:
            continue
        value = ctx.const_value(name)
        if value is not None and value.shape != norm_shape and \
                all(d is not None for d in norm_shape):
            # a broadcastable parameter: the engine op wants one value per normalized element
            full = np.broadcast_to(value, tuple(int(d) for d in norm_shape if d is not None))
            name = ctx.add_const(np.ascontiguousarray(full), "ln_param")
        ins.append(name)
    ctx.emit("LayerNorm", ins, {"axis": axis, "epsilon": eps}, outputs=node.outputs[:1])


def _layer_norm_stats(ctx: Context, node: OnnxNode, x: str, axis: int, eps: float) -> None:
    """The optional Mean and InvStdDev outputs (reduced axes kept as 1), from engine ops."""
    axes = list(range(axis, ctx.type_of(x).rank))
    red = {"axes": axes, "keepdims": True}
    dtype = ctx.type_of(x).dtype
    mean_out = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1] else None
    mean = ctx.emit1("ReduceMean", [x], red, output=mean_out, hint=node.name)
    if len(node.outputs) > 2 and node.outputs[2]:
        d = ctx.emit1("Sub", [x, mean], hint=node.name)
        var = ctx.emit1("ReduceMean", [ctx.emit1("Mul", [d, d], hint=node.name)], red,
                        hint=node.name)
        var = ctx.emit1("Add", [var, ctx.add_const(np.asarray(eps, dtype), "eps")],
                        hint=node.name)
        ctx.emit("Reciprocal", [ctx.emit1("Sqrt", [var], hint=node.name)],
                 outputs=node.outputs[2:3])
