"""Converters: Pad, ArgMax and ArgMin.

Pad's pads must be known when a plan is built: a constant at import, or computed from input
shapes (``engine.passes.specialize`` folds them per set of input shapes). Its axes input
(opset 18) must be a constant; constant_value may be computed at run time.
"""

from __future__ import annotations

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


@converts("Pad", since=13)
def _pad(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"mode": _PAD_MODES}):
        return
    x, pads = node.inputs[0], node.input(1)
    attrs: dict[str, object] = {"mode": node.attr("mode", "constant")}
    if node.input(3):
        axes = ctx.require_const(node, 3, "axes")
        if axes is None:
            return
        attrs["axes"] = [int(a) for a in axes.reshape(-1)]
    if ctx.const_value(pads) is None and not any(n.op == "Shape" for n in ctx.nodes):
        # with no Shape in the graph the pads cannot follow the input shapes: they would be
        # values known only at run time, which the engine's static plans cannot size
        ctx.unsupported(node, "pads (input 1) must be a constant or computed from input "
                              "shapes")
        return
    ins = [x, pads] + ([node.input(2)] if node.input(2) else [])
    ctx.emit("Pad", ins, attrs, outputs=node.outputs)


@converts("ArgMax", "ArgMin", since=11)
def _arg(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axis": None, "keepdims": (0, 1),
                                  "select_last_index": (0, 1)}):
        return
    ctx.emit(node.op_type, node.inputs[:1],
             {"axis": node.attr("axis", 0), "keepdims": bool(node.attr("keepdims", 1)),
              "select_last_index": bool(node.attr("select_last_index", 0))},
             outputs=node.outputs)
