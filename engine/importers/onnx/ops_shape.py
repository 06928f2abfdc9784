"""Converters: shape and data-movement ops (Shape, Reshape, Slice, Gather, GatherElements,
Concat, ...).

Parameters given as tensors (Reshape's shape, Slice's starts/ends, Unsqueeze's axes...) are
used as attributes when they are constant at import; otherwise the tensor forms
(DynamicReshape, DynamicSlice, Expand...) stay in the graph and ``specialize`` resolves them.
"""

from __future__ import annotations

import numpy as np

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []


def _ints(value: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


@converts("Shape", since=1)
def _shape(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"start": None, "end": None}):
        ctx.emit("Shape", node.inputs, {"start": node.attr("start", 0),
                                        "end": node.attr("end")}, outputs=node.outputs)


@converts("Size", since=1)
def _size(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    shape = ctx.emit1("Shape", node.inputs, hint=node.name)
    ctx.emit("ReduceProd", [shape], {"axes": None, "keepdims": False}, outputs=node.outputs)


@converts("Reshape", since=5)
def _reshape(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"allowzero": (0, 1)}):
        return
    x, shape = node.inputs
    allowzero = node.attr("allowzero", 0)
    target = ctx.const_value(shape)
    if target is not None and not (allowzero and 0 in _ints(target)):
        ctx.emit("Reshape", [x], {"shape": _ints(target)}, outputs=node.outputs)
        return
    ctx.emit("DynamicReshape", [x, shape], {"allowzero": allowzero}, outputs=node.outputs)


@converts("Flatten", since=1)
def _flatten(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"axis": None}):
        axis = node.attr("axis", 1)
        if axis < 0:  # ONNX counts from the back (-1: the last axis); the engine op inserts
            axis += ctx.type_of(node.inputs[0]).rank
        ctx.emit("Flatten", node.inputs, {"axis": axis}, outputs=node.outputs)


@converts("Transpose", since=1)
def _transpose(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"perm": None}):
        perm = node.attr("perm")
        ctx.emit("Transpose", node.inputs, {"perm": None if perm is None else tuple(perm)},
                 outputs=node.outputs)


@converts("Concat", since=4)
def _concat(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"axis": None}):
        ctx.emit("Concat", node.inputs, {"axis": node.attr("axis")}, outputs=node.outputs)


@converts("Gather", since=1)
def _gather(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"axis": None}):
        ctx.emit("Gather", node.inputs, {"axis": node.attr("axis", 0)}, outputs=node.outputs)


@converts("GatherElements", since=11)
def _gather_elements(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {"axis": None}):
        ctx.emit("GatherElements", node.inputs, {"axis": node.attr("axis", 0)},
                 outputs=node.outputs)


def _axes(ctx: Context, node: OnnxNode) -> list[int] | None:
    """Axes from the attribute (< opset 13) or the constant second input (>= 13)."""
    if node.has_attr("axes"):
        return [int(a) for a in node.attr("axes")]
    if not node.input(1):
        return None
    value = ctx.require_const(node, 1, "axes")
    return None if value is None else _ints(value)


@converts("Unsqueeze", since=1)
def _unsqueeze(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axes": None}):
        return
    axes = _axes(ctx, node)
    if axes is None:
        if not node.input(1) and not node.has_attr("axes"):
            ctx.unsupported(node, "Unsqueeze needs axes")
        return
    ctx.emit("Unsqueeze", node.inputs[:1], {"axes": axes}, outputs=node.outputs)


@converts("Squeeze", since=1)
def _squeeze(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axes": None}):
        return
    axes = _axes(ctx, node)
    if axes is None:
        if node.input(1):
            return  # a non-constant axes input was reported
        shape = ctx.type_of(node.inputs[0]).shape
        if any(d is None for d in shape):
            ctx.unsupported(node, "Squeeze without axes on an input with dynamic dims")
            return
        axes = [i for i, d in enumerate(shape) if d == 1]
    ctx.emit("Squeeze", node.inputs[:1], {"axes": axes}, outputs=node.outputs)


@converts("Slice", since=10)
def _slice(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {}):
        return
    params = [node.input(i) for i in range(1, 5)]
    values = [ctx.const_value(p) if p else None for p in params]
    if all(v is not None for v, p in zip(values, params, strict=True) if p):
        starts, ends, axes, steps = (None if v is None else _ints(v) for v in values)
        ctx.emit("Slice", node.inputs[:1], {"starts": starts, "ends": ends, "axes": axes,
                                            "steps": steps}, outputs=node.outputs)
        return
    ins = list(node.inputs[:3])
    if params[2] or params[3]:
        n = ctx.type_of(params[0]).shape[0]
        if not params[2]:  # steps given without axes: axes are 0..n-1
            if n is None:
                ctx.unsupported(node, "Slice starts of dynamic length without axes")
                return
            ins.append(ctx.add_const(np.arange(n, dtype=np.int64), "axes"))
        else:
            ins.append(params[2])
        if params[3]:
            ins.append(params[3])
    ctx.emit("DynamicSlice", ins, outputs=node.outputs)


@converts("Split", since=13)
def _split(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"axis": None, "num_outputs": None, "split": None}):
        return
    x = node.inputs[0]
    t = ctx.type_of(x)
    axis = node.attr("axis", 0) % t.rank
    n_out = len(node.outputs)
    if node.input(1):
        sizes_v = ctx.require_const(node, 1, "split")
        if sizes_v is None:
            return
        sizes = _ints(sizes_v)
    elif node.has_attr("split"):
        sizes = [int(s) for s in node.attr("split")]
    else:
        d = t.shape[axis]
        if d is None:
            ctx.unsupported(node, "Split of a dynamic axis into equal parts")
            return
        # opset 18: the last chunk may be smaller (ceil-sized chunks)
        chunk = -(-d // n_out)
        sizes = [min(chunk, d - i * chunk) for i in range(n_out)]
    start = 0
    for out, size in zip(node.outputs, sizes, strict=True):
        ctx.emit("Slice", [x], {"starts": [start], "ends": [start + size], "axes": [axis]},
                 outputs=[out])
        start += size


@converts("Expand", since=8)
def _expand(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {}):
        ctx.emit("Expand", node.inputs, outputs=node.outputs)


@converts("Tile", since=6)
def _tile(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {}):
        ctx.emit("Tile", node.inputs, outputs=node.outputs)


@converts("Range", since=11)
def _range(ctx: Context, node: OnnxNode) -> None:
    if ctx.check_attrs(node, {}):
        ctx.emit("Range", node.inputs, outputs=node.outputs)


@converts("ConstantOfShape", since=9)
def _const_of_shape(ctx: Context, node: OnnxNode) -> None:
    if not ctx.check_attrs(node, {"value": None}):
        return
    value = node.attr("value")
    arr = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if arr.dtype.kind not in "biuf":
        ctx.unsupported(node, f"ConstantOfShape value of dtype {arr.dtype}")
        return
    ctx.emit("ConstantOfShape", node.inputs, {"value": arr[0].item(), "dtype": arr.dtype.name},
             outputs=node.outputs)


@converts("Constant", since=1)
def _constant(ctx: Context, node: OnnxNode) -> None:
    kinds = {"value": None, "value_float": None, "value_floats": None, "value_int": None,
             "value_ints": None}
    if not ctx.check_attrs(node, kinds):
        return
    if node.has_attr("value"):
        arr = np.asarray(node.attr("value"))
    elif node.has_attr("value_float"):
        arr = np.asarray(node.attr("value_float"), np.float32)
    elif node.has_attr("value_floats"):
        arr = np.asarray(node.attr("value_floats"), np.float32)
    elif node.has_attr("value_int"):
        arr = np.asarray(node.attr("value_int"), np.int64)
    elif node.has_attr("value_ints"):
        arr = np.asarray(node.attr("value_ints"), np.int64)
    else:
        ctx.unsupported(node, "Constant without a value")
        return
    if arr.dtype.kind not in "biuf":
        ctx.unsupported(node, f"Constant of dtype {arr.dtype}")
        return
    ctx.add_const(arr, name=node.outputs[0])
