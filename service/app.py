"""``create_app(settings)``: the FastAPI app with every part wired in. No logic of its own.

Start-up loads models in the background, so ``/healthz`` answers at once and ``/readyz``
turns 200 when every model has an AVAILABLE version. Shut-down (after uvicorn has answered
the requests in flight) stops the manager within what is left of ``drain_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

import engine
from service.config import Settings, config_from_settings
from service.inference import Inference
from service.lifecycle import ModelManager
from service.protocol import admin_router, health_router, install_v1
from service.protocol import errors as http_errors

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
    if manager is None:
        manager = ModelManager(config_from_settings(settings), settings)
    inference = Inference(manager, timeout_s=settings.rest_api_timeout_in_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(
        title="numbaserve",
        version=engine.__version__,
        summary="A model server with TF Serving's REST API and a numba engine.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.inference = inference
    http_errors.install(app)
    install_v1(app, manager, inference, settings.max_request_bytes)
    app.include_router(admin_router(manager, settings))
    app.include_router(health_router(manager))
    return app


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
