"""The loader role: read, verify, plan and warm up one version, on a thread pool.

Nothing here raises into the caller: every failure comes back as ``LoadResult.error``, so a
bad version can never break the poll loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import engine
from service.batching.scheduler import limit_engine_threads
from service.lifecycle.source import fingerprint

__all__ = [
    "LoadError",
    "LoadResult",
    "Loader",
    "MAX_WARMUP_REQUESTS",
    "WARMUP_FILE",
    "load_and_warm_up",
    "read_warmup",
]

WARMUP_FILE = Path("assets.extra") / "warmup.json"
MAX_WARMUP_REQUESTS = 1000  # TF Serving's cap on warmup records


class LoadError(Exception):
    """A version that the engine read fine but that cannot serve (bad warmup file or run)."""


@dataclass(frozen=True)
class LoadResult:
    model: engine.Model | None
    error: str | None
    seconds: float
    fingerprint: tuple[tuple[str, int, int], ...]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, engine.errors.EngineError | LoadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def read_warmup(version_dir: Path) -> list[tuple[str | None, dict[str, Any]]]:
    """The requests in ``assets.extra/warmup.json``: [(signature name, {alias: array})]."""
    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path}: unreadable warmup file ({exc})") from None
    reqs = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(reqs, list):
        raise LoadError(f"{path}: expected {{\"requests\": [...]}}")
    if len(reqs) > MAX_WARMUP_REQUESTS:
        raise LoadError(f"{path}: {len(reqs)} warmup requests; at most {MAX_WARMUP_REQUESTS}")
    out: list[tuple[str | None, dict[str, Any]]] = []
    for i, r in enumerate(reqs):
        if not isinstance(r, dict) or not isinstance(r.get("inputs"), dict):
            raise LoadError(f"{path}: request {i} needs an \"inputs\" object")
        sig = r.get("signature_name")
        if sig is not None and not isinstance(sig, str):
            raise LoadError(f"{path}: request {i}: signature_name must be a string")
        try:
            arrays = {str(k): np.asarray(v) for k, v in r["inputs"].items()}
        except ValueError as exc:  # ragged nested lists
            raise LoadError(f"{path}: request {i}: bad input ({exc})") from None
        out.append((sig, arrays))
    return out


def load_and_warm_up(path: Path) -> engine.Model:
    """engine.load + replay the warmup requests; raises on any failure."""
    model = engine.load(path)
    for i, (sig, inputs) in enumerate(read_warmup(path)):
        try:
            model.run(inputs, signature=sig)
        except Exception as exc:
            raise LoadError(f"warmup request {i} failed: {_describe(exc)}") from exc
    return model


def _load(path: Path) -> LoadResult:
    # Fingerprint first: a change made while loading is then seen as a change next poll.
    fp = fingerprint(path)
    t0 = time.perf_counter()
    try:
        model = load_and_warm_up(path)
    except Exception as exc:  # any failure is the version's problem, never the server's
        return LoadResult(None, _describe(exc), time.perf_counter() - t0, fp)
    return LoadResult(model, None, time.perf_counter() - t0, fp)


class Loader:
    """Loads versions on ``num_threads`` threads; the event loop only awaits the result."""

    def __init__(self, num_threads: int = 2, engine_threads: int | None = None) -> None:
        # Warm-up runs build the plans the batch threads will use only with their thread
        # count (a plan is sized for its thread's numba thread count): the same one here.
        init = None if not engine_threads else partial(limit_engine_threads, engine_threads)
        self._pool = ThreadPoolExecutor(max(1, num_threads), thread_name_prefix="numbaserve-load",
                                        initializer=init)

    async def load(self, path: Path) -> LoadResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _load, path)

    def shutdown(self) -> None:
        # Loads still running finish on their thread; their results are dropped.
        self._pool.shutdown(wait=False, cancel_futures=True)
