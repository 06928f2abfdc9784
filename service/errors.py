"""The service's one error hierarchy; protocol/errors.py maps each kind to HTTP once.

Status codes follow TF Serving's REST API (its gRPC codes mapped to HTTP):
INVALID_ARGUMENT 400, NOT_FOUND 404, FAILED_PRECONDITION 400, UNAVAILABLE 503,
DEADLINE_EXCEEDED 504, RESOURCE_EXHAUSTED 503 (+ Retry-After) / 413 for bodies, INTERNAL 500.
"""

from __future__ import annotations

__all__ = [
    "ServiceError",
    "InvalidArgument",
    "NotFound",
    "Unavailable",
    "DeadlineExceeded",
    "ResourceExhausted",
    "PayloadTooLarge",
    "Unauthenticated",
    "PermissionDenied",
    "FailedPrecondition",
    "InternalError",
]


class ServiceError(Exception):
    """Base: every failure a client can cause or see, with a message fit to show them."""

    code = "INTERNAL"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidArgument(ServiceError):
    code = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    code = "NOT_FOUND"


class Unavailable(ServiceError):
    code = "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(ServiceError):
    code = "RESOURCE_EXHAUSTED"


class PayloadTooLarge(ServiceError):
    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    code = "PERMISSION_DENIED"


class FailedPrecondition(ServiceError):
    code = "FAILED_PRECONDITION"


class InternalError(ServiceError):
    code = "INTERNAL"
