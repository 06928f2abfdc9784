"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (every model can serve)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse

__all__ = ["health_router"]


def health_router(manager: Any) -> APIRouter:
    router = APIRouter(tags=["Health"])

    @router.get("/healthz", summary="Liveness: the server process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/readyz",
        summary="Readiness: 200 when every configured model has an AVAILABLE version",
        responses={503: {"description": "Some model has no AVAILABLE version yet"}},
    )
    async def readyz() -> JSONResponse:
        if manager.ready():
            return JSONResponse({"status": "ready"})
        waiting = sorted(m.name for m in manager.models() if not m.ready)
        return JSONResponse(
            {"status": "unavailable",
             "error": f"not ready: no AVAILABLE version yet for {waiting or 'the server'}"},
            status_code=503,
        )

    return router
