"""Keras models -> engine graphs, without Keras: a Keras 3 ``.keras`` zip (config.json +
model.weights.h5) or a legacy ``.h5`` (``model_config`` attribute + ``model_weights`` group).

The config is read with ``json`` and the weights with ``h5py``; each Keras layer becomes the
matching ``engine.layers`` layer (keras_layers.py), called as the config's graph says, and the
result is emitted like any authored model: NHWC, Keras weight layouts, the batch dim dynamic.
Signature ``serving_default``: the model's input layer names in, its output layer names out.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py  # only loaded with this module, i.e. when a Keras file is served
import numpy as np

from engine.errors import ModelFormatError, UnsupportedOpError
from engine.importers import Imported
from engine.importers.keras_config import Problems, dtype_policy
from engine.importers.keras_layers import SUPPORTED_LAYERS, Converted, convert_layer
from engine.importers.keras_ops import (
    BINARY_OPS,
    SUPPORTED_OPS,
    UNARY_OPS,
    BinaryOp,
    OpLayer,
)
from engine.importers.keras_weights import LegacyWeights, V3Weights, Weights
from engine.layers import Input, Layer, Model, SymbolicTensor

__all__ = ["import_keras"]

Ref = tuple[str, int, int]  # (layer name, node index, tensor index): Keras' keras_history
_MODELS = ("Sequential", "Functional", "Model")
_POSITIONAL = ("MultiHeadAttention",)
_INPUT_DTYPES = ("float32", "int32", "int64", "uint8")


@dataclass
class _Node:
    """One call of a layer: its positional tensor inputs, flattened."""

    args: list[Ref]
    consts: list[tuple[int, float]] = field(default_factory=list)  # (position, number)


@dataclass
class _Spec:
    class_name: str
    name: str  # the Keras name, unique within its own model
    config: Mapping[str, Any]
    nodes: list[_Node] = field(default_factory=list)
    is_op: bool = False  # a keras.ops call in a functional graph (``x + y``), not a layer
    layer: Layer | None = None
    nested: _Graph | None = None


@dataclass
class _Graph:
    """One Keras model (the top one or a nested one), its layers' calls in config order."""

    name: str
    specs: list[_Spec]
    inputs: list[Ref]
    outputs: list[Ref]
    input_types: dict[str, tuple[tuple[int | None, ...], str]]  # name -> (shape, dtype)


def import_keras(path: Path) -> Imported:
    """Read a ``.keras`` or ``.h5`` Keras model into an engine graph and its signature."""
    config, weights, meta, handle = _open(path)
    try:
        problems = Problems()
        try:
            top = _parse_model(config, problems)
            _convert(top, weights, problems, "")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFormatError(f"{path}: the Keras model config is not understood "
                                   f"({type(exc).__name__}: {exc})") from None
    finally:
        handle.close()
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems.items)
        raise UnsupportedOpError(
            f"{path}: this Keras model cannot be served: {len(problems.items)} unsupported "
            f"layer(s)/option(s):\n{lines}\nsupported layers: {', '.join(SUPPORTED_LAYERS)}"
        )
    inputs = {name: Input(shape[1:], name=name, dtype=dtype)
              for name, (shape, dtype) in top.input_types.items()}
    try:
        outputs = _trace(top, [inputs[r[0]] for r in top.inputs])
        model = Model([inputs[r[0]] for r in top.inputs], outputs, name=_safe_name(top.name))
        graph, signatures = model.to_graph(), model.signatures()
    except (TypeError, ValueError) as exc:
        raise UnsupportedOpError(f"{path}: {exc}") from None
    return Imported(graph, signatures, {"producer": "keras", "model_name": top.name, **meta})


# --- reading the file ---------------------------------------------------------------------


def _open(path: Path) -> tuple[dict[str, Any], Weights, dict[str, Any], Any]:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                config = json.loads(zf.read("config.json"))
                meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
                if "model.weights.h5" not in names:
                    raise ModelFormatError(
                        f"{path}: no model.weights.h5 in the archive (found {sorted(names)}); "
                        f"sharded or npz weights are not supported"
                    )
                data = zf.read("model.weights.h5")
        except (KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: not a readable Keras 3 archive ({exc})") from None
        handle = h5py.File(io.BytesIO(data), "r")
        return config, V3Weights(handle), _meta(meta), handle
    if not h5py.is_hdf5(path):
        raise ModelFormatError(f"{path}: neither a Keras 3 .keras zip nor an HDF5 .h5 file")
    handle = h5py.File(path, "r")
    raw = handle.attrs.get("model_config")
    if raw is None or "model_weights" not in handle:
        handle.close()
        raise ModelFormatError(f"{path}: the HDF5 file has no model_config attribute and "
                               f"model_weights group (a weights-only file from save_weights?)")
    config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    meta = {k: _text(handle.attrs[k]) for k in ("keras_version", "backend") if k in handle.attrs}
    return config, LegacyWeights(handle["model_weights"]), meta, handle


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(meta[k]) for k in ("keras_version", "date_saved") if k in meta}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "keras_model"


# --- the config's graph -------------------------------------------------------------------


def _leaves(value: Any) -> list[Ref | float]:
    """A node's positional arguments, flattened: tensors as refs (Keras 3 tensor dicts, or
    Keras 2 ``[name, node, tensor, kwargs]``), numbers as themselves (``x * 2.0``)."""
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            name, node, tensor = value["config"]["keras_history"]
            return [(str(name), int(node), int(tensor))]
        raise ValueError(f"call argument {value!r} is not a tensor")
    if isinstance(value, list | tuple):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
            return [(value[0], int(value[1]), int(value[2]))]
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    raise ValueError(f"call argument {value!r} is not a tensor")


def _node(raw: Any, spec: _Spec, problems: Problems) -> _Node:
    if isinstance(raw, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        args, kwargs = raw.get("args", []), dict(raw.get("kwargs") or {})
    else:  # Keras 2: [[name, node, tensor, kwargs], ...]
        args = raw
        kwargs = {}
        for entry in raw:
            if len(entry) > 3 and isinstance(entry[3], Mapping):
                kwargs.update(entry[3])
    for key, value in kwargs.items():
        if key == "training" or value is None or value is False:
            continue
        problems.add(spec.name, spec.class_name, f"call argument {key}={value!r} is not supported")
    try:
        leaves = _leaves(args)
    except ValueError as exc:
        problems.add(spec.name, spec.class_name, str(exc))
        leaves = []
    consts = [(i, v) for i, v in enumerate(leaves) if isinstance(v, float)]
    if consts and not spec.is_op:
        problems.add(spec.name, spec.class_name, "non-tensor call arguments are not supported")
    return _Node([r for r in leaves if not isinstance(r, float)], consts)


def _ref_list(value: Any) -> list[Ref]:
    if value and isinstance(value[0], str):  # a single ["name", 0, 0]
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


def _input_type(spec: _Spec, problems: Problems) -> tuple[tuple[int | None, ...], str]:
    c = spec.config
    shape = c.get("batch_shape", c.get("batch_input_shape"))
    if shape is None:
        raise ValueError(f"input {spec.name!r} has no batch_shape")
    dtype = dtype_policy(c.get("dtype")) or "float32"
    if dtype not in _INPUT_DTYPES:
        problems.add(spec.name, spec.class_name, f"input dtype {dtype!r} is not supported "
                     f"(supported: {', '.join(_INPUT_DTYPES)})")
    if c.get("sparse") or c.get("ragged"):
        problems.add(spec.name, spec.class_name, "sparse or ragged inputs are not supported")
    return (None, *(None if d is None else int(d) for d in shape[1:])), dtype


def _is_op(raw: Mapping[str, Any]) -> bool:
    """A keras.ops call (``x + y``) rather than a layer. Legacy .h5 configs drop the module;
    there a known op shows by its config lacking the ``trainable`` that layers record."""
    module = raw.get("module")
    if module is not None:
        return str(module).startswith(("keras.src.ops", "keras.ops"))
    return raw.get("class_name") in SUPPORTED_OPS and "trainable" not in (raw.get("config") or {})


def _parse_model(model: Mapping[str, Any], problems: Problems) -> _Graph:
    """A serialized model ({"class_name", "config"}) -> its layers and their calls."""
    class_name, config = model.get("class_name"), model.get("config") or {}
    if class_name not in _MODELS or "layers" not in config:
        raise ValueError(f"model class {class_name!r} without a layer graph (a subclassed "
                         f"model?); only Sequential and functional models can be imported")
    name = str(config.get("name") or class_name)
    specs = []
    for raw in config["layers"]:
        cfg = raw.get("config") or {}
        spec = _Spec(str(raw["class_name"]), str(raw.get("name") or cfg.get("name")), cfg,
                     is_op=_is_op(raw))
        specs.append(spec)
        for node in raw.get("inbound_nodes") or []:
            spec.nodes.append(_node(node, spec, problems))
        if spec.class_name in _MODELS:
            spec.nested = _parse_model(raw, problems)
    input_types = {s.name: _input_type(s, problems) for s in specs if s.class_name == "InputLayer"}
    if class_name != "Sequential":
        return _Graph(name, specs, _ref_list(config["input_layers"]),
                      _ref_list(config["output_layers"]), input_types)
    # Sequential: chain the layers; the input is an InputLayer or the first layer's shape
    layers = [s for s in specs if s.class_name != "InputLayer"]
    if not input_types:
        first = layers[0].config if layers else {}
        shape = first.get("batch_input_shape", first.get("batch_shape",
                          config.get("build_input_shape")))
        if shape is None:
            raise ValueError(f"Sequential model {name!r} has no input shape")
        in_name = f"{layers[0].name}_input"
        in_spec = _Spec("InputLayer", in_name, {"batch_shape": shape,
                                                "dtype": first.get("dtype", "float32")})
        input_types[in_name] = _input_type(in_spec, problems)
    prev: Ref = (next(iter(input_types)), 0, 0)
    for spec in layers:
        spec.nodes = [_Node([prev])]
        prev = (spec.name, 0, 0)
    return _Graph(name, specs, [(next(iter(input_types)), 0, 0)], [prev], input_types)


# --- layers and weights -------------------------------------------------------------------


def _convert(g: _Graph, weights: Weights, problems: Problems, prefix: str) -> None:
    """Make every layer's engine counterpart and give it the file's weights."""
    # keras.ops calls hold no weights and are not in the model's layer list the file follows
    layer_specs = [s for s in g.specs if not s.is_op]
    listing = [(s.class_name, s.name) for s in layer_specs]
    where = {id(s): i for i, s in enumerate(layer_specs)}
    for spec in g.specs:
        index = where.get(id(spec), -1)
        if spec.class_name == "InputLayer":
            continue
        if spec.nested is not None:
            _convert(spec.nested, weights.nested(listing, index), problems, f"{prefix}{spec.name}.")
            continue
        if spec.is_op:
            consts = spec.nodes[0].consts if spec.nodes else []
            converted = _convert_op(spec.class_name, prefix + spec.name, consts, problems)
        else:
            converted = convert_layer(spec.class_name, prefix + spec.name, spec.config, problems)
        if converted is None:
            continue
        layer, tags = converted
        arrays = weights.arrays(listing, index) if index >= 0 else []
        if len(arrays) != len(tags):
            problems.add(spec.name, spec.class_name,
                         f"the file holds {len(arrays)} weight array(s) "
                         f"{[a.shape for a in arrays]}, expected {len(tags)} {tags}")
            continue
        for tag, arr in zip(tags, arrays, strict=True):
            layer.add_weight(tag, np.asarray(arr))
        layer.built = True  # the weights come from the file, not from an initializer
        spec.layer = layer


def _convert_op(class_name: str, name: str, consts: Sequence[tuple[int, float]],
               problems: Problems) -> Converted | None:
    """The engine layer for a keras.ops call; ``consts`` are its number arguments."""
    if class_name in BINARY_OPS and len(consts) <= 1:
        return BinaryOp(BINARY_OPS[class_name], consts[0] if consts else None, name=name), []
    if class_name in UNARY_OPS and not consts:
        return OpLayer(UNARY_OPS[class_name], name=name), []
    problems.add(name, class_name, f"keras.ops call is not supported (supported: "
                 f"{', '.join(SUPPORTED_OPS)}, with tensor or number operands)")
    return None


def _trace(g: _Graph, feeds: Sequence[SymbolicTensor]) -> list[SymbolicTensor]:
    """Call the engine layers as the config's nodes say; returns the model's outputs."""
    values: dict[Ref, SymbolicTensor] = {r: t for r, t in zip(g.inputs, feeds, strict=True)}
    pending = [(spec, k, node) for spec in g.specs for k, node in enumerate(spec.nodes)]
    while pending:
        rest = []
        for spec, k, node in pending:
            if not all(r in values for r in node.args):
                rest.append((spec, k, node))
                continue
            xs = [values[r] for r in node.args]
            if spec.nested is not None:
                outs = _trace(spec.nested, xs)
            else:
                assert spec.layer is not None
                # MultiHeadAttention takes (query, value[, key]) as separate arguments
                many = spec.class_name in _POSITIONAL
                outs = [spec.layer(*xs) if many else spec.layer(xs[0] if len(xs) == 1 else xs)]
            for i, out in enumerate(outs):
                values[(spec.name, k, i)] = out
        if len(rest) == len(pending):
            missing = sorted({r for _, _, n in rest for r in n.args if r not in values})
            raise ValueError(f"model {g.name!r}: layer inputs {missing} are never produced")
        pending = rest
    try:
        return [values[r] for r in g.outputs]
    except KeyError as exc:
        raise ValueError(f"model {g.name!r}: output {exc} is never produced") from None
