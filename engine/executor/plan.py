"""Execution plans: one per (graph, concrete input shapes), with buffer reuse.

A ``Plan`` is built once per input-shape key: concrete types for every value, each node's
kernel prepared (weights repacked), and an arena layout in which intermediates whose lifetimes
do not overlap share memory. A ``Plan`` is shared by threads; each concurrent run takes its
own ``_Arena`` (the buffers) from a small pool, so two requests never write the same memory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.executor import fused
from engine.executor.binding import Prepared, binding_for
from engine.executor.bindings import load_all
from engine.ir import Graph, TensorType, infer_types, schema_for

__all__ = ["Plan", "build_plan"]

load_all()

_INPUT, _CONST, _ARENA, _OUTPUT = 0, 1, 2, 3


@dataclass(frozen=True)
class _Slot:
    kind: int
    index: int  # into inputs / constants / arena buffers / outputs


@dataclass(frozen=True)
class _Step:
    prepared: Prepared
    ins: tuple[_Slot, ...]
    outs: tuple[_Slot, ...]
    scratch: tuple[int, ...]  # arena buffer indices


class _Chain(list[_Step]):
    """Consecutive steps with a native form, run as one nogil call."""

    def __init__(self, steps: Sequence[_Step]) -> None:
        super().__init__(steps)
        self.fused = fused.FusedRun([s.prepared.native for s in steps if s.prepared.native],
                                    [s.prepared.run for s in steps])


def _segments(steps: Sequence[_Step]) -> list[list[_Step]]:
    """The steps in order, runs of two or more native steps grouped as a ``_Chain``."""
    out: list[list[_Step]] = []
    run: list[_Step] = []
    for step in [*steps, None]:
        if step is not None and step.prepared.native is not None:
            run.append(step)
            continue
        if len(run) >= 2:
            out.append(_Chain(run))
        else:
            out.extend([s] for s in run)
        run = []
        if step is not None:
            out.append([step])
    return out


class _Arena:
    """The memory of one in-flight run: flat byte buffers viewed with each value's type."""

    def __init__(self, views: Sequence[tuple[int, tuple[int, ...], str]], sizes: Sequence[int]):
        raw = [np.empty(max(n, 1), dtype=np.uint8) for n in sizes]
        self.views = [
            raw[buf][: int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize]
            .view(dt)
            .reshape(shape)
            for buf, shape, dt in views
        ]


class Plan:
    def __init__(
        self,
        graph: Graph,
        types: Mapping[str, TensorType],
        steps: list[_Step],
        input_slots: list[str],
        constants: list[np.ndarray],
        arena_views: list[tuple[int, tuple[int, ...], str]],
        arena_sizes: list[int],
        outputs: list[tuple[str, _Slot]],
    ) -> None:
        self.graph = graph
        self.types = types
        self._steps = steps
        self._input_names = input_slots
        self._constants = constants
        self._arena_views = arena_views
        self._arena_sizes = arena_sizes
        self._outputs = outputs
        # one buffer per _OUTPUT slot index (inputs/constants returned as outputs have none)
        produced = {slot.index: name for name, slot in outputs if slot.kind == _OUTPUT}
        self._out_specs = [
            (tuple(int(d or 0) for d in types[produced[i]].shape), types[produced[i]].dtype)
            for i in range(len(produced))
        ]
        self._pool: list[_Arena] = []
        self._lock = threading.Lock()
        self._segments = _segments(steps) if fused.enabled() else [[s] for s in steps]

    @property
    def arena_bytes(self) -> int:
        return sum(self._arena_sizes)

    def _take_arena(self) -> _Arena:
        with self._lock:
            if self._pool:
                return self._pool.pop()
        return _Arena(self._arena_views, self._arena_sizes)

    def _give_arena(self, arena: _Arena) -> None:
        with self._lock:
            if len(self._pool) < 8:
                self._pool.append(arena)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [feeds[name] for name in self._input_names]
        outputs = [np.empty(shape, dtype=dt) for shape, dt in self._out_specs]
        arena = self._take_arena()
        try:
            tables = (inputs, self._constants, arena.views, outputs)
            for segment in self._segments:
                buffers = [([tables[s.kind][s.index] for s in step.ins],
                            [tables[s.kind][s.index] for s in step.outs],
                            [arena.views[i] for i in step.scratch]) for step in segment]
                if isinstance(segment, _Chain):
                    segment.fused.run(buffers)
                else:
                    segment[0].prepared.run(*buffers[0])
            result = {}
            for name, slot in self._outputs:
                if slot.kind == _OUTPUT:
                    result[name] = outputs[slot.index]
                else:  # an output that is an input or constant as is
                    result[name] = np.array(tables[slot.kind][slot.index], copy=True)
            return result
        finally:
            self._give_arena(arena)


class _Allocator:
    """Greedy best-fit reuse of flat buffers by byte size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.free: list[int] = []

    def take(self, nbytes: int) -> int:
        best = None
        for i in self.free:
            if self.sizes[i] >= nbytes and (best is None or self.sizes[i] < self.sizes[best]):
                best = i
        if best is None and self.free:
            # grow the largest free buffer rather than adding another
            best = max(self.free, key=lambda i: self.sizes[i])
            self.sizes[best] = nbytes
        if best is None:
            self.sizes.append(nbytes)
            return len(self.sizes) - 1
        self.free.remove(best)
        return best

    def give(self, index: int) -> None:
        self.free.append(index)


def _nbytes(shape: Sequence[int], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def build_plan(graph: Graph, input_shapes: Mapping[str, tuple[int, ...]]) -> Plan:
    """Concrete plan for one set of input shapes (the graph must already be verified)."""
    concrete = {
        name: TensorType(t.dtype, tuple(input_shapes[name])) for name, t in graph.inputs
    }
    typed = infer_types(graph, concrete)
    types = typed.types
    const_names = list(graph.constants)
    const_index = {n: i for i, n in enumerate(const_names)}
    input_index = {n: i for i, (n, _) in enumerate(graph.inputs)}
    output_index: dict[str, int] = {}
    for name in graph.outputs:
        if name not in input_index and name not in const_index and name not in output_index:
            output_index[name] = len(output_index)

    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last_use[name] = i

    alloc = _Allocator()
    views: list[tuple[int, tuple[int, ...], str]] = []
    slot_of: dict[str, _Slot] = {}
    for name, i in input_index.items():
        slot_of[name] = _Slot(_INPUT, i)
    for name, i in const_index.items():
        slot_of[name] = _Slot(_CONST, i)
    view_buffer: dict[int, int] = {}

    def new_view(shape: tuple[int, ...], dtype: str) -> int:
        buf = alloc.take(_nbytes(shape, dtype))
        views.append((buf, shape, dtype))
        view_buffer[len(views) - 1] = buf
        return len(views) - 1

    steps: list[_Step] = []
    for i, node in enumerate(graph.nodes):
        in_types = [types[n] for n in node.inputs]
        out_types = [types[n] for n in node.outputs]
        attrs = schema_for(node.op).resolve_attrs(node.attrs, node.name or node.op)
        consts = [graph.constants.get(n) for n in node.inputs]
        prepared = binding_for(node.op)(attrs, in_types, out_types, consts)
        out_slots = []
        for name, t in zip(node.outputs, out_types, strict=True):
            assert t.is_static(), f"{name} has dynamic shape {t.shape} at plan time"
            shape = tuple(int(d) for d in t.shape if d is not None)
            if name in output_index:
                slot = _Slot(_OUTPUT, output_index[name])
            else:
                slot = _Slot(_ARENA, new_view(shape, t.dtype))
            slot_of[name] = slot
            out_slots.append(slot)
        scratch = tuple(new_view(tuple(s), dt) for s, dt in prepared.scratch)
        steps.append(_Step(prepared, tuple(slot_of[n] for n in node.inputs), tuple(out_slots),
                           scratch))
        # free after the node ran: scratch now, inputs whose last use this was
        for v in scratch:
            alloc.give(view_buffer[v])
        for name in set(node.inputs):
            slot = slot_of[name]
            if slot.kind == _ARENA and last_use.get(name) == i:
                alloc.give(view_buffer[slot.index])
        for name, slot in zip(node.outputs, out_slots, strict=True):
            if slot.kind == _ARENA and name not in last_use:  # dead output
                alloc.give(view_buffer[slot.index])

    outputs = [(name, slot_of[name]) for name in graph.outputs]
    return Plan(typed, types, steps, list(input_index), [graph.constants[n] for n in const_names],
                views, alloc.sizes, outputs)
