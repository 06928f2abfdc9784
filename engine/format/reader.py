"""Read and validate a version directory; every failure names the file and what is wrong."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from safetensors import SafetensorError
from safetensors.numpy import load

from engine.errors import ChecksumError, ModelFormatError
from engine.format.schema import (
    FORMAT_TAG,
    MODEL_JSON,
    WEIGHTS_FILE,
    node_from_json,
    type_from_json,
)
from engine.ir import Graph

__all__ = ["RawModel", "read_model_dir"]


@dataclass(frozen=True)
class RawModel:
    """What is on disk, checked for form but not yet verified as a graph."""

    graph: Graph
    signatures: dict[str, Any]  # alias -> JSON, turned into Signature by the loader
    metadata: dict[str, Any]


def _require(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in doc:
        raise ModelFormatError(f"{where}: missing key {key!r}")
    if not isinstance(doc[key], kind):
        raise ModelFormatError(f"{where}: {key!r} must be a {kind.__name__}")
    return doc[key]


def read_model_dir(path: str | os.PathLike[str]) -> RawModel:
    root = Path(path)
    if not root.is_dir():
        raise ModelFormatError(f"{root}: not a directory")
    mj = root / MODEL_JSON
    if not mj.is_file():
        raise ModelFormatError(f"{mj}: not found")
    try:
        doc = orjson.loads(mj.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ModelFormatError(f"{mj}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{mj}: top level must be an object")
    if doc.get("format") != FORMAT_TAG:
        raise ModelFormatError(f"{mj}: format is {doc.get('format')!r}, expected {FORMAT_TAG!r}")
    g = _require(doc, "graph", dict, str(mj))
    wdoc = _require(doc, "weights", dict, str(mj))
    sigs = doc.get("signatures") or {}
    if not isinstance(sigs, dict):
        raise ModelFormatError(f"{mj}: 'signatures' must be an object")

    wfile = root / str(wdoc.get("file", WEIGHTS_FILE))
    if not wfile.is_file():
        raise ModelFormatError(f"{wfile}: not found")
    blob = wfile.read_bytes()
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelFormatError(f"{wfile}: truncated or corrupt safetensors file ({exc})") from None
    expected = wdoc.get("sha256")
    actual = hashlib.sha256(blob).hexdigest()
    if expected != actual:
        raise ChecksumError(
            f"{wfile}: sha256 {actual} does not match {expected} recorded in {MODEL_JSON}"
        )

    try:
        inputs = [(str(i["name"]), type_from_json(i)) for i in g["inputs"]]
        nodes = [node_from_json(n) for n in g["nodes"]]
        outputs = [str(o) for o in g["outputs"]]
        names = [str(c) for c in g.get("constants", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{mj}: malformed graph ({type(exc).__name__}: {exc})") from None
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ModelFormatError(f"{wfile}: constant(s) {missing} named in {MODEL_JSON} are missing")
    graph = Graph.make(inputs, outputs, nodes, {n: tensors[n] for n in names})
    return RawModel(graph, sigs, dict(doc.get("metadata") or {}))
