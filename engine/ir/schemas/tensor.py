"""Ops that build a bigger tensor from one input: Pad."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import DTypeError, ShapeError, UnsupportedOpError
from engine.ir.graph import Dim, TensorType
from engine.ir.schema import normalize_axis, register_value_dependent

__all__ = ["PAD_MODES", "pad_axes"]

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def pad_axes(axes: Sequence[int] | None, rank: int) -> list[int]:
    """The padded axes in pads order, each in 0..rank-1 (None: every axis)."""
    if axes is None:
        return list(range(rank))
    out = [normalize_axis(int(ax), rank) for ax in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"Pad axes {list(axes)} name an axis twice")
    return out


@register_value_dependent(
    "Pad", inputs=(2, 3), attrs={"mode": "constant", "axes": None},
    doc="x, pads (int, [begin per axis..., end per axis...]), value? (scalar, default 0); "
        "negative pads crop; modes constant | reflect | edge | wrap (ONNX Pad)",
)
def _pad(ins: Sequence[TensorType], a: Mapping[str, Any],
         v: Sequence[np.ndarray | None]) -> list[TensorType]:
    x, pads_t = ins[0], ins[1]
    if a["mode"] not in PAD_MODES:
        raise UnsupportedOpError(f"Pad mode {a['mode']!r} is not supported; expected one of "
                                 f"{PAD_MODES}")
    axes = pad_axes(a["axes"], x.rank)
    if np.dtype(pads_t.dtype).kind not in "iu":
        raise DTypeError(f"Pad pads must be integers, got {pads_t.dtype}")
    if pads_t.rank != 1 or pads_t.shape[0] not in (None, 2 * len(axes)):
        raise ShapeError(f"Pad pads must be a 1-D tensor of {2 * len(axes)} values (begin and "
                         f"end for each of axes {axes}), got {pads_t}")
    if len(ins) > 2 and ins[2].shape and ins[2].shape != (1,):
        raise ShapeError(f"Pad constant_value must be a scalar, got {ins[2]}")
    pads = None if v[1] is None else [int(p) for p in np.asarray(v[1]).reshape(-1)]
    shape: list[Dim] = list(x.shape)
    if pads is None:
        for ax in axes:
            shape[ax] = None  # known once pads are (specialize)
        return [TensorType(x.dtype, tuple(shape))]
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"Pad pads {pads} must have {2 * len(axes)} values (begin and end for "
                         f"each of axes {axes})")
    for i, ax in enumerate(axes):
        before, after = pads[i], pads[len(axes) + i]
        d = x.shape[ax]
        if d is None:
            continue
        kept = d + min(before, 0) + min(after, 0)
        if kept < 0:
            raise ShapeError(f"Pad pads {pads} crop more than the {d} elements of axis {ax}")
        if kept == 0 and a["mode"] != "constant" and (before > 0 or after > 0):
            raise ShapeError(f"Pad mode {a['mode']!r} cannot extend the empty axis {ax} of {x}")
        shape[ax] = kept + max(before, 0) + max(after, 0)
    return [TensorType(x.dtype, tuple(shape))]
