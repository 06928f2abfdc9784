"""Which requests may share a batch: the same signature, outputs, dtypes and shapes apart
from the batch dimension (with ``pad_variable_length_inputs``, apart from the dimensions the
signature leaves open too, which are then padded to the batch's largest)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine import Signature
from service.batching.task import Key

__all__ = ["batch_key"]


def batch_key(signature: str, outputs: list[str] | None, sig: Signature,
              feeds: Mapping[str, np.ndarray], pad_variable: bool) -> tuple[Key, int]:
    """(key, rows): key None when the request must run alone (no batch dimension shared by
    every input and output, or no rows at all)."""
    rows = -1
    parts = []
    for alias, spec in sig.inputs.items():
        a = feeds[alias]
        if a.ndim == 0 or not spec.shape or spec.shape[0] is not None:
            return None, 1
        if rows < 0:
            rows = a.shape[0]
        elif a.shape[0] != rows:
            return None, max(rows, 1)
        rest = a.shape[1:]
        if pad_variable:
            rest = tuple(-1 if spec.shape[i + 1] is None else d for i, d in enumerate(rest))
        parts.append((alias, a.dtype.str, rest))
    if rows <= 0:
        return None, 1
    for alias, spec in sig.outputs.items():
        if outputs is not None and alias not in outputs:
            continue
        if not spec.shape or spec.shape[0] is not None:
            return None, rows
    return (signature, tuple(outputs) if outputs is not None else None, tuple(parts)), rows
