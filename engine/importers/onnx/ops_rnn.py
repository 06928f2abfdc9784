"""ONNX converters for recurrent ops: LSTM and GRU, onto the engine's LSTMSeq and GRUSeq.

The engine ops are batch-major (N, T, F), one direction each, with Keras weight layouts:
kernel (F, gates*U), recurrent (U, gates*U). ONNX packs directions first: W (D, gates*U, F),
R (D, gates*U, U), B (D, 2*gates*U) = input and recurrent biases, X (T, N, F) (layout 0) or
(N, T, F) (layout 1). LSTM gates come i, o, f, c in ONNX and i, f, c, o in the engine (the
two LSTM biases are summed); GRU gates are z, r, h in both; a plain RNN runs as a GRU with
saturated gates (see ``_rnn``). A bidirectional op becomes one
engine op per direction, their outputs stacked on ONNX's direction axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import OnnxNode, converts

__all__: list[str] = []

_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
_LSTM_TO_KERAS = (0, 2, 3, 1)  # ONNX gate blocks i, o, f, c -> i, f, c, o
_DEFAULT_ACTS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"),
                 "RNN": ("tanh",)}
# A plain RNN runs as a GRU whose update gate is shut and reset gate open: pre-activations of
# -/+ _SATURATE give z = 0 and r = 1 exactly (the GRU kernel's float32 sigmoid saturates), so
# h = (1 - z) * tanh(x W + b + r * (h R + b')) + z * h is the RNN step.
_SATURATE = 1e4
_COMMON_ATTRS = {"activation_alpha": None, "activation_beta": None, "activations": None,
                 "clip": None, "direction": tuple(_DIRECTIONS), "hidden_size": None,
                 "layout": (0, 1)}


def _check(ctx: Context, node: OnnxNode, extra: dict[str, object]) -> bool:
    ok = ctx.check_attrs(node, {**_COMMON_ATTRS, **extra})  # type: ignore[dict-item]
    if node.has_attr("clip"):
        ctx.unsupported(node, "attribute 'clip' (cell clipping) is not supported")
        ok = False
    d = _DIRECTIONS.get(node.attr("direction", "forward"), 1)
    acts = node.attr("activations")
    if acts is not None:
        want = _DEFAULT_ACTS[node.op_type] * d
        if tuple(a.lower() for a in acts) != want:
            ctx.unsupported(node, f"activations {acts} are not supported; only the defaults "
                                  f"{list(want)}")
            ok = False
    for name in ("activation_alpha", "activation_beta"):
        if node.has_attr(name) and acts is None:
            ctx.unsupported(node, f"attribute {name!r} with the default activations")
            ok = False
    return ok


def _seq_lens_ok(ctx: Context, node: OnnxNode, x: str, layout: int) -> bool:
    """sequence_lens is accepted only when it is a constant equal to the full length."""
    name = node.input(4)
    if not name:
        return True
    lens = ctx.const_value(name)
    steps = ctx.type_of(x).shape[1 - layout]
    if lens is not None and steps is not None and bool(np.all(lens == steps)):
        return True
    ctx.unsupported(node, "sequence_lens is supported only as a constant equal to the "
                          "sequence length (no padding)")
    return False


def _direction(ctx: Context, node: OnnxNode, value: str, d: int, gates: int, u: int,
               order: Sequence[int] | None, what: str) -> str:
    """Direction ``d`` of ONNX weight W or R (D, gates*U, K) as the engine's (K, gates*U),
    gate blocks reordered by ``order``. Engine ops, so weights fed at run time work too;
    constant ones are folded at once."""
    h = f"{node.name}/{what}{d}"
    i = ctx.add_const(np.array(d, np.int64), hint=f"{h}/dir")
    m = ctx.emit1("Gather", [value, i], {"axis": 0}, hint=h)  # (gates*U, K)
    if order is not None:
        m = ctx.emit1("Reshape", [m], {"shape": (gates, u, -1)}, hint=h)
        idx = ctx.add_const(np.array(order, np.int64), hint=f"{h}/gates")
        m = ctx.emit1("Gather", [m, idx], {"axis": 0}, hint=h)
        m = ctx.emit1("Reshape", [m], {"shape": (gates * u, -1)}, hint=h)
    return ctx.emit1("Transpose", [m], {"perm": (1, 0)}, hint=h)


def _bias(ctx: Context, node: OnnxNode, d: int, gates: int, u: int,
          order: Sequence[int] | None) -> str:
    """Direction ``d`` of ONNX B (D, 2*gates*U): the two halves summed and reordered
    (``order`` given: LSTM) or stacked as (2, gates*U) (GRU)."""
    h = f"{node.name}/bias{d}"
    if not node.input(3):
        shape = (gates * u,) if order is not None else (2, gates * u)
        return ctx.add_const(np.zeros(shape, np.float32), hint=h)
    i = ctx.add_const(np.array(d, np.int64), hint=f"{h}/dir")
    b = ctx.emit1("Gather", [node.inputs[3], i], {"axis": 0}, hint=h)
    b = ctx.emit1("Reshape", [b], {"shape": (2, gates * u)}, hint=h)
    if order is None:
        return b
    b = ctx.emit1("ReduceSum", [b], {"axes": (0,), "keepdims": False}, hint=h)
    b = ctx.emit1("Reshape", [b], {"shape": (gates, u)}, hint=h)
    idx = ctx.add_const(np.array(order, np.int64), hint=f"{h}/gates")
    b = ctx.emit1("Gather", [b, idx], {"axis": 0}, hint=h)
    return ctx.emit1("Reshape", [b], {"shape": (gates * u,)}, hint=h)


def _units(ctx: Context, node: OnnxNode) -> int | None:
    shape = ctx.type_of(node.inputs[2]).shape
    if len(shape) != 3 or shape[2] is None:
        ctx.unsupported(node, f"R must have a static shape (D, gates*U, U), got {shape}")
        return None
    return int(shape[2])


def _batch_major(ctx: Context, node: OnnxNode, x: str, layout: int) -> str:
    if layout == 1:
        return x
    return ctx.emit1("Transpose", [x], {"perm": (1, 0, 2)}, hint=f"{node.name}/batch_major")


def _state(ctx: Context, node: OnnxNode, index: int, d: int, layout: int) -> list[str]:
    """Initial state input ``index`` for direction ``d`` as (N, U), or nothing."""
    name = node.input(index)
    if not name:
        return []
    i = ctx.add_const(np.array(d, np.int64), hint=f"{node.name}/dir")
    return [ctx.emit1("Gather", [name, i], {"axis": layout}, hint=f"{node.name}/state{d}")]


def _stack(ctx: Context, node: OnnxNode, parts: Sequence[str], axis: int, out: str,
           perm: Sequence[int] | None = None) -> None:
    """Unsqueeze each part at ``axis``, concatenate there, optionally transpose, into ``out``."""
    ups = [ctx.emit1("Unsqueeze", [p], {"axes": (axis,)}, hint=f"{node.name}/dir_axis")
           for p in parts]
    if perm is None and len(ups) == 1:
        ctx.emit("Identity", ups, outputs=[out])
        return
    joined = ups[0] if len(ups) == 1 else ctx.emit1("Concat", ups, {"axis": axis},
                                                    hint=f"{node.name}/dirs")
    if perm is None:
        ctx.emit("Identity", [joined], outputs=[out])
    else:
        ctx.emit("Transpose", [joined], {"perm": tuple(perm)}, outputs=[out])


def _outputs(ctx: Context, node: OnnxNode, seqs: list[str], finals: list[list[str]],
             layout: int) -> None:
    """ONNX Y (T, D, N, U) or (N, T, D, U), and Y_h / Y_c (D, N, U) or (N, D, U)."""
    if node.outputs and node.outputs[0]:
        if layout == 0:
            _stack(ctx, node, seqs, 2, node.outputs[0], (1, 2, 0, 3))
        else:
            _stack(ctx, node, seqs, 2, node.outputs[0])
    for k, parts in enumerate(finals, 1):
        if k < len(node.outputs) and node.outputs[k]:
            _stack(ctx, node, parts, layout, node.outputs[k])


@converts("LSTM", since=1)
def _lstm(ctx: Context, node: OnnxNode) -> None:
    if not _check(ctx, node, {"input_forget": (0,)}):
        return
    layout = int(node.attr("layout", 0))
    x = node.inputs[0]
    p = ctx.const_value(node.input(7))
    if node.input(7) and (p is None or np.any(p != 0)):
        ctx.unsupported(node, "peephole weights (input P) are not supported")
        return
    if not _seq_lens_ok(ctx, node, x, layout):
        return
    u = _units(ctx, node)
    if u is None:
        return
    dirs = _DIRECTIONS[node.attr("direction", "forward")]
    xb = _batch_major(ctx, node, x, layout)
    seqs: list[str] = []
    finals: list[list[str]] = [[], []]
    w, r = node.inputs[1], node.inputs[2]
    for d in range(dirs):
        kernel = _direction(ctx, node, w, d, 4, u, _LSTM_TO_KERAS, "kernel")
        rec = _direction(ctx, node, r, d, 4, u, _LSTM_TO_KERAS, "recurrent")
        bias = _bias(ctx, node, d, 4, u, _LSTM_TO_KERAS)
        h0 = _state(ctx, node, 5, d, layout)
        c0 = _state(ctx, node, 6, d, layout)
        if c0 and not h0:  # the engine op takes h0 before c0: a zero h0 shaped like c0
            zero = ctx.add_const(np.float32(0.0), hint=f"{node.name}/zero")
            h0 = [ctx.emit1("Mul", [c0[0], zero], hint=f"{node.name}/h0")]
        reverse = node.attr("direction", "forward") == "reverse" or d == 1
        y, h, c = ctx.emit("LSTMSeq", [xb, kernel, rec, bias, *h0, *c0], {"reverse": reverse},
                           hint=f"{node.name}/dir{d}")
        seqs.append(y)
        finals[0].append(h)
        finals[1].append(c)
    _outputs(ctx, node, seqs, finals, layout)


@converts("GRU", since=1)
def _gru(ctx: Context, node: OnnxNode) -> None:
    if not _check(ctx, node, {"linear_before_reset": (0, 1)}):
        return
    layout = int(node.attr("layout", 0))
    x = node.inputs[0]
    if not _seq_lens_ok(ctx, node, x, layout):
        return
    u = _units(ctx, node)
    if u is None:
        return
    w, r = node.inputs[1], node.inputs[2]
    dirs = _DIRECTIONS[node.attr("direction", "forward")]
    xb = _batch_major(ctx, node, x, layout)
    reset_after = bool(node.attr("linear_before_reset", 0))
    seqs: list[str] = []
    finals: list[list[str]] = [[]]
    for d in range(dirs):
        kernel = _direction(ctx, node, w, d, 3, u, None, "kernel")
        rec = _direction(ctx, node, r, d, 3, u, None, "recurrent")
        bias = _bias(ctx, node, d, 3, u, None)
        h0 = _state(ctx, node, 5, d, layout)
        reverse = node.attr("direction", "forward") == "reverse" or d == 1
        y, h = ctx.emit("GRUSeq", [xb, kernel, rec, bias, *h0],
                        {"reset_after": reset_after, "reverse": reverse},
                        hint=f"{node.name}/dir{d}")
        seqs.append(y)
        finals[0].append(h)
    _outputs(ctx, node, seqs, finals, layout)


@converts("RNN", since=1)
def _rnn(ctx: Context, node: OnnxNode) -> None:
    """tanh(x W + h R + Wb + Rb) as GRUSeq with z = 0, r = 1 (see ``_SATURATE``)."""
    if not _check(ctx, node, {}):
        return
    layout = int(node.attr("layout", 0))
    x = node.inputs[0]
    if not _seq_lens_ok(ctx, node, x, layout):
        return
    u = _units(ctx, node)
    feat = ctx.type_of(node.inputs[1]).shape[-1]
    if u is None or feat is None:
        if feat is None:
            ctx.unsupported(node, "W must have a static shape (D, U, F)")
        return
    dirs = _DIRECTIONS[node.attr("direction", "forward")]
    xb = _batch_major(ctx, node, x, layout)
    seqs: list[str] = []
    finals: list[list[str]] = [[]]
    gate_bias = np.zeros((2, 2 * u), np.float32)
    gate_bias[0, :u], gate_bias[0, u:] = -_SATURATE, _SATURATE
    for d in range(dirs):
        h = f"{node.name}/dir{d}"
        parts = []
        for value, rows in ((node.inputs[1], int(feat)), (node.inputs[2], u)):
            m = _direction(ctx, node, value, d, 1, u, None, "weights")  # (rows, U)
            shut = ctx.add_const(np.zeros((rows, 2 * u), np.float32), hint=f"{h}/gates")
            parts.append(ctx.emit1("Concat", [shut, m], {"axis": 1}, hint=h))
        b = _bias(ctx, node, d, 1, u, None)  # (2, U)
        gb = ctx.add_const(gate_bias, hint=f"{h}/gate_bias")
        bias = ctx.emit1("Concat", [gb, b], {"axis": 1}, hint=h)
        h0 = _state(ctx, node, 5, d, layout)
        reverse = node.attr("direction", "forward") == "reverse" or d == 1
        y, hn = ctx.emit("GRUSeq", [xb, *parts, bias, *h0],
                         {"reset_after": True, "reverse": reverse}, hint=h)
        seqs.append(y)
        finals[0].append(hn)
    _outputs(ctx, node, seqs, finals, layout)
