"""The management API, ``/v1/admin/...``: list, load, unload, label, reload, show config.

Every call goes through the manager. Access: a bearer token when ``admin_token`` is set
(compared in constant time; 401 + ``WWW-Authenticate`` otherwise); with no token, only
loopback clients (403 for anyone else). uvicorn resolves ``X-Forwarded-For`` from trusted
proxies (loopback by default) into the client address, so a local reverse proxy forwarding
remote clients does not turn them into loopback clients.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from service.config import (
    ConfigError,
    ModelConfig,
    Settings,
    parse_model_config_list,
)
from service.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from service.protocol.v1 import parse_version

__all__ = ["LabelRequest", "ReloadRequest", "admin_router", "is_loopback"]


class LabelRequest(BaseModel):
    version: int = Field(..., ge=1, description="The version the label should point at")


class ReloadRequest(BaseModel):
    model_config_list: str | None = Field(
        None,
        description="A text-format model_config_list to serve instead of the configured one; "
        "omit it to re-read --model_config_file (or --model_base_path).",
        examples=['model_config_list { config { name: "toy" base_path: "/models/toy" } }'],
    )


def is_loopback(host: str | None) -> bool:
    if host is None:  # a unix socket: only local processes can reach it
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _guard(settings: Settings) -> Any:
    token = settings.admin_token or None
    # Parses the header and puts an "Authorize" button on /docs; the checks are ours.
    bearer = HTTPBearer(auto_error=False, description="The server's admin token, if it has one")

    async def require_admin(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if token is not None:
            if credentials is None or not credentials.credentials:
                raise Unauthenticated("the management API needs 'Authorization: Bearer <token>'")
            given = credentials.credentials.strip().encode()
            if not secrets.compare_digest(given, token.encode()):
                raise Unauthenticated("invalid admin token")
            return
        host = request.client.host if request.client else None
        if not is_loopback(host):
            raise PermissionDenied(
                "the management API is open to loopback clients only; set an admin token "
                "(--admin_token or NUMBASERVE_ADMIN_TOKEN) to use it remotely"
            )

    return require_admin


def _summary(manager: Any, name: str) -> dict[str, Any]:
    for m in manager.models():
        if m.name == name:
            return dict(m.to_json())
    raise NotFound(f"model {name!r} is not configured")


def admin_router(manager: Any, settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin",
        tags=["Management"],
        dependencies=[Depends(_guard(settings))],
        responses={
            401: {"description": "Missing or wrong bearer token"},
            403: {"description": "No token configured and the client is not loopback"},
            404: {"description": "Unknown model, version or label"},
        },
    )

    @router.get("/models", summary="Every model: versions, states, labels, policy")
    async def list_models() -> dict[str, Any]:
        return {"models": [m.to_json() for m in manager.models()]}

    @router.get("/models/{name}", summary="One model: versions, states, labels, policy")
    async def get_model(name: str) -> dict[str, Any]:
        return _summary(manager, name)

    @router.post("/models/{name}/versions/{version}/load", summary="Load a version")
    async def load_version(name: str, version: str) -> dict[str, Any]:
        status = await manager.load_version(name, parse_version(version))
        return dict(status.to_json())

    @router.post("/models/{name}/versions/{version}/unload", summary="Unload a version")
    async def unload_version(name: str, version: str) -> dict[str, Any]:
        status = await manager.unload_version(name, parse_version(version))
        return dict(status.to_json())

    async def _set_label(name: str, label: str, req: LabelRequest) -> dict[str, Any]:
        await manager.set_label(name, label, req.version)
        return {"name": name, "label": label, "version": req.version,
                "labels": dict(manager.labels(name))}

    @router.put("/models/{name}/labels/{label}", summary="Set or move a label")
    async def put_label(name: str, label: str, req: LabelRequest) -> dict[str, Any]:
        return await _set_label(name, label, req)

    @router.post("/models/{name}/labels/{label}", summary="Set or move a label (POST alias)")
    async def post_label(name: str, label: str, req: LabelRequest) -> dict[str, Any]:
        return await _set_label(name, label, req)

    @router.delete("/models/{name}/labels/{label}", summary="Remove a label")
    async def delete_label(name: str, label: str) -> dict[str, Any]:
        await manager.remove_label(name, label)
        return {"name": name, "labels": dict(manager.labels(name))}

    @router.get("/models/{name}/labels", summary="A model's labels")
    async def get_labels(name: str) -> dict[str, Any]:
        return {"name": name, "labels": dict(manager.labels(name))}

    @router.post("/config/reload", summary="Re-read the model config (or serve a new one)")
    async def reload_config(
        req: ReloadRequest | None = Body(None),  # noqa: B008 - FastAPI's idiom
    ) -> dict[str, Any]:
        configs: list[ModelConfig] | None = None  # None: the manager re-reads the file/flags
        if req is not None and req.model_config_list is not None:
            try:
                configs = parse_model_config_list(req.model_config_list, source="<request>")
            except ConfigError as exc:
                raise InvalidArgument(str(exc)) from None
        await manager.reload_config(configs)
        return {"models": [m.to_json() for m in manager.models()]}

    @router.post("/poll", summary="Scan the model directories now")
    async def poll_now() -> dict[str, Any]:
        await manager.poll_now()
        return {"models": [m.to_json() for m in manager.models()]}

    @router.get("/config", summary="The effective configuration (settings and models)")
    async def effective_config() -> dict[str, Any]:
        return dict(manager.effective_config())

    return router
