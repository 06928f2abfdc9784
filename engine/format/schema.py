"""Graph <-> JSON, shared by the reader and writer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.dtypes import canonical
from engine.ir import Node, TensorType

__all__ = ["FORMAT_TAG", "MODEL_JSON", "WEIGHTS_FILE", "node_to_json", "node_from_json",
           "thaw"]

FORMAT_TAG = "numbaserve/1"
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"


def thaw(value: Any) -> Any:
    """Frozen attribute values (tuples, mapping proxies) back to JSON types."""
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


def node_to_json(node: Node) -> dict[str, Any]:
    d: dict[str, Any] = {"op": node.op, "inputs": list(node.inputs),
                         "outputs": list(node.outputs)}
    if node.name:
        d["name"] = node.name
    if node.attrs:
        d["attrs"] = thaw(node.attrs)
    return d


def node_from_json(d: Mapping[str, Any]) -> Node:
    return Node.make(str(d["op"]), [str(x) for x in d["inputs"]],
                     [str(x) for x in d["outputs"]], d.get("attrs") or {}, str(d.get("name", "")))


def type_from_json(d: Mapping[str, Any]) -> TensorType:
    shape = tuple(None if s is None or s == -1 else int(s) for s in d["shape"])
    return TensorType(canonical(d["dtype"]), shape)
