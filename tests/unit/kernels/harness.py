"""Run one op through its real binding, outside any graph: the kernel tests' entry point."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import binding_for
from engine.ir import TensorType, schema_for


def run_op(
    op: str,
    family: str,
    inputs: Sequence[np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    const: Sequence[bool] | None = None,
) -> list[np.ndarray]:
    """Prepare and run ``op`` on concrete inputs; ``const[i]`` marks input i as a constant."""
    importlib.import_module(f"engine.executor.bindings.{family}")
    schema = schema_for(op)
    resolved = schema.resolve_attrs(attrs or {}, op)
    in_types = [TensorType(np.asarray(x).dtype.name, tuple(np.shape(x))) for x in inputs]
    out_types = schema.infer(in_types, resolved)
    const = const or [False] * len(inputs)
    consts = [np.asarray(x) if c else None for x, c in zip(inputs, const, strict=True)]
    prepared = binding_for(op)(resolved, in_types, out_types, consts)
    outs = [np.full(t.shape, np.nan if t.dtype.startswith("float") else 0, dtype=t.dtype)
            for t in out_types]  # garbage-filled: kernels must write every element
    scratch = [np.empty(shape, dtype=dtype) for shape, dtype in prepared.scratch]
    prepared.run([np.asarray(x) for x in inputs], outs, scratch)
    return outs
