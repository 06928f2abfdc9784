"""KServe v2 / Open Inference Protocol (``/v2/...``), beside TF Serving's API on the same port.

Same models, lifecycle, batching and metrics as v1: requests go through ``service.inference``
like any other. As in v1, the hot path, ``POST /v2/models/{m}[/versions/{v}|/labels/{l}]/infer``,
is a raw ASGI route (``InferRoute``): read the body (bounded), decode it with ``v2_binary``
(JSON, or Triton's binary tensor extension straight into numpy views), infer, encode, send,
and count it in the per-version statistics. Health and server metadata are ordinary FastAPI
routes here; model metadata, readiness, config, statistics and the repository extension are
in ``protocol/repository.py``.

``/labels/{l}`` in place of ``/versions/{v}`` is our addition (TF Serving's version labels).
"""

from __future__ import annotations

import re
import time
import zlib
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

import engine
from service.config import Settings
from service.errors import InvalidArgument, PayloadTooLarge, Unavailable
from service.inference import Inference
from service.protocol.asgi import (
    Disconnected,
    JsonResponse,
    PostRoute,
    read_body,
    send_bytes,
    send_error,
)
from service.protocol.repository import (
    InferStats,
    failed_version,
    models_router,
    repository_router,
)
from service.protocol.v1 import parse_version
from service.protocol.v2_binary import encode_response, parse_request

__all__ = ["EXTENSIONS", "InferRoute", "health_router", "install"]

EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics",
              "parameters"]

_INFER_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)"
    r"(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?/infer$"
)
_HEADER_LEN = b"inference-header-content-length"


# ---------------------------------------------------------------------------- hot route


def _decompress(body: bytes | bytearray, encoding: bytes, limit: int) -> bytes | bytearray:
    """A gzip/deflate request body (tritonclient's ``request_compression_algorithm``)."""
    enc = encoding.strip().lower()
    if enc in (b"", b"identity"):
        return body
    wbits = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}.get(enc)
    if wbits is None:
        raise InvalidArgument(f"unsupported Content-Encoding {enc.decode('latin-1')!r}; "
                              "use gzip, deflate or none")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"cannot decompress the {enc.decode()} request body: {exc}") \
            from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def _headers(scope: Scope) -> tuple[int | None, bytes]:
    length: int | None = None
    encoding = b""
    for key, value in scope["headers"]:
        if key == _HEADER_LEN:
            try:
                length = int(value)
            except ValueError:
                raise InvalidArgument(
                    f"Inference-Header-Content-Length must be an integer, got "
                    f"{value.decode('latin-1')!r}") from None
        elif key == b"content-encoding":
            encoding = value
    return length, encoding


async def _send(send: Send, status: int, body: bytes, header_length: int | None) -> None:
    if header_length is None:
        await send_bytes(send, status, body)
    else:
        await send_bytes(send, status, body, [(_HEADER_LEN, str(header_length).encode("latin-1"))],
                         content_type=b"application/octet-stream")


class InferRoute(PostRoute):
    """``POST /v2/models/{m}[/versions/{v}|/labels/{l}]/infer`` as raw ASGI."""

    def __init__(self, inference: Inference, manager: Any, stats: InferStats,
                 max_request_bytes: int) -> None:
        super().__init__(_INFER_PATH, "/v2/models/{name}/infer", "v2_infer")
        self.inference = inference
        self.manager = manager
        self.stats = stats
        self.max_request_bytes = max_request_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.refuse_unless_post(scope, send):
            return
        params = scope["path_params"]
        name, label = params["name"], params.get("label")
        t0 = time.perf_counter_ns()
        try:
            version = parse_version(params["version"]) if params.get("version") else None
        except InvalidArgument as exc:  # not counted: no version to count it against
            await send_error(send, exc)
            return
        try:
            header_length, encoding = _headers(scope)
            body = await read_body(scope, receive, self.max_request_bytes)
            if encoding:
                body = _decompress(body, encoding, self.max_request_bytes)
            req = parse_request(body, header_length)
            t1 = time.perf_counter_ns()
            result = await self.inference.infer(
                name, req.inputs, version=version, label=label, signature=req.signature,
                outputs=None if req.outputs is None else [o.name for o in req.outputs],
                api="infer",
            )
            t2 = time.perf_counter_ns()
            out, out_header = encode_response(result.name, result.version, result.outputs,
                                              req.id, req.outputs, req.binary_output)
        except Disconnected:
            return
        except Exception as exc:  # every error goes out as {"error": ...}
            failed = failed_version(self.manager, name, version, label)
            if failed is not None:
                self.stats.fail(name, failed, time.perf_counter_ns() - t0)
            await send_error(send, exc)
            return
        await _send(send, 200, out, out_header)
        self.stats.success(result.name, result.version, req.batch_size, t0, t1, t2,
                           time.perf_counter_ns())


def health_router(manager: Any) -> APIRouter:
    """``GET /v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``."""
    router = APIRouter(prefix="/v2", tags=["KServe v2"])

    @router.get("", summary="Server metadata")
    async def server_metadata() -> Response:
        return JsonResponse({"name": "numbaserve", "version": engine.__version__,
                      "extensions": EXTENSIONS})

    @router.get("/health/live", summary="Liveness")
    async def live() -> Response:
        return JsonResponse({"live": True})

    @router.get("/health/ready", summary="Readiness: every model has an AVAILABLE version",
                responses={503: {"description": "Some model is not ready yet"}})
    async def ready() -> Response:
        if not manager.ready():
            waiting = sorted(m.name for m in manager.models() if not m.ready)
            raise Unavailable(f"not ready: no AVAILABLE version yet for {waiting or 'the server'}")
        return JsonResponse({"ready": True})

    return router


def _infer_doc(where: str) -> dict[str, Any]:
    params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if where:
        params.append({"name": where, "in": "path", "required": True,
                       "schema": {"type": "string"}})
    example = {"id": "1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                      "data": [1.0, 2.0, 3.0, 4.0]}]}
    return {"post": {
        "tags": ["KServe v2"],
        "summary": f"Infer ({where or 'latest version'})",
        "description": "Open Inference Protocol request; Triton's binary tensor extension "
                       "with Inference-Header-Content-Length. See docs/kserve-v2.md.",
        "operationId": f"v2_infer_{where or 'latest'}",
        "parameters": params,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}, "example": example},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {
            "200": {"description": "Outputs (JSON, or JSON header + binary tensors)"},
            "400": {"description": "Bad input: {\"error\": message}"},
            "404": {"description": "Unknown model, version or label"},
            "413": {"description": "Request body too large"},
            "503": {"description": "No AVAILABLE version, or the queue is full"},
        },
    }}


def install(app: FastAPI, manager: Any, inference: Inference, settings: Settings) -> InferStats:
    """Add the v2 routes: the hot ``/infer`` route first, then health, models and
    repository. Returns the statistics the ``/stats`` routes report."""
    stats = InferStats()
    app.router.routes.insert(0, InferRoute(inference, manager, stats, settings.max_request_bytes))
    app.include_router(health_router(manager))
    app.include_router(models_router(manager, stats, settings))
    app.include_router(repository_router(manager, settings))
    app.state.v2_stats = stats

    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        paths = schema.setdefault("paths", {})
        for suffix, where in (("", ""), ("/versions/{version}", "version"),
                              ("/labels/{label}", "label")):
            paths[f"/v2/models/{{name}}{suffix}/infer"] = _infer_doc(where)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return stats
