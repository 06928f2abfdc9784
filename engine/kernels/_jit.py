"""The one place that configures numba: cache directory, threading layer, decorators.

Every kernel module decorates with ``jit`` (serial) or ``pjit`` (``prange`` inside).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

# OMP_WAIT_POLICY must be set before numba loads GNU OpenMP (see engine/_threads.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

__all__ = ["jit", "pjit", "cache_dir", "VERSION"]

VERSION = "0.1.0"


def cache_dir() -> Path:
    """Writable, versioned directory for numba's compiled kernels.

    ``NUMBASERVE_CACHE_DIR`` wins; otherwise under the user's cache dir, keyed by our version
    and numba's, so an upgrade never loads stale machine code.
    """
    base = os.environ.get("NUMBASERVE_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "numbaserve"
    return root / f"{VERSION}-numba{numba.__version__}"


_dir = cache_dir()
_dir.mkdir(parents=True, exist_ok=True)
numba.config.CACHE_DIR = str(_dir)  # type: ignore[attr-defined]
# The workqueue layer aborts under concurrent calls and TBB is not always installable:
# GNU OpenMP is thread safe and ships with every Linux toolchain.
numba.config.THREADING_LAYER = os.environ.get(  # type: ignore[attr-defined]
    "NUMBA_THREADING_LAYER", "omp"
)


F = TypeVar("F", bound=Callable[..., Any])


@overload
def jit(fn: F, /) -> F: ...
@overload
def jit(**kwargs: Any) -> Callable[[F], F]: ...
def jit(*args: Any, **kwargs: Any) -> Any:
    """``numba.njit`` with our defaults: cached on disk, GIL released, and numpy's error
    model (a float division by zero gives inf instead of a check that blocks vectorizing)."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("nogil", True)
    kwargs.setdefault("error_model", "numpy")
    return numba.njit(*args, **kwargs)


@overload
def pjit(fn: F, /) -> F: ...
@overload
def pjit(**kwargs: Any) -> Callable[[F], F]: ...
def pjit(*args: Any, **kwargs: Any) -> Any:
    """``jit`` with ``parallel=True``: for kernels with a ``prange`` loop."""
    kwargs.setdefault("parallel", True)
    return jit(*args, **kwargs)
