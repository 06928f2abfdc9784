"""The one place that turns errors into HTTP: status code + ``{"error": "<message>"}``.

Codes follow TF Serving's REST API (its canonical codes mapped to HTTP). Every route — the
lean ``:predict`` path, FastAPI routes, Starlette's own 404/405 — answers through here, so a
client sees one error shape. Anything not a ServiceError or an input-side EngineError is a
bug: it is logged with its traceback and answered 500 without internals.
"""

from __future__ import annotations

import logging
import math

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine import errors as engine_errors
from service import errors

__all__ = [
    "ADMIN_REALM",
    "error_body",
    "error_headers",
    "error_response",
    "install",
    "status_for",
]

log = logging.getLogger("numbaserve.http")

ADMIN_REALM = "numbaserve-admin"

# Looked up along the exception's MRO, so subclasses inherit their parent's status.
_STATUS: dict[type[BaseException], int] = {
    errors.InvalidArgument: 400,
    errors.FailedPrecondition: 400,
    errors.NotFound: 404,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.PayloadTooLarge: 413,
    errors.ResourceExhausted: 503,
    errors.Unavailable: 503,
    errors.DeadlineExceeded: 504,
    errors.InternalError: 500,
    errors.ServiceError: 500,
    # Engine errors a request can cause: its feeds do not fit the signature.
    engine_errors.InputError: 400,
    engine_errors.ShapeError: 400,
    engine_errors.DTypeError: 400,
    # A model on disk that cannot load (only reachable through management calls).
    engine_errors.ModelFormatError: 400,
    engine_errors.UnsupportedOpError: 400,
    engine_errors.GraphError: 400,
}


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc``; 500 for anything unexpected."""
    for klass in type(exc).__mro__:
        code = _STATUS.get(klass)
        if code is not None:
            return code
    return 500


def _message(exc: BaseException, status: int) -> str:
    if status == 500 and not isinstance(exc, errors.ServiceError):
        return "internal error; see the server log"
    msg = getattr(exc, "message", None) or str(exc)
    return msg or type(exc).__name__


def error_headers(exc: BaseException, status: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    elif status == 503 and isinstance(exc, errors.ResourceExhausted):
        headers["retry-after"] = "1"
    if status == 401:
        headers["www-authenticate"] = f'Bearer realm="{ADMIN_REALM}"'
    return headers


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_response(exc: BaseException) -> Response:
    """``exc`` as a JSON error response; unexpected exceptions are logged with traceback."""
    status = status_for(exc)
    if status == 500:
        log.error("internal error: %s", exc, exc_info=exc)
    return Response(
        error_body(_message(exc, status)),
        status_code=status,
        headers=error_headers(exc, status),
        media_type="application/json",
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "invalid request: " + ("; ".join(parts) or "malformed body")


async def _service_error(_: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(errors.InvalidArgument(_validation_message(exc)))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        msg = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        msg = f"method {request.method} not allowed for {request.url.path}"
    else:
        msg = str(exc.detail)
    headers = dict(exc.headers or {})
    return Response(error_body(msg), exc.status_code, headers, media_type="application/json")


async def _unexpected(_: Request, exc: Exception) -> Response:
    return error_response(exc)


def install(app: FastAPI) -> None:
    """Register the handlers that give every route the ``{"error": msg}`` shape."""
    app.add_exception_handler(errors.ServiceError, _service_error)
    app.add_exception_handler(engine_errors.EngineError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
