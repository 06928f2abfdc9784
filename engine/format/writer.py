"""Write a version directory atomically enough for a polling server.

Files are written under ``<dir>.partial`` (ignored by the server's source) and renamed into
place at the end, so a reader never sees half a model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import orjson
from safetensors.numpy import save_file

from engine.format.schema import FORMAT_TAG, MODEL_JSON, WEIGHTS_FILE, node_to_json
from engine.ir import Graph

__all__ = ["write_model_dir", "sha256_file"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_model_dir(
    path: str | os.PathLike[str],
    graph: Graph,
    signatures: Mapping[str, object],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``graph`` and its signatures (objects with ``to_json``) to ``path``."""
    final = Path(path)
    if final.exists() and any(final.iterdir()):
        raise FileExistsError(f"{final} already exists and is not empty")
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {name: arr for name, arr in graph.constants.items()}
    save_file(weights, str(tmp / WEIGHTS_FILE))
    doc = {
        "format": FORMAT_TAG,
        "graph": {
            "inputs": [
                {"name": n, "dtype": t.dtype, "shape": list(t.shape)} for n, t in graph.inputs
            ],
            "outputs": list(graph.outputs),
            "nodes": [node_to_json(n) for n in graph.nodes],
            "constants": sorted(graph.constants),
        },
        "signatures": {k: s.to_json() for k, s in signatures.items()},  # type: ignore[attr-defined]
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(tmp / WEIGHTS_FILE)},
        "metadata": dict(metadata or {}),
    }
    (tmp / MODEL_JSON).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    # safetensors writes through a private temp file (mode 0600): give the weights the mode
    # any new file gets here (the umask's), or a server running as another user (the Docker
    # image's) could read model.json but not the weights.
    os.chmod(tmp / WEIGHTS_FILE, (tmp / MODEL_JSON).stat().st_mode & 0o777)
    if final.exists():
        final.rmdir()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final
