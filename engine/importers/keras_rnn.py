"""Keras recurrent layers on the engine's sequence ops: ``GRU`` (onto ``GRUSeq``) and
``Bidirectional(LSTM | GRU)`` (a forward and a ``reverse`` ``LSTMSeq``/``GRUSeq``, merged).

A plain Keras ``LSTM`` stays on ``engine.layers.LSTM``; these layers emit the graph nodes
themselves because ``Builder.op`` only makes single-output nodes and the sequence ops have
two or three outputs (every h, final h[, final c]).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.importers.keras_config import Opts, dtype_policy
from engine.ir import Node, schema_for
from engine.layers import Layer
from engine.layers.base import Builder

__all__ = ["CONVERTERS", "MERGE_MODES", "Bidirectional", "Cell", "Recurrent",
           "convert_bidirectional", "convert_gru", "convert_recurrent", "emit_cell", "read_cell"]

MERGE_MODES = ("concat", "sum", "mul", "ave")
_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


@dataclass(frozen=True)
class Cell:
    """One direction of a Keras LSTM or GRU, as the options that change its numbers."""

    kind: str  # "LSTM" or "GRU"
    units: int
    use_bias: bool
    return_sequences: bool
    reset_after: bool = True  # GRU only
    reverse: bool = False  # go_backwards: read time backwards

    def tags(self, prefix: str = "") -> list[str]:
        return [prefix + w for w in (_WEIGHTS if self.use_bias else _WEIGHTS[:2])]


def read_cell(o: Opts, kind: str) -> Cell:
    """The options of a Keras LSTM/GRU config (``o``); anything else is reported to ``o``."""
    o.only("activation", ("tanh",), "tanh")
    o.only("recurrent_activation", ("sigmoid",), "sigmoid")
    o.falsy("return_state", "stateful", "time_major")
    reset_after = bool(o.get("reset_after", True)) if kind == "GRU" else True
    return Cell(kind, int(o.get("units")), bool(o.get("use_bias", True)),
                bool(o.get("return_sequences", False)), reset_after,
                bool(o.get("go_backwards", False)))


def _multi(b: Builder, op: str, inputs: Sequence[str], attrs: Mapping[str, Any],
           outs: Sequence[str]) -> None:
    """``Builder.op`` for an op with several outputs, named ``outs``."""
    schema = schema_for(op)
    resolved = schema.resolve_attrs(attrs, f"{outs[0]} ({op})")
    types = schema.infer([b.types[i] for i in inputs], resolved)
    for name in outs:
        if name in b.types:
            raise EngineError(f"value {name!r} is defined twice")
    b.nodes.append(Node.make(op, inputs, outs, attrs, outs[0]))
    for name, t in zip(outs, types, strict=True):
        b.types[name] = t


def _bias(cell: Cell, layer: Layer, tag: str) -> np.ndarray:
    """The op's bias: LSTMSeq (4U); GRUSeq (2, 3U) = [input bias; recurrent bias]."""
    u = cell.units
    if cell.kind == "LSTM":
        return layer.weight(tag) if cell.use_bias else np.zeros(4 * u, np.float32)
    if not cell.use_bias:
        return np.zeros((2, 3 * u), np.float32)
    bias = layer.weight(tag)
    if cell.reset_after:
        return bias
    # reset_before: Keras' one (3U) bias is all on the input side (x W + b), the op's
    # recurrent bias then adds nothing: tanh(x Wh + bh + (r * h) Rh + 0)
    return np.stack([bias, np.zeros_like(bias)])


def emit_cell(b: Builder, layer: Layer, cell: Cell, x: str, prefix: str, out: str,
              sequences: bool) -> str:
    """One direction on ``x``; returns every h (N, T, U) or the final h (N, U) as ``out``.
    ``prefix`` tells this direction's weights (``forward/``) and values apart."""
    ins = [x, b.const(f"{prefix}kernel", layer.weight(f"{prefix}kernel")),
           b.const(f"{prefix}recurrent_kernel", layer.weight(f"{prefix}recurrent_kernel")),
           b.const(f"{prefix}bias", _bias(cell, layer, f"{prefix}bias"))]
    scratch = f"{b.out}/{prefix}"
    if cell.kind == "LSTM":
        op, attrs, extra = "LSTMSeq", {"reverse": cell.reverse}, [f"{scratch}c"]
    else:
        op = "GRUSeq"
        attrs = {"reset_after": cell.reset_after, "reverse": cell.reverse}
        extra = []
    seq, final = (out, f"{scratch}h") if sequences else (f"{scratch}seq", out)
    _multi(b, op, ins, attrs, [seq, final, *extra])
    return out


class Recurrent(Layer):
    """A Keras GRU (or one-direction LSTM) on one (N, T, F) input."""

    def __init__(self, cell: Cell, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cell = cell

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        return emit_cell(b, self, self.cell, xs[0], "", b.out, self.cell.return_sequences)


def _merge_ops(mode: str) -> tuple[str, float | None]:
    """The binary op of a merge mode, and the scale after it (``ave``)."""
    return {"sum": ("Add", None), "mul": ("Mul", None), "ave": ("Add", 0.5),
            "concat": ("Concat", None)}[mode]


class Bidirectional(Layer):
    """Keras Bidirectional: the forward cell and the backward cell (time read backwards,
    outputs kept aligned with the input, as Keras re-reverses them), then merged."""

    def __init__(self, forward: Cell, backward: Cell, merge_mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cells, self.merge_mode = (forward, backward), merge_mode

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        fwd, bwd = self.cells
        ys = [emit_cell(b, self, cell, xs[0], prefix, f"{b.out}/{prefix}out",
                        cell.return_sequences)
              for cell, prefix in ((fwd, "forward/"), (bwd, "backward/"))]
        op, scale = _merge_ops(self.merge_mode)
        if op == "Concat":
            return b.op("Concat", ys, {"axis": -1}, out=b.out)
        if scale is None:
            return b.op(op, ys, out=b.out)
        y = b.op(op, ys, tag="merge")
        return b.op("Mul", [y, b.const("half", np.array(scale, np.float32))], out=b.out)


Converted = tuple[Layer, list[str]]


def convert_gru(o: Opts) -> Converted:
    return convert_recurrent(o, "GRU")


def convert_recurrent(o: Opts, kind: str) -> Converted:
    """A Keras GRU, or an LSTM that reads time backwards, on its own."""
    cell = read_cell(o, kind)
    # Keras returns a go_backwards layer's sequence in reversed time order, which the
    # sequence ops do not produce; its final h (after reading back to t = 0) they do
    if cell.reverse and cell.return_sequences:
        o.bad("go_backwards=True with return_sequences=True is not supported (only in a "
              "Bidirectional, or with return_sequences=False)")
    return Recurrent(cell, name=o.name), cell.tags()


def _inner(o: Opts, key: str, what: str) -> tuple[Opts, str] | None:
    raw = o.get(key)
    if raw is None:
        return None
    kind = str(raw.get("class_name"))
    sub = o.child(raw.get("config") or {}, what)
    if kind not in ("LSTM", "GRU"):
        sub.bad(f"layer type {kind!r} is not supported (supported: LSTM, GRU)")
    policy = dtype_policy(sub.get("dtype"))
    if policy not in (None, "float32"):
        sub.bad(f"dtype policy {policy!r} is not supported (only float32)")
    return sub, kind


def _same_but_direction(backward: Mapping[str, Any], forward: Mapping[str, Any]) -> bool:
    """Whether the saved backward layer is the one Keras derives from the wrapped layer."""
    def key(raw: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        cfg = {k: v for k, v in (raw.get("config") or {}).items()
               if k not in ("name", "go_backwards") and not k.endswith("initializer")}
        return raw.get("class_name"), cfg
    return key(backward) == key(forward)


def convert_bidirectional(o: Opts) -> Converted:
    # merge_mode=None (two separate outputs) is saved as null, which Opts.get reads as unset
    mode = o.config.get("merge_mode", "concat")
    if mode not in MERGE_MODES:
        o.bad(f"merge_mode={mode!r} is not supported (supported: "
              f"{', '.join(repr(m) for m in MERGE_MODES)})")
    inner = _inner(o, "layer", "wrapped layer")
    if inner is None:
        raise KeyError("layer")
    if not o.ok:  # a wrapped layer type we cannot read: its problem is already reported
        return Layer(name=o.name), []
    sub, kind = inner
    fwd = read_cell(sub, kind)
    raw = o.get("backward_layer")
    if raw is None or _same_but_direction(raw, o.get("layer")):
        bwd = Cell(fwd.kind, fwd.units, fwd.use_bias, fwd.return_sequences, fwd.reset_after,
                   not fwd.reverse)  # Keras derives it so: read it once, report once
    else:
        backward = _inner(o, "backward_layer", "backward layer")
        assert backward is not None
        if not o.ok:
            return Layer(name=o.name), []
        bwd = read_cell(*backward)
    # Keras flips only the backward outputs back into input order; a wrapped layer that
    # itself reads backwards would need the forward outputs flipped too
    if fwd.reverse:
        o.bad("wrapped layer: go_backwards=True is not supported")
    if not bwd.reverse:
        o.bad("backward layer: go_backwards=False is not supported (Keras requires True)")
    if fwd.return_sequences != bwd.return_sequences:
        o.bad("the forward and backward layers differ in return_sequences")
    return (Bidirectional(fwd, bwd, str(mode), name=o.name),
            fwd.tags("forward/") + bwd.tags("backward/"))


CONVERTERS: dict[str, Callable[[Opts], Converted]] = {
    "GRU": convert_gru,
    "Bidirectional": convert_bidirectional,
}
