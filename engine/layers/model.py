"""``Model`` (functional) and ``Sequential``: layers -> one engine graph, weights, save, predict."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from engine.ir import Graph, verify
from engine.layers.base import Builder, Layer, SymbolicTensor, _check_name
from engine.loader import compile_graph, save
from engine.model import DEFAULT_SIGNATURE, Signature, TensorSpec
from engine.model import Model as EngineModel

__all__ = ["Model", "Sequential"]


def _as_list(x: Any, what: str) -> tuple[list[SymbolicTensor], bool]:
    """(tensors, whether a single tensor was given)."""
    single = isinstance(x, SymbolicTensor)
    items = [x] if single else list(x) if isinstance(x, list | tuple) else None
    if not items or not all(isinstance(t, SymbolicTensor) for t in items):
        raise ValueError(f"Model {what} must be a tensor from Input()/a layer, or a list of them; "
                         f"got {x!r}")
    return items, single


class Model:
    """A functional model: ``Model(inputs=x, outputs=y)`` over symbolic tensors (or lists).

    Names follow Keras, unique within the model: inputs ``input_1``, ``input_2``, ...
    unless ``Input(name=...)``; layers ``conv2d``, ``conv2d_1``, ... unless ``name=``. A
    name, once given, stays with the layer. The graph's inputs are named after the inputs,
    each layer's output value after the layer, its constants ``<layer>/<weight>``; the
    ``serving_default`` signature maps each input's name to it and each output layer's name
    to its output.
    """

    base_name = "model"

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None) -> None:
        self.name = _check_name(name) or self.base_name
        self._compiled: tuple[tuple[int, ...], EngineModel] | None = None
        self._inputs: list[SymbolicTensor] = []
        self._outputs: list[SymbolicTensor] = []
        self._single_in = self._single_out = True
        self._calls: list[SymbolicTensor] = []
        self._layers: list[Layer] = []
        if type(self) is Model or inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model needs both inputs= and outputs=")
            self._inputs, self._single_in = _as_list(inputs, "inputs")
            self._outputs, self._single_out = _as_list(outputs, "outputs")
            self._trace()

    # structure -------------------------------------------------------------------------

    def _trace(self) -> None:
        """Find every call between inputs and outputs, in topological order, and name them."""
        for t in self._inputs:
            if t.layer is not None:
                raise ValueError(f"Model inputs must come from Input(), got {t!r}")
        if len({t.id for t in self._inputs}) != len(self._inputs):
            raise ValueError("the same Input() is listed twice in Model inputs")
        known = {t.id for t in self._inputs}
        seen: dict[int, SymbolicTensor] = {}
        stack = list(self._outputs)
        while stack:
            t = stack.pop()
            if t.id in seen or t.id in known:
                continue
            if t.layer is None:
                raise ValueError(f"the outputs depend on an Input() that is not in the model's "
                                 f"inputs ({t!r}): the graph is disconnected")
            seen[t.id] = t
            stack.extend(t.inputs)
        self._calls = sorted(seen.values(), key=lambda t: t.id)
        layers: dict[int, Layer] = {}
        for t in self._calls:
            assert t.layer is not None
            layers.setdefault(id(t.layer), t.layer)
        self._layers = list(layers.values())
        self._assign_names()
        self._compiled = None

    def _assign_names(self) -> None:
        used: dict[str, object] = {}

        def claim(name: str, owner: object) -> None:
            if name in used and used[name] is not owner:
                raise ValueError(f"name {name!r} is used twice in model {self.name!r}; "
                                 f"names must be unique within a model")
            used[name] = owner

        for t in self._inputs:
            if t.name is not None:
                claim(t.name, t)
        for layer in self._layers:
            if layer._name is not None:
                claim(layer._name, layer)
        k = 1
        for t in self._inputs:
            if t.name is None:
                while f"input_{k}" in used:
                    k += 1
                t.name = f"input_{k}"
                claim(t.name, t)
        for layer in self._layers:
            if layer._name is None:
                base, k = layer.base_name, 0
                name = base
                while name in used:
                    k += 1
                    name = f"{base}_{k}"
                layer._name = name
                claim(name, layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {[x.name for x in self._layers]}")

    @property
    def inputs(self) -> list[SymbolicTensor]:
        self._ensure_built()
        return list(self._inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        self._ensure_built()
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        return [str(t.name) for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [alias for alias, _ in self._output_aliases()]

    def _ensure_built(self) -> None:
        if not self._inputs:
            raise ValueError(f"model {self.name!r} has no input yet: start it with Input(shape) "
                             f"or give the first layer input_shape=")

    def _output_aliases(self) -> list[tuple[str, SymbolicTensor]]:
        counts: dict[int, int] = {}
        names: dict[int, str] = {}
        for t in self._calls:  # a shared layer's later calls get '<layer>/call_<k>'
            assert t.layer is not None
            k = counts.get(id(t.layer), 0)
            counts[id(t.layer)] = k + 1
            names[t.id] = t.layer.name if k == 0 else f"{t.layer.name}/call_{k}"
        out: list[tuple[str, SymbolicTensor]] = []
        for t in self.outputs:
            alias = str(t.name) if t.layer is None else names[t.id]
            if any(a == alias for a, _ in out):
                raise ValueError(f"output {alias!r} is listed twice in model {self.name!r}")
            out.append((alias, t))
        return out

    # weights ---------------------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's weights, layer by layer, in Keras order and shapes (copies)."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight; checks the count and each shape before changing anything."""
        counts = [len(layer.get_weights()) for layer in self._layers]
        if len(weights) != sum(counts):
            per = ", ".join(f"{x.name}: {n}" for x, n in zip(self._layers, counts, strict=True)
                            if n)
            raise ValueError(f"model {self.name!r} expects {sum(counts)} weight arrays "
                             f"({per}), got {len(weights)}")
        checked, i = [], 0
        for layer, n in zip(self._layers, counts, strict=True):
            checked.append(layer.check_weights(list(weights[i:i + n])))
            i += n
        for layer, arrays in zip(self._layers, checked, strict=True):
            if arrays:
                layer.set_weights(arrays)

    @property
    def weight_names(self) -> list[str]:
        return [n for layer in self._layers for n in layer.weight_names]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers)

    # the engine graph ------------------------------------------------------------------

    def _emit(self) -> tuple[Graph, list[tuple[str, str]]]:
        """The verified graph (a snapshot of the current weights) and (alias, value) outputs."""
        self._ensure_built()
        b = Builder()
        values: dict[int, str] = {}
        for t in self._inputs:
            values[t.id] = b.add_input(str(t.name), t.type)
        counts: dict[int, int] = {}
        for t in self._calls:
            layer = t.layer
            assert layer is not None
            k = counts.get(id(layer), 0)
            counts[id(layer)] = k + 1
            b.begin(layer.name, layer.name if k == 0 else f"{layer.name}/call_{k}")
            values[t.id] = layer.emit(b, [values[x.id] for x in t.inputs])
        outputs: list[tuple[str, str]] = []
        for alias, t in self._output_aliases():
            if t.layer is None:
                raise ValueError(f"model {self.name!r}: output {alias!r} is a model input")
            v = values[t.id]
            if any(v == n for n, _ in b.inputs):
                # an input passed through (Dropout...) still needs a node to be an output
                b.op("Identity", [v], out=alias)
                v = alias
            outputs.append((alias, v))
        names = list(dict.fromkeys(v for _, v in outputs))
        return verify(Graph.make(b.inputs, names, b.nodes, b.constants)), outputs

    def to_graph(self) -> Graph:
        """The model as a verified engine graph, holding a snapshot of the current weights."""
        return self._emit()[0]

    @staticmethod
    def _signatures(graph: Graph, outputs: list[tuple[str, str]]) -> dict[str, Signature]:
        ins = {n: TensorSpec(n, t.dtype, t.shape) for n, t in graph.inputs}
        outs = {a: TensorSpec(v, graph.types[v].dtype, graph.types[v].shape) for a, v in outputs}
        return {DEFAULT_SIGNATURE: Signature(MappingProxyType(ins), MappingProxyType(outs))}

    def signatures(self) -> dict[str, Signature]:
        """``serving_default``: input names -> graph inputs, output layer names -> outputs."""
        return self._signatures(*self._emit())

    def save(self, path: str | os.PathLike[str],
             metadata: Mapping[str, object] | None = None) -> Path:
        """Write a version directory (model.json + weights.safetensors) via ``engine.save``."""
        graph, outputs = self._emit()
        meta = {"producer": "engine.layers", "model_name": self.name, **(metadata or {})}
        return save(path, graph, self._signatures(graph, outputs), meta)

    def compiled(self) -> EngineModel:
        """The engine Model for the current weights (rebuilt after any weight change)."""
        key = tuple(layer.version for layer in self._layers)
        if self._compiled is None or self._compiled[0] != key:
            graph, outputs = self._emit()
            self._compiled = (key, compile_graph(graph, self._signatures(graph, outputs)))
        return self._compiled[1]

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = None) -> Any:
        """Run the model: an array (or a list/dict by input name for several inputs) in,
        an array out (a list for several outputs), like Keras."""
        self._ensure_built()
        names = self.input_names
        if isinstance(x, Mapping):
            feeds = {n: x[n] for n in names}
        elif len(names) == 1 and not (isinstance(x, list | tuple) and len(x) == 1
                                      and isinstance(x[0], np.ndarray)):
            feeds = {names[0]: x}  # an array, or nested lists of numbers
        else:
            if len(x) != len(names):
                raise ValueError(f"model {self.name!r} takes {len(names)} inputs {names}, "
                                 f"got {len(x)}")
            feeds = dict(zip(names, x, strict=True))
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        model = self.compiled()
        aliases = self.output_names
        n = len(next(iter(feeds.values())))
        step = n if not batch_size else int(batch_size)
        parts = [model.run({k: v[i:i + step] for k, v in feeds.items()})
                 for i in range(0, max(n, 1), max(step, 1))]
        outs = [np.concatenate([p[a] for p in parts]) if len(parts) > 1 else parts[0][a]
                for a in aliases]
        return outs[0] if self._single_out and len(outs) == 1 else outs

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for Keras scripts and ignored: these models are for inference only."""

    def summary(self, print_fn: Any = print) -> None:
        self._ensure_built()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for t in self._inputs:
            rows.append((f"{t.name} (InputLayer)", str(t.shape), "0"))
        for t in self._calls:
            assert t.layer is not None
            rows.append((f"{t.layer.name} ({type(t.layer).__name__})", str(t.shape),
                         str(t.layer.count_params())))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        lines = [f'Model: "{self.name}"']
        lines += ["".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append(f"Total params: {self.count_params():,}")
        print_fn("\n".join(lines))


class Sequential(Model):
    """A stack of single-input layers: ``Sequential([Input(shape), Conv2D(...), ...])`` or
    ``add()`` one at a time. The input comes from a leading ``Input()``, the first layer's
    ``input_shape=``, or ``build(input_shape)``/``predict`` when neither was given."""

    base_name = "sequential"

    def __init__(self, layers: Sequence[Any] | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        self._pending: list[Layer] = []
        for item in layers or []:
            self.add(item)

    def add(self, layer: Any) -> None:
        if isinstance(layer, SymbolicTensor):
            if layer.layer is not None:
                raise ValueError("Sequential takes Input() tensors or layers, not a layer output")
            if self._inputs or self._pending:
                raise ValueError("Input() must come first in a Sequential model")
            self._inputs, self._outputs = [layer], [layer]
            self._trace()
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a layer, got {type(layer).__name__}")
        if not self._inputs and not self._pending and layer.input_shape is not None:
            from engine.layers.base import Input

            self.add(Input(layer.input_shape, dtype=layer.dtype))
        if not self._inputs:
            self._pending.append(layer)
            return
        self._outputs = [layer(self._outputs[0])]
        self._trace()

    def build(self, input_shape: Sequence[int | None], dtype: str | None = None) -> None:
        """Give a model with no input one: ``input_shape`` includes the batch dim (Keras)."""
        if self._inputs:
            return
        from engine.layers.base import Input

        pending, self._pending = self._pending, []
        first_dtype = dtype or (pending[0].dtype if pending else "float32")
        self.add(Input(tuple(input_shape)[1:], dtype=first_dtype))
        for layer in pending:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers) + list(self._pending)

    def _ensure_built(self) -> None:
        if not self._inputs:
            super()._ensure_built()

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = None) -> Any:
        if not self._inputs:
            self.build((None, *np.shape(x)[1:]))
        return super().predict(x, batch_size, verbose)
