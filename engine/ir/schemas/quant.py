"""Quantized ops: weight-only (dynamic-range int8, float16) and full int8 (TF Lite semantics).

Weight-only forms keep float32 activations; the kernels read the narrow weights and widen them
per call, so a loaded model holds only the narrow copy:

* ``DenseW8(x f32 (..., K), w int8 (K, N), w_scale f32 (N,), [bias f32 (N,)])``: Dense with
  ``w_real[k, n] = w[k, n] * w_scale[n]`` (per-output-channel symmetric, zero point 0).
  Attrs as Dense (``activation``, ``alpha``), and ``compute``: ``"float32"`` (the default:
  float32 arithmetic on the widened weight) or ``"int8"`` (TF Lite's dynamic-range "hybrid"
  arithmetic: each row of x quantized on the fly, symmetric int8 with
  ``row_scale = max|row| / 127`` and ``q = rint(x * (127 / max|row|))`` in float32, rounding
  half to even (TF Lite rounds ties away from zero: they differ only on exact ties); int32
  sums of ``q * w``; ``y = float32(sum) * (row_scale * w_scale[n])``; an all-zero row gives
  0 before bias; engine.kernels.reference.quant_hybrid is the definition).
* ``Conv2DW8(x f32 NHWC, w int8 (KH, KW, C/groups, O), w_scale f32 (O,), [bias f32 (O,)])``:
  Conv2D with ``w_real[..., o] = w[..., o] * w_scale[o]``; attrs as Conv2D, and ``compute``
  as DenseW8's, with one scale per image (``max|x[n]| / 127`` over the whole image, as TF
  Lite's hybrid conv) instead of per row; grouped and depthwise convs compute in float32
  whatever ``compute`` says.
* ``DenseF16(x f32, w float16 (K, N), [bias f32])`` and ``Conv2DF16(x f32, w float16, [bias])``:
  Dense / Conv2D with ``w_real = float32(w)``; attrs as Dense / Conv2D.

Full int8 forms follow TF Lite's int8 quantization spec bit for bit (these are what the
``.tflite`` importer emits). ``round`` is round-half-away-from-zero (C's ``std::round``):

* ``Quantize(x f32) -> int8``; attrs ``scale`` (float), ``zero_point`` (int):
  ``q = clamp(round(float32(x) / float32(scale)) + zero_point, -128, 127)`` (float32 division).
* ``Dequantize(q int8) -> f32``; attrs ``scale``, ``zero_point``:
  ``y = float32(float64(float32(scale)) * (q - zero_point))`` (TF Lite's reference kernel).
* ``QConv2D(x int8 NHWC, w int8 (KH, KW, C/groups, O), w_scale f32 (O,) or (1,),
  [bias int32 (O,)]) -> int8``; attrs ``x_scale``, ``x_zero_point``, ``y_scale``,
  ``y_zero_point``, ``strides``, ``dilations``, ``pads`` (top, bottom, left, right; padded
  input elements are ``x_zero_point``, i.e. real 0), ``groups`` (``groups == C`` with
  ``C/groups == 1`` is TF Lite's DEPTHWISE_CONV_2D, output channel ``o`` reading input channel
  ``o // (O / C)``), ``activation`` in ``linear | relu | relu6``. Weight zero point is 0;
  bias has scale ``x_scale * w_scale[o]`` and zero point 0. Per output channel ``o``:

  1. ``acc = bias[o] + sum((x - x_zero_point) * w)`` in int32;
  2. ``M = float64(x_scale) * float64(w_scale[o]) / float64(y_scale)`` (each a float32 first),
     turned into ``(multiplier, shift)`` by TF Lite's ``QuantizeMultiplier``: ``frexp``, the
     mantissa rounded to Q31, ``2**31`` renormalized, shifts below -31 giving 0;
  3. ``acc = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2**max(shift, 0),
     multiplier), max(-shift, 0))`` (gemmlowp's functions; the high mul rounds half away from
     zero with C's truncating division);
  4. ``y = clamp(acc + y_zero_point, lo, hi)`` where ``(lo, hi)`` is ``(-128, 127)`` narrowed
     by the activation: relu ``lo = max(lo, y_zero_point)``; relu6 additionally
     ``hi = min(hi, y_zero_point + round(float32(6) / float32(y_scale)))``.

  A ``w_scale`` of shape (1,) is per-tensor (broadcast over ``o``).
* ``QDense(x int8 (..., K), w int8 (K, N), w_scale f32 (N,) or (1,), [bias int32 (N,)])
  -> int8``: the same arithmetic over the last axis (TF Lite's FULLY_CONNECTED with its
  (N, K) weight transposed), except step 3, where TF Lite's reference FULLY_CONNECTED rounds
  once: ``(acc * multiplier + 2**(30 - shift)) >> (31 - shift)`` in int64; attrs
  ``x_scale``, ``x_zero_point``, ``y_scale``, ``y_zero_point``, ``activation``.

Every other op of a fully quantized graph runs in float: ``Dequantize -> op -> Quantize``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DTypeError, ShapeError, UnsupportedOpError
from engine.ir.graph import TensorType
from engine.ir.schema import REQUIRED, register
from engine.ir.schemas._common import check_activation, expect_rank, same_dim
from engine.ir.schemas.conv import _CONV_ATTRS, out_dim
from engine.ir.schemas.linalg import _dense

__all__ = ["Q_ACTIVATIONS", "quant_activation"]

Q_ACTIVATIONS = ("linear", "relu", "relu6")


def quant_activation(name: str) -> None:
    if name not in Q_ACTIVATIONS:
        raise UnsupportedOpError(
            f"activation {name!r} has no int8 form; supported: {Q_ACTIVATIONS}")


def _dtype(what: str, t: TensorType, *expected: str) -> None:
    if t.dtype not in expected:
        raise DTypeError(f"{what} must be {' or '.join(expected)}, got {t.dtype}")


def _scale(what: str, t: TensorType, n: int | None, allow_one: bool) -> None:
    _dtype(what, t, "float32")
    expect_rank(what, t.shape, 1)
    if allow_one and t.shape[0] == 1:
        return
    same_dim(f"{what} length vs output channels", t.shape[0], n)


def _conv_shape(x: TensorType, w: TensorType, a: Mapping[str, Any], op: str) -> TensorType:
    expect_rank(f"{op} input", x.shape, 4)
    expect_rank(f"{op} weight", w.shape, 4)
    n, h, wd, c = x.shape
    kh, kw, ci, co = w.shape
    g = int(a["groups"])
    assert kh is not None and kw is not None and co is not None
    if c is not None and ci is not None:
        same_dim(f"{op} input channels / groups vs weight", c // g if c % g == 0 else -1, ci)
    if co % g:
        raise ShapeError(f"{op} output channels {co} not divisible by groups {g}")
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pb, pl, pr = a["pads"]
    return TensorType(x.dtype, (n, out_dim(h, kh, sh, dh, pt, pb), out_dim(wd, kw, sw, dw, pl, pr),
                                co))


# ------------------------------------------------------------------ weight-only (float acts)


COMPUTE_MODES = ("float32", "int8")


def _compute(op: str, a: Mapping[str, Any]) -> None:
    if a["compute"] not in COMPUTE_MODES:
        raise UnsupportedOpError(f"{op}: attribute compute must be one of "
                                 f"{', '.join(COMPUTE_MODES)}, got {a['compute']!r}")


@register("DenseW8", inputs=(3, 4),
          attrs={"activation": "linear", "alpha": 0.2, "compute": "float32"},
          doc="Dense with int8 weight (K, N) and per-column float32 scale (N,)")
def _dense_w8(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    _compute("DenseW8", a)
    _dtype("DenseW8 input", ins[0], "float32")
    _dtype("DenseW8 weight", ins[1], "int8")
    _scale("DenseW8 w_scale", ins[2], ins[1].shape[-1] if ins[1].rank else None, False)
    return _dense([ins[0], ins[1], *ins[3:]], a)


@register("Conv2DW8", inputs=(3, 4), attrs={**_CONV_ATTRS, "compute": "float32"},
          doc="Conv2D with int8 weight (KH, KW, C/g, O) and per-channel float32 scale (O,)")
def _conv_w8(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    _compute("Conv2DW8", a)
    check_activation(a["activation"])
    _dtype("Conv2DW8 input", ins[0], "float32")
    _dtype("Conv2DW8 weight", ins[1], "int8")
    out = _conv_shape(ins[0], ins[1], a, "Conv2DW8")
    _scale("Conv2DW8 w_scale", ins[2], out.shape[3], False)
    if len(ins) == 4:
        expect_rank("Conv2DW8 bias", ins[3].shape, 1)
        same_dim("Conv2DW8 bias length vs output channels", ins[3].shape[0], out.shape[3])
    return [out]


@register("DenseF16", inputs=(2, 3), attrs={"activation": "linear", "alpha": 0.2},
          doc="Dense with a float16 weight (K, N), widened to float32 inside the kernel")
def _dense_f16(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    _dtype("DenseF16 input", ins[0], "float32")
    _dtype("DenseF16 weight", ins[1], "float16")
    return _dense(ins, a)


@register("Conv2DF16", inputs=(2, 3), attrs=_CONV_ATTRS,
          doc="Conv2D with a float16 weight, widened to float32 inside the kernel")
def _conv_f16(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    check_activation(a["activation"])
    _dtype("Conv2DF16 input", ins[0], "float32")
    _dtype("Conv2DF16 weight", ins[1], "float16")
    out = _conv_shape(ins[0], ins[1], a, "Conv2DF16")
    if len(ins) == 3:
        expect_rank("Conv2DF16 bias", ins[2].shape, 1)
        same_dim("Conv2DF16 bias length vs output channels", ins[2].shape[0], out.shape[3])
    return [out]


# ------------------------------------------------------------------ full int8 (TF Lite)

_QPARAMS = {"scale": REQUIRED, "zero_point": 0}


@register("Quantize", inputs=1, attrs=_QPARAMS,
          doc="float32 -> int8: clamp(round_half_away(x / scale) + zero_point, -128, 127)")
def _quantize(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    _dtype("Quantize input", ins[0], "float32")
    _check_qparams("Quantize", float(a["scale"]), int(a["zero_point"]))
    return [TensorType("int8", ins[0].shape)]


@register("Dequantize", inputs=1, attrs=_QPARAMS,
          doc="int8 -> float32: (q - zero_point) * scale")
def _dequantize(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    _dtype("Dequantize input", ins[0], "int8")
    _check_qparams("Dequantize", float(a["scale"]), int(a["zero_point"]))
    return [TensorType("float32", ins[0].shape)]


def _check_qparams(op: str, scale: float, zero_point: int) -> None:
    if not scale > 0:
        raise UnsupportedOpError(f"{op}: scale must be > 0, got {scale}")
    if not -128 <= zero_point <= 127:
        raise UnsupportedOpError(f"{op}: int8 zero_point must be in [-128, 127], got {zero_point}")


_QIO = {"x_scale": REQUIRED, "x_zero_point": 0, "y_scale": REQUIRED, "y_zero_point": 0}
_QCONV_ATTRS = {**_QIO, "strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0),
                "groups": 1, "activation": "linear"}
_QDENSE_ATTRS = {**_QIO, "activation": "linear"}


def _check_qio(op: str, ins: Sequence[TensorType], a: Mapping[str, Any], n: int | None) -> None:
    quant_activation(a["activation"])
    _check_qparams(op, float(a["x_scale"]), int(a["x_zero_point"]))
    _check_qparams(op, float(a["y_scale"]), int(a["y_zero_point"]))
    _dtype(f"{op} input", ins[0], "int8")
    _dtype(f"{op} weight", ins[1], "int8")
    _scale(f"{op} w_scale", ins[2], n, True)
    if len(ins) == 4:
        _dtype(f"{op} bias", ins[3], "int32")
        expect_rank(f"{op} bias", ins[3].shape, 1)
        same_dim(f"{op} bias length vs output channels", ins[3].shape[0], n)


@register("QConv2D", inputs=(3, 4), attrs=_QCONV_ATTRS,
          doc="int8 Conv2D, int32 accumulation, TF Lite per-channel requantization")
def _qconv(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    out = _conv_shape(ins[0], ins[1], a, "QConv2D")
    _check_qio("QConv2D", ins, a, out.shape[3])
    return [TensorType("int8", out.shape)]


@register("QDense", inputs=(3, 4), attrs=_QDENSE_ATTRS,
          doc="int8 Dense over the last axis, int32 accumulation, TF Lite requantization")
def _qdense(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, w = ins[0], ins[1]
    if x.rank < 1:
        raise ShapeError("QDense input must have rank >= 1")
    expect_rank("QDense weight", w.shape, 2)
    same_dim("QDense input features vs weight rows", x.shape[-1], w.shape[0])
    _check_qio("QDense", ins, a, w.shape[1])
    return [TensorType("int8", x.shape[:-1] + (w.shape[1],))]
