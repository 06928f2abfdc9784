"""``create_app(settings)``: the FastAPI app with every part wired in. No logic of its own.

Start-up loads models in the background, so ``/healthz`` answers at once and ``/readyz``
turns 200 when every model has an AVAILABLE version. Shut-down (after uvicorn has answered
the requests in flight) stops the manager within what is left of ``drain_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

import engine
from service.batching import params_from_settings
from service.batching.jsondecode import warm as warm_json_decoder
from service.batching.scheduler import intra_op_threads
from service.config import Settings, config_from_settings
from service.inference import (
    Inference,
    tune_interpreter,
)
from service.lifecycle import ModelManager
from service.metrics import CONTENT_TYPE, Metrics
from service.protocol import admin_router, health_router, install_v1
from service.protocol import errors as http_errors
from service.protocol.asgi import PostRoute, note_deadline
from service.protocol.v2 import install as install_v2

__all__ = ["create_app"]

log = logging.getLogger("numbaserve")


def create_app(
    settings: Settings | None = None,
    *,
    manager: ModelManager | None = None,
    on_ready: Callable[[ModelManager], None] | None = None,
) -> FastAPI:
    """The app for ``settings``; ``on_ready(manager)`` runs once the first loads are done."""
    settings = settings or Settings()
    metrics = Metrics()
    params = params_from_settings(settings)
    if manager is None:
        manager = ModelManager(
            config_from_settings(settings), settings, on_event=metrics.lifecycle_event,
            engine_threads=intra_op_threads(settings.intra_op_threads, params.num_batch_threads))
    metrics.watch_manager(manager)
    inference = Inference(
        manager,
        params=params,
        batching=settings.enable_batching,
        timeout_s=settings.rest_api_timeout_in_ms / 1000,
        max_in_flight=settings.max_in_flight_requests_per_model,
        metrics=metrics,
        intra_op_threads=settings.intra_op_threads,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_interpreter()
        # The JSON tensor decoder's numba code: loaded (or compiled once) off the loop.
        asyncio.get_running_loop().run_in_executor(None, warm_json_decoder)
        starting = asyncio.create_task(manager.start(), name="numbaserve-start")
        starting.add_done_callback(partial(_started, manager, on_ready))
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            # cli.py sets the deadline when the signal arrives; uvicorn has drained by now.
            deadline = getattr(app.state, "shutdown_deadline", None)
            left = settings.drain_seconds if deadline is None else deadline - time.monotonic()
            await manager.stop(max(0.1, left))
            inference.close()

    app = _App(
        title="numbaserve",
        version=engine.__version__,
        summary="A model server with TF Serving's REST API and a numba engine.",
        lifespan=lifespan,
        **_NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.inference = inference
    app.state.metrics = metrics
    http_errors.install(app)
    install_v1(app, manager, inference, settings.max_request_bytes)
    install_v2(app, manager, inference, settings)
    app.include_router(admin_router(manager, settings))
    app.include_router(health_router(manager))

    @app.get("/monitoring/prometheus/metrics", tags=["monitoring"],
             summary="Prometheus metrics (TF Serving's path); see docs/metrics.md")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(_RequestDeadline)
    return app


class _App(FastAPI):
    """FastAPI with the hot routes (v1 ``:predict``, v2 ``/infer``) served straight from the
    entry point: a POST to one of them skips the middleware stack and the router (~8 awaited
    layers, ~10 % of the event loop's time per request at c=64). Everything else, and every
    other method on those paths, takes the usual way. ``HttpConnection`` asks ``hot_route``
    itself, before uvicorn's own middleware."""

    _hot: tuple[PostRoute, ...] | None = None

    def hot_route(self, scope: Scope) -> ASGIApp | None:
        """The app serving this POST if its path is a hot route (path params set), else None."""
        hot = self._hot
        if hot is None:
            hot = self._hot = tuple(r for r in self.router.routes if isinstance(r, PostRoute))
        path = scope["path"]
        for route in hot:
            m = route.pattern.match(path)
            if m is not None:
                if self.root_path:
                    scope["root_path"] = self.root_path
                scope["app"] = self
                scope["path_params"] = m.groupdict()
                return route.handle_hot
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = self.hot_route(scope)
            if hot is not None:
                await hot(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# FastAPI >= 0.165's OpenTelemetry bridge asks the global providers on every request
# (~10 us of event-loop time on the hot path); our metrics are Prometheus'.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {}
)


class _RequestDeadline:
    """Notes each request's arrival and its timeout header in ``REQUEST_DEADLINE`` for the
    data plane (every protocol gets them without parsing headers); a bad value is a 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bad = note_deadline(scope)
            if bad is not None:
                await http_errors.error_response(bad)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _started(
    manager: ModelManager,
    on_ready: Callable[[ModelManager], None] | None,
    task: asyncio.Task[None],
) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("model manager failed to start: %s", exc, exc_info=exc)
        return
    # Loaded models live for the process: keep them out of the cyclic GC's full scans.
    gc.freeze()
    if on_ready is not None:
        try:
            on_ready(manager)
        except Exception:
            log.exception("on_ready callback failed")
