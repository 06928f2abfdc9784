"""Raw-ASGI pieces shared by the hot routes (v1 ``:predict``, v2 ``/infer``).

The hot routes skip FastAPI's request machinery: a ``PostRoute`` matches one regex, reads the
body with a size limit and answers with bytes it built itself. Errors still go through
``protocol/errors.py``, the one mapping to HTTP.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from service.errors import InvalidArgument, PayloadTooLarge
from service.inference import REQUEST_DEADLINE, TIMEOUT_HEADER, deadline_from_timeout_ms
from service.protocol.errors import error_body, error_headers, error_response, status_for

__all__ = ["Disconnected", "JsonResponse", "PostRoute", "note_deadline", "read_body",
           "send_bytes", "send_error"]

_JSON = b"application/json"
_TIMEOUT = TIMEOUT_HEADER.lower().encode("latin-1")


class Disconnected(Exception):
    """The client went away before its body arrived: nothing to answer."""


class JsonResponse(Response):
    """orjson with numpy arrays allowed, for the GET routes beside the hot ones."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | bytearray:
    """The whole body, refusing (413) before reading it when Content-Length is too big and
    as soon as a chunked body passes the limit."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise InvalidArgument("invalid Content-Length header") from None
            if declared > limit:
                raise PayloadTooLarge(
                    f"request body of {declared} bytes exceeds the limit of {limit} bytes"
                )
            break
    chunks: list[bytes | bytearray] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    content_type: bytes = _JSON,
) -> None:
    raw = [(b"content-type", content_type),
           (b"content-length", str(len(body)).encode("latin-1")), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: BaseException) -> None:
    status = status_for(exc)
    if status == 500:
        resp = error_response(exc)  # logs the traceback, hides internals
        await send_bytes(send, 500, bytes(resp.body))
        return
    message = getattr(exc, "message", None) or str(exc)
    extra = [(k.encode("latin-1"), v.encode("latin-1"))
             for k, v in error_headers(exc, status).items()]
    await send_bytes(send, status, error_body(message), extra)


def note_deadline(scope: Scope) -> Exception | None:
    """Set ``REQUEST_DEADLINE`` for this request; the error when its timeout header is bad."""
    now = time.monotonic()
    deadline = None
    for key, value in scope["headers"]:
        if key == _TIMEOUT:
            try:
                deadline = deadline_from_timeout_ms(value, now)
            except Exception as exc:
                return exc
            break
    REQUEST_DEADLINE.set((now, deadline))
    return None


class PostRoute(BaseRoute):
    """A POST-only route matched by one regex whose named groups become path params.

    It matches every method, so a GET on a hot path gets this route's 405 rather than being
    taken by a GET route that reads ``name:predict`` as a model name.
    """

    def __init__(self, pattern: re.Pattern[str], path: str, name: str) -> None:
        self.pattern = pattern
        self.path = path
        self.name = name
        self.include_in_schema = False

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        m = self.pattern.match(scope["path"])
        if m is None:
            return Match.NONE, {}
        return Match.FULL, {"path_params": m.groupdict()}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle_hot(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``handle`` for a POST matched before the middleware: notes the request's deadline
        (what the deadline middleware does for the other routes) first."""
        bad = note_deadline(scope)
        if bad is None:
            await self.handle(scope, receive, send)
        else:
            await send_error(send, bad)

    async def refuse_unless_post(self, scope: Scope, send: Send) -> bool:
        """Answer 405 and return True unless the request is a POST."""
        if scope["method"] == "POST":
            return False
        msg = f"method {scope['method']} not allowed for {scope['path']}; use POST"
        await send_bytes(send, 405, error_body(msg), [(b"allow", b"POST")])
        return True
