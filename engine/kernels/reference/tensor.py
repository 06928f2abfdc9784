"""Reference Pad in plain numpy (numpy.pad, as the ONNX reference implementation does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pad"]


def pad(x: np.ndarray, pads: Sequence[int], mode: str = "constant", value: float = 0.0,
        axes: Sequence[int] | None = None) -> np.ndarray:
    """ONNX Pad: ``pads`` is [begin of each axis..., end of each axis...] over ``axes``
    (default: all). Negative pads crop the input before the rest is padded."""
    axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in axes]
    k = len(axes)
    crop = [slice(None)] * x.ndim
    width = [(0, 0)] * x.ndim
    for i, ax in enumerate(axes):
        before, after = int(pads[i]), int(pads[k + i])
        crop[ax] = slice(max(-before, 0), x.shape[ax] - max(-after, 0))
        width[ax] = (max(before, 0), max(after, 0))
    kept = x[tuple(crop)]
    if mode == "constant":
        return np.pad(kept, width, mode="constant",
                      constant_values=np.asarray(value).astype(x.dtype))
    numpy_mode: Any = mode  # numpy types its modes as literals
    return np.pad(kept, width, mode=numpy_mode)
