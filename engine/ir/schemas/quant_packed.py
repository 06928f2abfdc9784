"""Quantized ops whose weight is stored already packed for its kernel.

``engine.passes.pack`` rewrites a weight-only op with ``compute="int8"`` and constant weights
into its packed form, so a loaded model keeps one resident copy of each weight (the packed
one) instead of the graph's int8 weight plus a packed copy made at plan time:

* ``DenseW8Packed(x f32 (..., K), data int32 (B, ceil(K/4), NR), colsum int32 (B*NR,),
  scale f32 (B*NR,), [bias f32 (N,)]) -> f32 (..., N)``: DenseW8 with ``compute="int8"``
  (engine.ir.schemas.quant: the same arithmetic, bit for bit) on the weight as
  engine.kernels.quant_hybrid.pack lays it out: B = ceil(N/NR) column blocks, each int32
  lane holding 4 consecutive k of one column (zero-padded in K and N), ``colsum`` 128 times
  each padded column's sum, ``scale`` the column scales zero-padded to B*NR. Attrs as Dense
  (``activation``, ``alpha``), and the packing's ``k``, ``n``, ``mr`` (rows of the kernel's
  register tile) and ``nr`` (columns of a block, a multiple of 16).
* ``Conv2DW8Packed(x f32 NHWC, data int32 (B, ceil(K/4), NR), colsum, scale, [bias f32 (O,)])
  -> f32 NHWC``: Conv2DW8 with ``compute="int8"`` and one group (the same arithmetic, bit
  for bit) on its (KH, KW, C, O) weight packed as the (K = KH*KW*C, O) matrix, the packing
  as DenseW8Packed's. Attrs as Conv2D (``groups`` must be 1), ``kernel_h``, ``kernel_w``
  (the window, which the packed weight no longer shows), and the packing's ``k``, ``n``
  (= O), ``mr``, ``nr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DTypeError, ShapeError, UnsupportedOpError
from engine.ir.graph import TensorType
from engine.ir.schema import REQUIRED, register
from engine.ir.schemas._common import check_activation, expect_rank, same_dim
from engine.ir.schemas.conv import _CONV_ATTRS, out_dim

__all__ = ["PACK_LANES"]

PACK_LANES = 16  # int32 lanes of one 512-bit vector: NR is a whole number of them


def _dtype(what: str, t: TensorType, expected: str) -> None:
    if t.dtype != expected:
        raise DTypeError(f"{what} must be {expected}, got {t.dtype}")


def _positive(op: str, a: Mapping[str, Any], key: str) -> int:
    value = a[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedOpError(f"{op}: attribute {key} must be a positive int, got {value!r}")
    return value


def _layout(op: str, a: Mapping[str, Any]) -> tuple[int, int, int]:
    """(k, n, nr) from the attributes, checked; ``mr`` only needs to be positive."""
    k, n = _positive(op, a, "k"), _positive(op, a, "n")
    _positive(op, a, "mr")
    nr = _positive(op, a, "nr")
    if nr % PACK_LANES:
        raise UnsupportedOpError(f"{op}: attribute nr must be a multiple of {PACK_LANES}, "
                                 f"got {nr}")
    return k, n, nr


def _packed_operands(op: str, ins: Sequence[TensorType], k: int, n: int, nr: int) -> None:
    """Checks of (x, data, colsum, scale, [bias]) past x, for a packed (k, n) weight."""
    data, colsum, scale = ins[1:4]
    blocks = -(-n // nr)
    _dtype(f"{op} packed weight", data, "int32")
    expect_rank(f"{op} packed weight", data.shape, 3)
    expected = (blocks, -(-k // 4), nr)
    if any(d is not None and d != e for d, e in zip(data.shape, expected, strict=True)):
        raise ShapeError(f"{op} packed weight must have shape (ceil(n/nr), ceil(k/4), nr) = "
                         f"{expected} for k={k}, n={n}, nr={nr}, got {data.shape}")
    for what, t, dtype in (("colsum", colsum, "int32"), ("scale", scale, "float32")):
        _dtype(f"{op} {what}", t, dtype)
        expect_rank(f"{op} {what}", t.shape, 1)
        same_dim(f"{op} {what} length vs ceil(n/nr)*nr", t.shape[0], blocks * nr)
    if len(ins) == 5:
        _dtype(f"{op} bias", ins[4], "float32")
        expect_rank(f"{op} bias", ins[4].shape, 1)
        same_dim(f"{op} bias length vs attribute n", ins[4].shape[0], n)


@register("DenseW8Packed", inputs=(4, 5),
          attrs={"activation": "linear", "alpha": 0.2, "k": REQUIRED, "n": REQUIRED,
                 "mr": REQUIRED, "nr": REQUIRED},
          doc="DenseW8 compute=int8 on a weight packed by engine.kernels.quant_hybrid.pack")
def _dense_w8_packed(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    op = "DenseW8Packed"
    check_activation(a["activation"])
    k, n, nr = _layout(op, a)
    x = ins[0]
    _dtype(f"{op} input", x, "float32")
    if x.rank < 1:
        raise ShapeError(f"{op} input must have rank >= 1, got shape {x.shape}")
    same_dim(f"{op} input features vs attribute k", x.shape[-1], k)
    _packed_operands(op, ins, k, n, nr)
    return [TensorType("float32", x.shape[:-1] + (n,))]


@register("Conv2DW8Packed", inputs=(4, 5),
          attrs={**_CONV_ATTRS, "kernel_h": REQUIRED, "kernel_w": REQUIRED, "k": REQUIRED,
                 "n": REQUIRED, "mr": REQUIRED, "nr": REQUIRED},
          doc="Conv2DW8 compute=int8 (one group) on a weight packed as its (KH*KW*C, O) matrix")
def _conv_w8_packed(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    op = "Conv2DW8Packed"
    check_activation(a["activation"])
    if a["groups"] != 1:
        raise UnsupportedOpError(f"{op}: attribute groups must be 1 (grouped and depthwise "
                                 f"convs stay Conv2DW8), got {a['groups']!r}")
    k, n, nr = _layout(op, a)
    kh, kw = _positive(op, a, "kernel_h"), _positive(op, a, "kernel_w")
    x = ins[0]
    _dtype(f"{op} input", x, "float32")
    expect_rank(f"{op} input", x.shape, 4)
    if k % (kh * kw):
        raise UnsupportedOpError(f"{op}: attribute k must be kernel_h * kernel_w * channels, "
                                 f"got k={k} for a {kh}x{kw} window")
    same_dim(f"{op} input channels * kernel_h * kernel_w vs attribute k",
             None if x.shape[3] is None else x.shape[3] * kh * kw, k)
    _packed_operands(op, ins, k, n, nr)
    nb, h, wd, _ = x.shape
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pb, pl, pr = a["pads"]
    return [TensorType("float32", (nb, out_dim(h, kh, sh, dh, pt, pb),
                                   out_dim(wd, kw, sw, dw, pl, pr), n))]
