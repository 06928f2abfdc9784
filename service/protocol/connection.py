"""``HttpConnection``: uvicorn's httptools protocol with a shorter way for the hot routes.

A POST to a hot route (v1 ``:predict``, v2 ``/infer``) goes from the connection straight to
the route: not through uvicorn's proxy-headers middleware, the app's entry point or its
router, and its answer goes out with one ``writelines`` (one ``writev``): status line,
headers and body together. uvicorn writes the head and the body apart, two syscalls and,
with ``TCP_NODELAY``, two segments the client must read, and checks every header against
two regexes; the hot routes build their few headers themselves. A body that has fully
arrived is handed over as the connection's own bytearray, not copied. In process, uvicorn's
cost per request with a trivial hot route fell from 17.6 to 15.0 µs, before counting the
saved syscall: a few % of the event loop's ~130 µs per request at c=64.

Everything else (other routes and methods, pipelining, keep-alive, flow control, the
concurrency limit, graceful shutdown) is uvicorn's code, unchanged: a hot request still
gets uvicorn's request/response cycle and task; only its ``send`` and ``receive`` differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

__all__ = ["HotRouter", "HttpConnection"]

# app.hot_route(scope): the ASGI app serving this POST when its path is a hot route, else None.
# A hot app takes any bytes-like body: a whole body comes as the connection's own bytearray.
HotRouter = Callable[[Any], ASGIApp | None]


class _HotCycle(RequestResponseCycle):
    """A cycle whose app sends one ``http.response.start`` with a content-length and one
    complete ``http.response.body``: the head waits for the body, then both go out at once.
    A body that has fully arrived is received without a copy."""

    _status = 0
    _headers: Any = ()

    async def receive(self) -> Any:
        if (self.more_body or self.waiting_for_100_continue or self.disconnected
                or self.response_complete):
            return await super().receive()
        # The whole body is here: hand over uvicorn's buffer instead of a bytes copy of it
        # (it is not appended to again; the v2 binary inputs become views of it).
        self.flow.resume_reading()
        self.message_event.clear()
        body, self.body = self.body, bytearray()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            self.response_started = True
            self._status = message["status"]
            self._headers = message.get("headers", ())
            return
        if (kind != "http.response.body" or not self.response_started
                or self.response_complete or message.get("more_body", False)):
            raise RuntimeError(f"a hot route sent {kind!r} out of order or in parts")
        head = [STATUS_LINE[self._status]]
        for name, value in self.default_headers:
            head += (name, b": ", value, b"\r\n")
        for name, value in self._headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n")
        self.transport.writelines((b"".join(head), message.get("body", b"")))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class HttpConnection(HttpToolsProtocol):
    """One HTTP/1.1 connection; pass the class as uvicorn's ``http``. The app (uvicorn's
    ``config.app``) names its hot routes with a ``hot_route(scope)`` method."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # `app is self.app`: not uvicorn's 503 app for a connection over the limit
        if app is self.app and cycle.scope["method"] == "POST" and type(cycle) is \
                RequestResponseCycle:
            router: HotRouter | None = getattr(self.config.app, "hot_route", None)
            hot = None if router is None else router(cycle.scope)
            if hot is not None:
                cycle.__class__ = _HotCycle  # same layout; only send/receive differ
                app = hot
        super()._start_asgi_task(cycle, app)
