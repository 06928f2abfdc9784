"""The converters' view of an import in progress: types, constants, emitting engine nodes,
and the list of problems reported together at the end.

Names: engine values keep their ONNX names wherever a converter passes ``outputs=``; other
values get fresh names built from a hint. Every name the converters see is an ONNX name or one
``emit``/``add_const`` returned.

Constant folding happens as nodes are emitted: a node whose inputs are all constants is
evaluated at once and its outputs become constants, so ``const_value`` sees the results of
shape arithmetic over static shapes (and of weight transposes) while the import runs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import EngineError, GraphError
from engine.importers.onnx.registry import OnnxNode, check_attrs
from engine.ir import Node, TensorType, schema_for
from engine.passes.specialize import evaluate_node, foldable

__all__ = ["Context", "Problem"]

_FOLD_LIMIT = 64 << 20  # bytes; bigger results stay nodes (cheap to compute, costly to keep)


class Problem:
    """One unsupported op/attribute (or conversion failure) at one node."""

    def __init__(self, node: OnnxNode, why: str) -> None:
        self.node_name = node.name
        self.op_type = node.op_type
        self.why = why

    def __str__(self) -> str:
        return f"node {self.node_name!r} ({self.op_type}): {self.why}"


class Context:
    """State of one ONNX import; converters use only the public methods below.

    - ``opset``: the default domain's opset version the model imports.
    - ``type_of(name)``: engine ``TensorType`` (None dims where dynamic).
    - ``const_value(name)``: the value when constant (initializer or folded), else None.
    - ``add_const(array, hint)``: a new constant, returns its name.
    - ``emit(op, inputs, attrs, outputs=None, hint="")``: add an engine node (folded when all
      inputs are constant), return its output names.
    - ``unsupported(node, why)`` / ``check_attrs(node, supported)``: record problems.
    """

    def __init__(self, opset: int, reserved_names: Iterable[str] = ()) -> None:
        self.opset = opset
        self.inputs: list[tuple[str, TensorType]] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self.problems: list[Problem] = []
        # values downstream of a failed node: emit() only tracks their types
        self.poisoned: set[str] = set()
        self.fallback_types: dict[str, TensorType] = {}  # ONNX's own shape inference
        self._aliases: dict[str, str] = {}
        self._taken: set[str] = set(reserved_names)
        self._counter = 0

    # -- names and values ---------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """The engine value an ONNX name stands for (after ``alias``)."""
        while name in self._aliases:
            name = self._aliases[name]
        return name

    def alias(self, onnx_name: str, existing: str) -> None:
        """Make ``onnx_name`` refer to the existing value ``existing`` (no node emitted)."""
        self._aliases[onnx_name] = self.resolve(existing)
        self._taken.add(onnx_name)

    def has_value(self, name: str) -> bool:
        name = self.resolve(name)
        return name in self.types or name in self.poisoned

    def type_of(self, name: str) -> TensorType:
        """The value's dtype (numpy name) and shape (None for dynamic dims)."""
        name = self.resolve(name)
        if name in self.types:
            return self.types[name]
        if name in self.fallback_types:
            return self.fallback_types[name]
        raise GraphError(f"value {name!r} is used before it is defined")

    def const_value(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is an initializer or was folded, else None."""
        if not name:
            return None
        return self.constants.get(self.resolve(name))

    def fresh(self, hint: str) -> str:
        """A value name no ONNX name and no earlier fresh name uses."""
        base = (hint or "v").replace(":", "_")
        while True:
            self._counter += 1
            name = f"{base}__{self._counter}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def add_const(self, array: Any, hint: str = "const", name: str | None = None) -> str:
        """Store ``array`` as a constant and return its (new, unless ``name``) name."""
        arr = np.asarray(array, order="C")  # keeps 0-d scalars 0-d
        name = name or self.fresh(hint)
        self._taken.add(name)
        self.constants[name] = arr
        self.types[name] = TensorType(arr.dtype.name, tuple(int(d) for d in arr.shape))
        return name

    def add_input(self, name: str, t: TensorType) -> None:
        self._taken.add(name)
        self.inputs.append((name, t))
        self.types[name] = t

    # -- emitting -------------------------------------------------------------------------

    def emit(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
        hint: str = "",
    ) -> list[str]:
        """Add engine node ``op`` and return its output names.

        ``outputs`` given: the outputs get those (ONNX) names; otherwise fresh names from
        ``hint``. Inputs are ONNX names or names returned earlier. The output types are
        inferred now (a bad shape raises ShapeError here, naming the op).
        """
        schema = schema_for(op)
        ins = [self.resolve(n) for n in inputs]
        if outputs is None:
            outs = [self.fresh(hint or op.lower()) for _ in range(schema.num_outputs)]
        else:
            outs = list(outputs)
            self._taken.update(outs)
        node = Node.make(op, ins, outs, attrs or {}, name=hint)
        resolved = schema.resolve_attrs(node.attrs, f"{op} ({hint or outs[0]})")
        in_types = [self.type_of(n) for n in ins]
        if any(n in self.poisoned for n in ins):
            self._poison(outs, lambda: schema.infer(in_types, resolved))
            return outs
        values = [self.constants.get(n) for n in ins]
        out_types = schema.infer_with(in_types, resolved, values)
        if op == "Shape" and in_types[0].is_static():  # static shapes fold at import
            dims = [int(d) for d in in_types[0].shape if d is not None]
            self.add_const(np.array(dims[resolved["start"]:resolved["end"]], np.int64),
                           name=outs[0])
            return outs
        if ins and all(v is not None for v in values) and foldable(op):
            results = evaluate_node(node, {n: v for n, v in zip(ins, values, strict=True)
                                           if v is not None})
            if sum(r.nbytes for r in results.values()) <= _FOLD_LIMIT:
                for name in outs:
                    self.add_const(results[name], name=name)
                return outs
        self.nodes.append(node)
        for name, t in zip(outs, out_types, strict=True):
            self.types[name] = t
        return outs

    def emit1(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        output: str | None = None,
        hint: str = "",
    ) -> str:
        """``emit`` for a one-output op: the output's name."""
        return self.emit(op, inputs, attrs, None if output is None else [output], hint)[0]

    def _poison(self, outs: Sequence[str], infer: Any) -> None:
        try:
            types = infer()
        except (EngineError, KeyError, TypeError, ValueError, IndexError):
            types = [self.fallback_types.get(n, TensorType("float32", ())) for n in outs]
        for name, t in zip(outs, types, strict=False):
            self.poisoned.add(name)
            self.types.setdefault(name, t)

    def poison_outputs(self, node: OnnxNode) -> None:
        """Mark ``node``'s outputs as unavailable (after a problem), typed from ONNX's
        shape inference where it knows them, so later nodes can still be checked."""
        for name in node.outputs:
            if name and not self.has_value(name):
                self.poisoned.add(name)
                self.types[name] = self.fallback_types.get(name, TensorType("float32", ()))

    # -- problems -------------------------------------------------------------------------

    def unsupported(self, node: OnnxNode, why: str) -> None:
        """Record that ``node`` cannot be converted (op, attribute or value), and go on."""
        self.problems.append(Problem(node, why))

    def check_attrs(
        self, node: OnnxNode, supported: Mapping[str, Collection[Any] | None]
    ) -> bool:
        """Record every attribute of ``node`` not in ``supported`` (or with a value outside
        the given collection); True when there was none."""
        problems = check_attrs(node, supported)
        for why in problems:
            self.unsupported(node, why)
        return not problems

    def require_const(self, node: OnnxNode, index: int, what: str) -> np.ndarray | None:
        """The constant value of input ``index``; records a problem (returns None) when the
        input is present but computed at run time."""
        name = node.input(index)
        if not name:
            return None
        value = self.const_value(name)
        if value is None and self.resolve(name) not in self.poisoned:
            self.unsupported(node, f"{what} (input {index}) must be a constant")
        return value
