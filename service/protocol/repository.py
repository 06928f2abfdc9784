"""KServe v2's model side: model metadata, readiness, Triton's model configuration and
statistics (``models_router``), and the model repository extension (``repository_router``).

Statistics (``InferStats``) are counted by the ``/infer`` route (protocol/v2.py) per model
version, in the fields Triton's clients read.

The repository extension is Triton's, over the same manager as the management API and behind
the same access rules (bearer token, or loopback only):
- ``POST /v2/repository/index`` (body empty or ``{"ready": bool}``): every configured model's
  versions as ``{"name", "version", "state", "reason"}``; states READY, LOADING, UNLOADING,
  UNAVAILABLE. A model with no version yet is one entry without ``version``.
- ``POST /v2/repository/models/{m}/load``: serve the model again after an unload
  (``ModelManager.load_model``: the version policy applies again). A ``config`` override or
  ``file:`` contents in the parameters are refused (400): models come from the model directory.
- ``POST /v2/repository/models/{m}/unload``: unload every version and keep the model unloaded,
  newly published versions included, until a load (``ModelManager.unload_model``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

import engine
from engine import Signature
from service.config import Settings
from service.errors import InvalidArgument, NotFound, ServiceError, Unavailable
from service.protocol.admin import _guard
from service.protocol.v1 import parse_version
from service.protocol.v2_binary import NP_DTYPE, v2_datatype

__all__ = ["InferStats", "failed_version", "index", "load_model", "model_config",
           "model_metadata", "models_router", "repository_router", "unload_model"]

_TYPE = {v2: "TYPE_STRING" if v2 == "BYTES" else f"TYPE_{v2}" for v2 in NP_DTYPE}
_STATE = {"AVAILABLE": "READY", "START": "LOADING", "LOADING": "LOADING",
          "UNLOADING": "UNLOADING", "END": "UNAVAILABLE"}


def _summary(manager: Any, name: str) -> Any:
    for m in manager.models():
        if m.name == name:
            return m
    raise NotFound(f"model '{name}' is not in the model repository (the model config)")


# ---------------------------------------------------------------------------- statistics


class _Versions:
    """One version's counters, in Triton's statistics extension's terms (durations in ns)."""

    __slots__ = ("counts", "ns", "inference_count", "execution_count", "last_inference",
                 "batches")
    KINDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.ns = dict.fromkeys(self.KINDS, 0)
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference = 0
        self.batches: dict[int, list[int]] = {}  # batch size -> [count, in, infer, out ns]

    def to_json(self, name: str, version: int) -> dict[str, Any]:
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {k: {"count": self.counts[k], "ns": self.ns[k]}
                                for k in self.KINDS}
            | {"cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}},
            "batch_stats": [
                {"batch_size": size,
                 "compute_input": {"count": b[0], "ns": b[1]},
                 "compute_infer": {"count": b[0], "ns": b[2]},
                 "compute_output": {"count": b[0], "ns": b[3]}}
                for size, b in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }


class InferStats:
    """Per (model, version) counters of v2 ``/infer`` requests. Updated and read on the
    event loop only, so no lock. ``queue`` stays 0: the time a request waits for the batcher
    is inside ``compute_infer``."""

    def __init__(self) -> None:
        self._by: dict[str, dict[int, _Versions]] = {}

    def _get(self, name: str, version: int) -> _Versions:
        versions = self._by.setdefault(name, {})
        v = versions.get(version)
        if v is None:
            v = versions[version] = _Versions()
        return v

    def success(self, name: str, version: int, batch: int,
                t0: int, t1: int, t2: int, t3: int) -> None:
        v = self._get(name, version)
        for kind, ns in (("success", t3 - t0), ("compute_input", t1 - t0),
                         ("compute_infer", t2 - t1), ("compute_output", t3 - t2)):
            v.counts[kind] += 1
            v.ns[kind] += ns
        v.counts["queue"] += 1
        v.inference_count += batch
        v.execution_count += 1
        v.last_inference = time.time_ns() // 1_000_000
        b = v.batches.get(batch)
        if b is None:
            b = v.batches[batch] = [0, 0, 0, 0]
        b[0] += 1
        b[1] += t1 - t0
        b[2] += t2 - t1
        b[3] += t3 - t2

    def fail(self, name: str, version: int, ns: int) -> None:
        v = self._get(name, version)
        v.counts["fail"] += 1
        v.ns["fail"] += ns

    def model_stats(self, manager: Any, name: str | None, version: int | None,
                    label: str | None) -> list[dict[str, Any]]:
        """Entries for every configured model (``name`` None), or for one model's AVAILABLE
        and already counted versions, or for one version (NotFound if unknown)."""
        if name is None:
            return [e for m in manager.models() for e in self.model_stats(manager, m.name,
                                                                           None, None)]
        pinned = version is not None or label is not None
        entries = manager.status(name, version, label) if pinned else _statuses(manager, name)
        counted = self._by.get(name, {})
        if not pinned:
            wanted = {e.version for e in entries if e.state == "AVAILABLE"} | set(counted)
        else:
            wanted = {entries[0].version}
        return [(counted.get(v) or _Versions()).to_json(name, v) for v in sorted(wanted)]


def _statuses(manager: Any, name: str) -> list[Any]:
    return list(_summary(manager, name).versions)


def failed_version(manager: Any, name: str, version: int | None,
                    label: str | None) -> int | None:
    """The version a failed request counts against, or None (unknown model or version)."""
    try:
        entries = manager.status(name, version, label)
    except ServiceError:
        return None
    if version is not None or label is not None:
        return int(entries[0].version)
    available = [e.version for e in entries if e.state == "AVAILABLE"]
    return max(available) if available else None


# ---------------------------------------------------------------------------- models


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _dims(shape: tuple[int | None, ...]) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]


def _signature(model: engine.Model) -> Signature:
    sigs = model.signatures
    return sigs.get(engine.DEFAULT_SIGNATURE) or next(iter(sigs.values()))


def model_metadata(manager: Any, name: str, version: int | None,
                   label: str | None) -> dict[str, Any]:
    """The v2 model metadata of the version asked for (its default signature)."""
    summary = _summary(manager, name)
    with manager.acquire(name, version, label) as handle:
        sig = _signature(handle.model)
        served = handle.version
    versions = sorted({v.version for v in summary.versions if v.state == "AVAILABLE"}
                      | {served})
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "numbaserve",
        "inputs": [{"name": a, "datatype": v2_datatype(np.dtype(s.dtype)),
                    "shape": _dims(s.shape)} for a, s in sig.inputs.items()],
        "outputs": [{"name": a, "datatype": v2_datatype(np.dtype(s.dtype)),
                     "shape": _dims(s.shape)} for a, s in sig.outputs.items()],
    }


def model_config(manager: Any, name: str, version: int | None, label: str | None,
                 settings: Settings) -> dict[str, Any]:
    """Triton's model configuration, as far as it applies (``max_batch_size`` 0: dims are
    whole shapes, -1 where dynamic)."""
    summary = _summary(manager, name)
    with manager.acquire(name, version, label) as handle:
        sig = _signature(handle.model)

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": a, "data_type": _TYPE[v2_datatype(np.dtype(s.dtype))],
                 "dims": _dims(s.shape)} for a, s in specs.items()]

    cfg: dict[str, Any] = {
        "name": name,
        "platform": "numbaserve",
        "backend": "numbaserve",
        "version_policy": summary.policy,
        "max_batch_size": 0,
        "input": tensors(sig.inputs),
        "output": tensors(sig.outputs),
        "instance_group": [{"name": name, "kind": "KIND_CPU", "count": 1}],
    }
    if settings.enable_batching:
        cfg["dynamic_batching"] = {}
    return cfg


def _ready(manager: Any, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    summary = _summary(manager, name)
    if version is None and label is None:
        if not summary.ready:
            raise Unavailable(f"model '{name}' has no AVAILABLE version")
        return {"name": name, "ready": True}
    (entry,) = manager.status(name, version, label)
    if entry.state != "AVAILABLE":
        raise Unavailable(f"version {entry.version} of model '{name}' is not ready "
                          f"({entry.state})")
    return {"name": name, "version": str(entry.version), "ready": True}


Handler = Callable[[str, int | None, str | None], Awaitable[Response]]


def _three(router: APIRouter, suffix: str, what: str, fn: Handler) -> None:
    """Register ``fn`` at /models/{name}{suffix}, .../versions/{v}{suffix}, .../labels/{l}."""

    async def latest(name: str) -> Response:
        return await fn(name, None, None)

    async def by_version(name: str, version: str) -> Response:
        return await fn(name, parse_version(version), None)

    async def by_label(name: str, label: str) -> Response:
        return await fn(name, None, label)

    key = suffix.strip("/") or "metadata"
    router.add_api_route(f"/models/{{name}}{suffix}", latest, methods=["GET"],
                         summary=f"{what} (latest version)", name=f"v2_{key}")
    router.add_api_route(f"/models/{{name}}/versions/{{version}}{suffix}", by_version,
                         methods=["GET"], summary=f"{what} (one version)",
                         name=f"v2_{key}_version")
    router.add_api_route(f"/models/{{name}}/labels/{{label}}{suffix}", by_label,
                         methods=["GET"], summary=f"{what} (labelled version)",
                         name=f"v2_{key}_label")


def models_router(manager: Any, stats: InferStats, settings: Settings) -> APIRouter:
    """``GET /v2/models/stats`` and ``/v2/models/{m}[/versions/{v}|/labels/{l}]`` with
    ``""`` (metadata), ``/ready``, ``/config`` and ``/stats``."""
    router = APIRouter(prefix="/v2", tags=["KServe v2"])

    # Before /models/{name}: "stats" is not a model name here (as in Triton).
    @router.get("/models/stats", summary="Statistics of every model (Triton)")
    async def all_stats() -> Response:
        return _Json({"model_stats": stats.model_stats(manager, None, None, None)})

    async def metadata(name: str, version: int | None, label: str | None) -> Response:
        return _Json(model_metadata(manager, name, version, label))

    async def readiness(name: str, version: int | None, label: str | None) -> Response:
        return _Json(_ready(manager, name, version, label))

    async def config(name: str, version: int | None, label: str | None) -> Response:
        return _Json(model_config(manager, name, version, label, settings))

    async def model_stats(name: str, version: int | None, label: str | None) -> Response:
        _summary(manager, name)
        return _Json({"model_stats": stats.model_stats(manager, name, version, label)})

    _three(router, "", "Model metadata", metadata)
    _three(router, "/ready", "Model readiness", readiness)
    _three(router, "/config", "Model configuration (Triton)", config)
    _three(router, "/stats", "Inference statistics (Triton)", model_stats)
    return router


# ---------------------------------------------------------------------------- repository


def index(manager: Any, ready_only: bool = False) -> list[dict[str, Any]]:
    """Triton's repository index over every configured model (highest version first)."""
    out: list[dict[str, Any]] = []
    for m in manager.models():
        if not m.versions and not ready_only:
            out.append({"name": m.name, "state": "UNAVAILABLE",
                        "reason": "no version found under the base path"})
        for v in m.versions:
            state = _STATE.get(v.state.value, "UNAVAILABLE")
            if ready_only and state != "READY":
                continue
            entry = {"name": m.name, "version": str(v.version), "state": state}
            if state == "UNAVAILABLE":
                entry["reason"] = v.error_message or "unloaded"
            out.append(entry)
    return out


async def load_model(manager: Any, name: str) -> None:
    _summary(manager, name)  # NotFound for an unknown model
    await manager.load_model(name)


async def unload_model(manager: Any, name: str) -> None:
    _summary(manager, name)
    await manager.unload_model(name)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("request body must be a JSON object")
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidArgument("'parameters' must be an object")
    return doc


def _status(manager: Any, name: str) -> dict[str, Any]:
    summary = _summary(manager, name)
    return {"name": name, "ready": summary.ready,
            "versions": [e for e in index(manager) if e["name"] == name and "version" in e]}


def repository_router(manager: Any, settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/v2/repository",
        tags=["KServe v2 model repository"],
        dependencies=[Depends(_guard(settings))],
        responses={
            401: {"description": "Missing or wrong bearer token"},
            403: {"description": "No token configured and the client is not loopback"},
            404: {"description": "Unknown model"},
        },
    )
    body_doc = {"requestBody": {"required": False, "content": {
        "application/json": {"schema": {"type": "object"}}}}}

    @router.post("/index", summary="Every model version and its state",
                 openapi_extra={"requestBody": {"required": False, "content": {
                     "application/json": {"example": {"ready": True}}}}})
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        doc = await _body(request)
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument("'ready' must be true or false")
        return index(manager, ready)

    @router.post("/models/{name}/load", summary="Load a model (its newest version)",
                 openapi_extra=body_doc)
    async def load(name: str, request: Request) -> dict[str, Any]:
        params = (await _body(request)).get("parameters", {})
        overrides = sorted(k for k in params if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidArgument(
                f"load parameters {overrides} are not supported: models are read from the "
                "model directory; publish a new version there instead")
        await load_model(manager, name)
        return _status(manager, name)

    @router.post("/models/{name}/unload", summary="Unload every version of a model",
                 openapi_extra=body_doc)
    async def unload(name: str, request: Request) -> dict[str, Any]:
        await _body(request)  # unload_dependents: no model depends on another here
        await unload_model(manager, name)
        return _status(manager, name)

    return router
