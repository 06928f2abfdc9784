"""The op table's kernel half: for each op, a ``prepare`` that binds a kernel to one node.

``prepare(attrs, in_types, out_types, consts)`` runs once per plan (one set of concrete
shapes). ``attrs`` has every default filled in; ``in_types``/``out_types`` are static;
``consts[i]`` is the value of input i when it is a graph constant, else None, so weights can be
repacked once here. It returns a ``Prepared``: a ``run(ins, outs, scratch)`` that writes
every output in place into preallocated arrays of exactly ``out_types``' shapes, plus the
scratch buffers it wants. Outputs never alias inputs. ``run`` must be safe to call from several
threads at once with different buffers (keep no mutable state in the closure).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import UnsupportedOpError
from engine.ir.graph import TensorType

__all__ = ["KERNEL_MODULES", "Native", "Prepared", "PrepareFn", "RunFn", "BINDINGS", "bind",
           "binding_for", "kernel_of", "native_prepared"]

RunFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]], None]


# name -> module: what a Native.kernel expression may refer to
KERNEL_MODULES = {"CK": "engine.kernels.conv", "PK": "engine.kernels.pool",
                  "EK": "engine.kernels.elementwise", "SK": "engine.kernels.shape",
                  "WG": "engine.kernels.winograd"}


@dataclass(frozen=True)
class Native:
    """``run`` as one numba kernel call, for plans that chain such calls in one nogil function
    (engine/executor/fused.py): ``kernel`` names the kernel as an expression over
    ``KERNEL_MODULES`` (generated code imports it by that name, so it can be cached on disk),
    ``args`` builds its arguments from the step's buffers."""

    kernel: str
    args: Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]],
                   tuple[Any, ...]]


def kernel_of(expr: str) -> Any:
    """The kernel object a ``Native.kernel`` expression names."""
    names = {alias: importlib.import_module(m) for alias, m in KERNEL_MODULES.items()}
    return eval(expr, names)  # noqa: S307 - expressions written by the bindings


def native_prepared(native: Native,
                    scratch: tuple[tuple[tuple[int, ...], str], ...] = ()) -> Prepared:
    """A step whose ``run`` is its native call: the kernel is looked up by the same name the
    chained code uses, so the two cannot differ."""
    kernel, args = kernel_of(native.kernel), native.args

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray],
            scr: Sequence[np.ndarray]) -> None:
        kernel(*args(ins, outs, scr))

    return Prepared(run, scratch, native)


@dataclass(frozen=True)
class Prepared:
    run: RunFn
    scratch: tuple[tuple[tuple[int, ...], str], ...] = ()  # (shape, dtype) of each scratch buffer
    native: Native | None = None  # ``run`` is exactly ``kernel(*args(ins, outs, scratch))``


PrepareFn = Callable[
    [Mapping[str, Any], Sequence[TensorType], Sequence[TensorType], Sequence[np.ndarray | None]],
    Prepared,
]

BINDINGS: dict[str, PrepareFn] = {}


def bind(*ops: str) -> Callable[[PrepareFn], PrepareFn]:
    def deco(fn: PrepareFn) -> PrepareFn:
        for op in ops:
            if op in BINDINGS:
                raise RuntimeError(f"op {op} bound twice")
            BINDINGS[op] = fn
        return fn

    return deco


def binding_for(op: str) -> PrepareFn:
    try:
        return BINDINGS[op]
    except KeyError:
        raise UnsupportedOpError(f"op {op!r} has no kernel") from None
