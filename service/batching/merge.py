"""Merge a batch's requests into one set of input arrays, and split the outputs back.

Merged inputs are written into buffers kept per batch thread (one per input, shape and
dtype) and reused: the engine copies nothing out of its inputs, and its outputs are fresh
arrays, so a buffer is free again as soon as the engine call returns. Padding rows (up to an
allowed batch size) repeat the last real row: any dtype, and values the model has seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from service.batching.queue import Batch

__all__ = ["merge_inputs", "split_outputs", "batch_major"]

_BUFFERS_PER_THREAD = 32
_local = threading.local()


def _buffer(alias: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    cache: OrderedDict[tuple[object, ...], np.ndarray] | None = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = OrderedDict()
    key = (alias, shape, dtype.str)
    buf = cache.get(key)
    if buf is None:
        buf = cache[key] = np.empty(shape, dtype=dtype)
        if len(cache) > _BUFFERS_PER_THREAD:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return buf


def _put_rows(buf: np.ndarray, row: int, a: np.ndarray) -> None:
    """``buf[row:row + len(a)] = a``, as one memcpy that keeps the GIL where it can: numpy
    releases the GIL for copies over a few hundred elements, and a batch thread taking it back
    from a busy event loop waits up to a switch interval, once per request in the batch."""
    if a.dtype == buf.dtype and a.dtype != object and a.flags.c_contiguous and a.shape[0]:
        width = a.nbytes // a.shape[0]
        buf.data.cast("B")[row * width:row * width + a.nbytes] = (
            a.data.cast("B"))
    else:
        buf[row:row + a.shape[0]] = a


def merge_inputs(batch: Batch, aliases: list[str], pad_variable: bool) -> dict[str, np.ndarray]:
    """One array per input: the batch's rows in order, padded to ``batch.padded`` rows."""
    parts = batch.parts
    if len(parts) == 1 and batch.padded == batch.rows:
        t, start, stop = parts[0]
        if start == 0 and stop == t.rows:
            return dict(t.feeds)  # a lone whole request: no copy
        return {a: t.feeds[a][start:stop] for a in aliases}
    feeds: dict[str, np.ndarray] = {}
    for alias in aliases:
        arrays = [t.feeds[alias][start:stop] for t, start, stop in parts]
        first = arrays[0]
        rest = first.shape[1:]
        ragged = False
        if pad_variable:
            dims = [a.shape[1:] for a in arrays]
            if any(d != rest for d in dims):
                ragged = True
                rest = tuple(max(d[i] for d in dims) for i in range(len(rest)))
        buf = _buffer(alias, (batch.padded, *rest), first.dtype)
        if ragged:
            buf[...] = b"" if first.dtype == object else 0
        row = 0
        for a in arrays:
            n = a.shape[0]
            if ragged:
                buf[(slice(row, row + n), *(slice(0, d) for d in a.shape[1:]))] = a
            else:
                _put_rows(buf, row, a)
            row += n
        for pad in range(row, batch.padded):
            _put_rows(buf, pad, buf[row - 1:row])
        feeds[alias] = buf
    return feeds


def batch_major(outputs: dict[str, np.ndarray], rows: int) -> bool:
    """Whether every output has ``rows`` along its first axis (so it can be split)."""
    return all(o.ndim >= 1 and o.shape[0] == rows for o in outputs.values())


def split_outputs(batch: Batch, outputs: dict[str, np.ndarray]
                  ) -> list[dict[str, np.ndarray]]:
    """Each part's rows of every output (views of the batch's fresh output arrays)."""
    result = []
    row = 0
    for _, start, stop in batch.parts:
        n = stop - start
        result.append({alias: o[row:row + n] for alias, o in outputs.items()})
        row += n
    return result
