"""Foreign model files -> engine IR. Each importer is imported only when its file is loaded, so
``onnx``/``h5py``/``tflite`` are needed only by users who serve such files.

An importer is a function ``(path: Path) -> Imported``: the graph (not yet optimized; the loader
verifies and optimizes it like any saved model) and its signatures (``serving_default`` with the
file's own input/output names unless the format says otherwise).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelFormatError
from engine.ir import Graph

__all__ = ["FOREIGN_FILES", "Imported", "find_foreign_file", "import_file"]


@dataclass(frozen=True)
class Imported:
    graph: Graph
    signatures: Mapping[str, Any] | None = None  # alias -> Signature; None: default signature
    metadata: Mapping[str, Any] = field(default_factory=dict)


# file name -> "module:function"; the first present in a version directory wins, in this order.
FOREIGN_FILES: dict[str, str] = {
    "model.onnx": "engine.importers.onnx:import_onnx",
    "model.keras": "engine.importers.keras:import_keras",
    "model.h5": "engine.importers.keras:import_keras",
    "model.tflite": "engine.importers.tflite:import_tflite",
}
_SUFFIXES = {".onnx": "model.onnx", ".keras": "model.keras", ".h5": "model.h5",
             ".tflite": "model.tflite"}


def find_foreign_file(path: Path) -> Path | None:
    """The foreign model file that ``path`` is or holds, or None for our own format."""
    if path.is_file():
        return path if path.suffix in _SUFFIXES else None
    for name in FOREIGN_FILES:
        if (path / name).is_file():
            return path / name
    return None


def import_file(file: Path) -> Imported:
    target = FOREIGN_FILES[_SUFFIXES.get(file.suffix, file.name)]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelFormatError(
            f"{file}: reading this file needs an optional package that is not installed "
            f"({exc.name}); install numbaserve[importers]"
        ) from None
    importer: Callable[[Path], Imported] = getattr(module, func_name)
    return importer(file)
