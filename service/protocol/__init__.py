"""HTTP protocols over ``service.inference`` and the manager's read/management API.

``v1``: TF Serving's REST API; ``admin``: management; ``health``: probes; ``errors``: the one
mapping from errors to HTTP status + ``{"error": msg}``.
"""

from service.protocol.admin import admin_router
from service.protocol.errors import error_response, status_for
from service.protocol.health import health_router
from service.protocol.v1 import install as install_v1

__all__ = ["admin_router", "error_response", "health_router", "install_v1", "status_for"]
