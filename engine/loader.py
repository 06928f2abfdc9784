"""``engine.load`` / ``engine.save``: between a version directory and a ready ``Model``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from engine.errors import EngineError, ModelFormatError
from engine.format import read_model_dir, write_model_dir
from engine.importers import find_foreign_file, import_file
from engine.ir import Graph, verify
from engine.model import Model, Signature, default_signatures
from engine.passes import optimize

__all__ = ["compile_graph", "load", "save"]


def _signatures(raw: Mapping[str, object], graph: Graph, where: str) -> dict[str, Signature]:
    if not raw:
        return default_signatures(graph)
    sigs = {}
    for key, doc in raw.items():
        try:
            sig = Signature.from_json(doc)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, EngineError) as exc:
            raise ModelFormatError(f"{where}: signature {key!r} is malformed ({exc})") from None
        known = set(graph.types)
        for alias, spec in {**sig.inputs, **sig.outputs}.items():
            if spec.name not in known:
                raise ModelFormatError(
                    f"{where}: signature {key!r} entry {alias!r} names unknown tensor "
                    f"{spec.name!r}"
                )
        sigs[key] = sig
    return sigs


def compile_graph(
    graph: Graph, signatures: Mapping[str, Signature] | None = None, path: str | None = None
) -> Model:
    """An in-memory graph -> a ready Model (verify, optimize), as ``load`` does from disk."""
    graph = verify(graph)
    sigs = dict(signatures) if signatures else default_signatures(graph)
    return Model(optimize(graph), MappingProxyType(sigs), path)


def load(path: str | os.PathLike[str], *, optimize_graph: bool = True) -> Model:
    """Read, verify and optimize a version directory (ours, or one holding a model.onnx /
    model.keras / model.h5 / model.tflite), or such a file itself. Never returns a partial model."""
    root = Path(path)
    foreign = find_foreign_file(root)
    if foreign is not None and not (root / "model.json").is_file():
        imported = import_file(foreign)
        where = str(foreign)
        try:
            graph = verify(imported.graph)
        except EngineError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        sigs = dict(imported.signatures) if imported.signatures else default_signatures(graph)
    else:
        raw = read_model_dir(root)
        where = str(root / "model.json")
        try:
            graph = verify(raw.graph)
        except EngineError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        sigs = _signatures(raw.signatures, graph, where)
    if optimize_graph:
        graph = optimize(graph)
    return Model(graph, MappingProxyType(sigs), str(root))


def save(
    path: str | os.PathLike[str],
    graph: Graph,
    signatures: Mapping[str, Signature] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Verify ``graph`` and write it as a version directory (model.json + weights)."""
    graph = verify(graph)
    return write_model_dir(path, graph, signatures or default_signatures(graph), metadata)
