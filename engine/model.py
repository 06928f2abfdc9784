"""The engine's loaded model: signatures, input checks and ``run``."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from engine.dtypes import canonical
from engine.errors import DTypeError, InputError, ShapeError
from engine.executor import Plan, build_plan
from engine.executor.threads import plan_threads
from engine.ir import Graph, Shape, TensorType
from engine.passes import optimize
from engine.passes.specialize import needs_specialize, specialize

MAX_PLANS = 128  # per model: distinct input shapes whose plans stay cached

__all__ = ["TensorSpec", "Signature", "Model", "DEFAULT_SIGNATURE"]

DEFAULT_SIGNATURE = "serving_default"
METHODS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class TensorSpec:
    """A signature entry: the graph tensor behind an alias, its dtype and shape (None = any)."""

    name: str
    dtype: str
    shape: Shape

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> TensorSpec:
        return TensorSpec(str(d["name"]), canonical(d["dtype"]), tuple(d["shape"]))

    def describe(self) -> str:
        dims = ", ".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} [{dims}]"


@dataclass(frozen=True)
class Signature:
    """Named inputs and outputs (alias -> TensorSpec) and a TF method: predict/classify/regress."""

    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method: str = "predict"

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "inputs": {k: v.to_json() for k, v in self.inputs.items()},
            "outputs": {k: v.to_json() for k, v in self.outputs.items()},
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Signature:
        method = d.get("method", "predict")
        if method not in METHODS:
            raise ValueError(f"unknown signature method {method!r}; expected one of {METHODS}")
        return Signature(
            MappingProxyType({k: TensorSpec.from_json(v) for k, v in d["inputs"].items()}),
            MappingProxyType({k: TensorSpec.from_json(v) for k, v in d["outputs"].items()}),
            method,
        )


def default_signatures(graph: Graph) -> dict[str, Signature]:
    """``serving_default``: every graph input and output under its own name."""
    types = graph.types
    ins = {n: TensorSpec(n, t.dtype, t.shape) for n, t in graph.inputs}
    outs = {n: TensorSpec(n, types[n].dtype, types[n].shape) for n in graph.outputs}
    return {DEFAULT_SIGNATURE: Signature(MappingProxyType(ins), MappingProxyType(outs))}


@dataclass
class Model:
    """A verified, optimized graph ready to run, with its signatures.

    ``run`` is thread safe: plans are cached per input-shape key and each concurrent run
    uses its own buffers.
    """

    graph: Graph
    signatures: Mapping[str, Signature]
    path: str | None = None
    _plans: dict[tuple[Any, ...], Plan] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def weights_nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.graph.constants.values())

    def signature(self, name: str | None = None) -> Signature:
        key = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[key]
        except KeyError:
            raise InputError(
                f"signature {key!r} not found; the model has {sorted(self.signatures)}"
            ) from None

    def plan_for(self, feeds: Mapping[str, np.ndarray]) -> Plan:
        # a plan is sized for the calling thread's numba thread count (serial kernels for one)
        key = (plan_threads(), *(tuple(feeds[n].shape) for n in self.graph.input_names))
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key)
                if plan is None:
                    plan = build_plan(self._graph_for(feeds), {n: feeds[n].shape for n in feeds})
                    if len(self._plans) >= MAX_PLANS:
                        # models with dynamic sequence lengths would otherwise keep one plan
                        # (and its arenas) per shape ever seen; drop the oldest
                        self._plans.pop(next(iter(self._plans)))
                    self._plans[key] = plan
        return plan

    def _graph_for(self, feeds: Mapping[str, np.ndarray]) -> Graph:
        """The graph to plan for these feeds: shape arithmetic (imported models) folded for
        their concrete shapes; the graph itself when it has none."""
        if not needs_specialize(self.graph):
            return self.graph
        concrete = {n: TensorType(t.dtype, tuple(feeds[n].shape)) for n, t in self.graph.inputs}
        return optimize(specialize(self.graph, concrete))

    def check_feeds(
        self, feeds: Mapping[str, Any], signature: str | None = None
    ) -> dict[str, np.ndarray]:
        """Feeds keyed by alias -> arrays keyed by graph tensor, cast and shape-checked."""
        sig = self.signature(signature)
        unknown = sorted(set(feeds) - set(sig.inputs))
        if unknown:
            raise InputError(
                f"unknown input(s) {unknown}; expected {sorted(sig.inputs)}"
            )
        missing = sorted(set(sig.inputs) - set(feeds))
        if missing:
            raise InputError(f"missing input(s) {missing}; expected {sorted(sig.inputs)}")
        out: dict[str, np.ndarray] = {}
        for alias, spec in sig.inputs.items():
            arr = np.asarray(feeds[alias])
            if arr.dtype != spec.dtype:
                if arr.dtype.kind not in "biuf" or not np.can_cast(
                    arr.dtype, spec.dtype, casting="same_kind"
                ) and not (arr.dtype.kind in "biu" and np.dtype(spec.dtype).kind == "f"):
                    raise DTypeError(
                        f"input {alias!r}: expected dtype {spec.dtype}, got {arr.dtype}"
                    )
                arr = arr.astype(spec.dtype)
            if arr.ndim != len(spec.shape) or any(
                d is not None and d != a for d, a in zip(spec.shape, arr.shape, strict=True)
            ):
                raise ShapeError(
                    f"input {alias!r}: expected shape {_dims(spec.shape)}, got {list(arr.shape)}"
                )
            out[spec.name] = np.ascontiguousarray(arr)
        return out

    def run(
        self,
        feeds: Mapping[str, Any],
        signature: str | None = None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one signature; ``feeds`` and the result are keyed by the signature's aliases."""
        sig = self.signature(signature)
        tensors = self.check_feeds(feeds, signature)
        if outputs is not None:
            bad = sorted(set(outputs) - set(sig.outputs))
            if bad:
                raise InputError(f"unknown output(s) {bad}; expected {sorted(sig.outputs)}")
        result = self.plan_for(tensors).run(tensors)
        wanted = sig.outputs if outputs is None else {k: sig.outputs[k] for k in outputs}
        return {alias: result[spec.name] for alias, spec in wanted.items()}

    def predict(self, x: Any) -> np.ndarray:
        """Shorthand for a single-input, single-output signature."""
        sig = self.signature()
        if len(sig.inputs) != 1 or len(sig.outputs) != 1:
            raise InputError("predict() needs a signature with one input and one output")
        (alias,) = sig.inputs
        (out,) = self.run({alias: x}).values()
        return out


def _dims(shape: Shape) -> list[int]:
    return [-1 if d is None else d for d in shape]
