"""numbaserve's server."""

from engine import _threads  # noqa: F401  (thread-pool settings before numpy loads)
