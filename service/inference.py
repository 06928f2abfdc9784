"""The protocol-neutral data plane: (model, version|label, named inputs) -> named outputs.

Protocols decode their wire format into Python/numpy values and call ``Inference.infer``;
it takes a handle on the version from the manager, and in a worker thread builds the input
arrays with the signature's dtypes (``np.asarray``, no per-element Python) and runs the
model. The event loop never runs a kernel; the engine never parses JSON.

The handle is released by the worker when the run finishes, not when the awaiting request
goes away: a request cancelled mid-run (client gone, deadline passed) still keeps its
version loaded until the kernel it started has returned.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import engine
from service.errors import DeadlineExceeded, InvalidArgument

__all__ = ["Decoder", "InferResult", "Inference", "as_array", "infer"]

# Inputs given either ready (alias -> array-like) or as a decoder that needs the signature
# first (TF's row format names no inputs when the signature has just one).
Decoder = Callable[[engine.Signature], Mapping[str, Any]]


class _Handle(Protocol):
    name: str
    version: int
    model: engine.Model

    def release(self) -> None: ...


class _Manager(Protocol):
    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> _Handle: ...


@dataclass(frozen=True)
class InferResult:
    name: str
    version: int
    signature_name: str
    signature: engine.Signature
    outputs: dict[str, np.ndarray]


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def as_array(alias: str, value: Any, spec: engine.TensorSpec) -> np.ndarray:
    """``value`` as an array of the signature's dtype; a 400 naming the input if it cannot be.

    Shape is checked by the engine (``Model.check_feeds``), which names the input too.
    """
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(
            f"input {alias!r}: expected a {spec.dtype} tensor of shape {_dims(spec.shape)}, "
            f"but the value could not be converted ({exc})"
        ) from None


def _run(
    model: engine.Model,
    inputs: Mapping[str, Any] | Decoder,
    signature: str | None,
    outputs: list[str] | None,
    method: str | None,
) -> tuple[engine.Signature, dict[str, np.ndarray]]:
    sig_name = signature or engine.DEFAULT_SIGNATURE
    sig = model.signatures.get(sig_name)
    if sig is None:
        raise InvalidArgument(
            f"signature {sig_name!r} not found; the model has {sorted(model.signatures)}"
        )
    if method is not None and sig.method != method:
        raise InvalidArgument(
            f"signature {sig_name!r} has method {sig.method!r}; {method!r} requests need a "
            f"signature whose method is {method!r}"
        )
    raw = inputs(sig) if callable(inputs) else inputs
    feeds = {
        alias: as_array(alias, value, sig.inputs[alias]) if alias in sig.inputs else value
        for alias, value in raw.items()
    }
    return sig, model.run(feeds, signature=sig_name, outputs=outputs)


class Inference:
    """Runs requests on a small thread pool, each under a manager handle.

    ``timeout_s`` is the per-request deadline (TF's ``--rest_api_timeout_in_ms``); past it
    the request gets 504 while the run already started finishes in the background.
    """

    def __init__(
        self,
        manager: _Manager,
        *,
        workers: int | None = None,
        timeout_s: float | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.manager = manager
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=workers or min(8, os.cpu_count() or 1),
            thread_name_prefix="numbaserve-infer",
        )

    async def infer(
        self,
        name: str,
        inputs: Mapping[str, Any] | Decoder,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
        outputs: list[str] | None = None,
        method: str | None = None,
    ) -> InferResult:
        """Run one request. Raises ServiceError (NotFound, Unavailable, InvalidArgument,
        DeadlineExceeded) or the engine's InputError/ShapeError/DTypeError for bad feeds."""
        handle = self.manager.acquire(name, version, label)
        try:
            cf: Future[tuple[engine.Signature, dict[str, np.ndarray]]] = self._executor.submit(
                _run, handle.model, inputs, signature, outputs, method
            )
        except BaseException:
            handle.release()
            raise
        # Runs in the worker once the model returns, or at once if the run never started.
        cf.add_done_callback(lambda _: handle.release())
        fut = asyncio.wrap_future(cf)
        try:
            if self.timeout_s is None:
                sig, result = await fut
            else:
                async with asyncio.timeout(self.timeout_s):
                    sig, result = await fut
        except TimeoutError:
            raise DeadlineExceeded(
                f"request to model {name!r} exceeded the deadline of "
                f"{self.timeout_s * 1000:.0f} ms"  # type: ignore[operator]
            ) from None
        return InferResult(
            handle.name, handle.version, signature or engine.DEFAULT_SIGNATURE, sig, result
        )

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


_default: weakref.WeakKeyDictionary[Any, Inference] = weakref.WeakKeyDictionary()


async def infer(
    manager: _Manager,
    name: str,
    inputs: Mapping[str, Any] | Decoder,
    **kwargs: Any,
) -> InferResult:
    """Convenience for callers without an ``Inference``: one per manager, made on first use.

    The server itself (``service.app``) builds its ``Inference`` with the settings' deadline.
    """
    inf = _default.get(manager)
    if inf is None:
        inf = _default[manager] = Inference(manager)
    return await inf.infer(name, inputs, **kwargs)
