"""Batch normalization (inference) and layer normalization."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ShapeError
from engine.ir.graph import TensorType
from engine.ir.schema import REQUIRED, normalize_axis, register
from engine.ir.schemas._common import same_dim


@register("BatchNorm", inputs=5, attrs={"epsilon": 1e-3, "axis": -1},
          doc="x, gamma, beta, moving_mean, moving_var; normalizes along `axis` (channels)")
def _batchnorm(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axis = normalize_axis(a["axis"], x.rank)
    for i, p in enumerate(ins[1:], 1):
        same_dim(f"BatchNorm parameter {i} length vs channels", p.shape[0], x.shape[axis])
    return [x]


@register("LayerNorm", inputs=(2, 3), attrs={"epsilon": 1e-5, "axis": -1},
          doc="x, gamma, optional beta; normalizes over the axes from `axis` to the end")
def _layernorm(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    normalize_axis(a["axis"], ins[0].rank)
    return [ins[0]]


@register("LRN", inputs=1,
          attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0, "axis": -1},
          doc="local response normalization across channels (`axis`), ONNX/Caffe form: "
              "x / (bias + alpha / size * sum of squares over `size` channels) ** beta")
def _lrn(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    normalize_axis(a["axis"], ins[0].rank)
    if int(a["size"]) < 1:
        raise ShapeError(f"LRN size must be >= 1, got {a['size']}")
    return [ins[0]]
