"""The converters' view of a ``.tflite`` import in progress.

Each TF Lite tensor becomes one engine value named after the tensor (made unique with its
index when names repeat). Converters read constants (``const``), int vectors known at import
time (``known``: constants and shape arithmetic such as Keras' Flatten builds from SHAPE /
STRIDED_SLICE / PACK; ``None`` marks a dynamic entry), emit engine nodes and record problems;
the importer raises every problem together at the end.

int8 tensors: ``float_in`` gives any tensor as float32 (a Dequantize node, or a dequantized
constant), ``set_float`` stores a float32 result into a tensor (a Quantize node when the tensor
is int8), so every op without an int8 kernel runs Dequantize -> float op -> Quantize.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.importers.tflite_read import TModel, TOperator, TTensor, enum_name
from engine.ir import Node, TensorType

__all__ = ["Context", "ACTIVATIONS", "dequantize_array"]

# fused activation -> the engine's activation name (conv/dense attr or unary op)
ACTIVATIONS = {"NONE": "linear", "RELU": "relu", "RELU6": "relu6", "TANH": "tanh"}
_UNARY = {"relu": "Relu", "relu6": "Relu6", "tanh": "Tanh"}


def dequantize_array(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                     axis: int) -> np.ndarray:
    """float32(float64(float32 scale) * (q - zero_point)), per channel along ``axis``."""
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis] = scale.size
    s = scale.astype(np.float64).reshape(shape)
    z = zero_point.astype(np.int64).reshape(shape)
    return (s * (q.astype(np.int64) - z)).astype(np.float32)


class Context:
    def __init__(self, model: TModel) -> None:
        self.model = model
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.problems: list[str] = []
        self.names: dict[int, str] = {}
        self.spans: dict[int, tuple[int, int]] = {}  # operator index -> its nodes[a:b]
        # PAD outputs: tensor -> (the unpadded tensor, pads top/bottom/left/right), so a conv
        # reading one pads inside its kernel instead
        self.padded: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
        self._known: dict[int, np.ndarray] = {}  # int vectors known at import (object arrays)
        self._folded: dict[int, np.ndarray] = {}  # constants computed at import
        self._float: dict[int, str] = {}  # int8 tensor -> its dequantized value
        self._counter = itertools.count()
        self._taken: set[str] = set()
        for t in model.tensors:
            name = t.name if t.name not in self._taken else f"{t.name}#{t.index}"
            self._taken.add(name)
            self.names[t.index] = name

    # -- tensors ---------------------------------------------------------------------------

    def tensor(self, i: int) -> TTensor:
        return self.model.tensors[i]

    def type_of(self, i: int) -> TensorType:
        t = self.tensor(i)
        return TensorType(t.dtype or t.tflite_type, t.shape)

    def const(self, i: int) -> np.ndarray | None:
        if i < 0:
            return None
        if i in self._folded:
            return self._folded[i]
        return self.tensor(i).data

    def set_const(self, i: int, value: np.ndarray) -> None:
        self._folded[i] = value

    def known(self, i: int) -> np.ndarray | None:
        """An int tensor's value when known at import: an object array, None where dynamic."""
        if i in self._known:
            return self._known[i]
        c = self.const(i)
        if c is not None and c.dtype.kind in "iu":
            return c.astype(object)
        return None

    def set_known(self, i: int, value: np.ndarray) -> None:
        self._known[i] = value

    def fresh(self, hint: str) -> str:
        while True:
            name = f"{hint}:{next(self._counter)}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def add_const(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.constants[name] = np.ascontiguousarray(value)
        return name

    def value(self, i: int) -> str:
        """The engine value of tensor ``i`` (a constant is added on first use)."""
        name = self.names[i]
        if name in self.constants:
            return name
        c = self.const(i)
        if c is None and i in self._known:
            vals = self._known[i]
            if all(v is not None for v in vals.flat):
                c = vals.astype(self.tensor(i).dtype or "int32")
        if c is not None:
            self.constants[name] = np.ascontiguousarray(c)
        return name

    # -- emitting --------------------------------------------------------------------------

    def emit(self, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             out: int | None = None, hint: str = "") -> str:
        """Add a node; its output is tensor ``out``'s value, or a fresh name from ``hint``."""
        name = self.names[out] if out is not None else self.fresh(hint or op)
        self.nodes.append(Node.make(op, inputs, [name], attrs, name=name))
        return name

    def activation(self, x: str, act: str, out: int | None, hint: str) -> str:
        """``x`` through an engine activation name; writes tensor ``out`` when given."""
        if act == "linear":
            if out is None:
                return x
            last = self.nodes[-1] if self.nodes else None
            if last is not None and last.outputs == (x,) and x not in self._float.values():
                # x was just made and nothing reads it yet: name it after the tensor
                name = self.names[out]
                self.nodes[-1] = Node.make(last.op, last.inputs, [name], last.attrs, name=name)
                return name
            return self.emit("Identity", [x], out=out)
        if act == "relu_n1_to_1":
            return self.emit("Clip", [x], {"min": -1.0, "max": 1.0}, out=out, hint=hint)
        return self.emit(_UNARY[act], [x], out=out, hint=hint)

    def fused(self, op: TOperator, allowed: Sequence[str] = ("NONE", "RELU", "RELU6", "TANH",
                                                             "RELU_N1_TO_1")) -> str | None:
        """The op's fused activation as an engine name (None: unsupported, recorded)."""
        code = op.options.get("FusedActivationFunction", 0)
        name = enum_name("activation", code)
        if name not in allowed:
            self.unsupported(op, f"fused activation {name} is not supported")
            return None
        return ACTIVATIONS.get(name, name.lower())

    # -- int8 <-> float --------------------------------------------------------------------

    def is_int8(self, i: int) -> bool:
        t = self.tensor(i)
        return t.tflite_type == "INT8" and t.quantized

    def qparams(self, i: int) -> tuple[float, int]:
        """Per-tensor (scale, zero_point) of an activation tensor."""
        t = self.tensor(i)
        assert t.scale is not None and t.zero_point is not None
        return float(t.scale[0]), int(t.zero_point[0])

    def float_in(self, i: int) -> str:
        """Tensor ``i`` as a float32 value (dequantized when int8)."""
        if not self.is_int8(i):
            return self.value(i)
        if i in self._float:
            return self._float[i]
        t = self.tensor(i)
        c = self.const(i)
        if c is not None:
            assert t.scale is not None and t.zero_point is not None
            name = self.add_const(dequantize_array(c, t.scale, t.zero_point,
                                                   t.quantized_dimension), f"{t.name}/float")
        else:
            scale, zp = self.qparams(i)
            name = self.emit("Dequantize", [self.value(i)], {"scale": scale, "zero_point": zp},
                             hint=f"{t.name}/float")
        self._float[i] = name
        return name

    def set_float(self, i: int, x: str, act: str = "linear") -> None:
        """Write a float32 result (through ``act``) into tensor ``i``, quantizing if int8."""
        if not self.is_int8(i):
            self.activation(x, act, i, f"{self.names[i]}/act")
            return
        x = self.activation(x, act, None, f"{self.names[i]}/act")
        scale, zp = self.qparams(i)
        # later readers dequantize the int8 values (not reuse ``x``), as TF Lite computes
        self.emit("Quantize", [x], {"scale": scale, "zero_point": zp}, out=i)

    # -- problems --------------------------------------------------------------------------

    def unsupported(self, op: TOperator, why: str) -> None:
        outs = ", ".join(f"{j} {self.names[j]!r}" for j in op.outputs if j >= 0)
        self.problems.append(f"{op.label()} (output tensor {outs}): {why}")
