"""Quant family through its bindings vs the numpy references in engine/kernels/reference/quant.

Integer paths (Quantize, Dequantize, QConv2D, QDense) must match exactly: the reference is a
scalar transcription of TF Lite's QuantizeMultiplier / SaturatingRoundingDoublingHighMul /
RoundingDivideByPOT. Weight-only float paths compare with a float64 reference on the
dequantized weight, to the float conv/dense tests' tolerance (float32 accumulation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.kernels import quant as QK
from engine.kernels.reference import quant as R
from engine.kernels.reference.conv import conv2d as ref_conv2d
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 1e-4  # float32 accumulation over K <= a few hundred
CONST = [False, True, True, True]

CONV_CASES = [  # x shape, (kh, kw), C/groups, O, attrs
    ((2, 9, 9, 6), (3, 3), 6, 20, {"pads": (1, 1, 1, 1)}),
    ((1, 8, 7, 4), (3, 2), 4, 12, {"strides": (2, 1), "pads": (0, 1, 2, 0)}),
    ((2, 9, 9, 6), (3, 3), 1, 6, {"groups": 6, "pads": (1, 1, 1, 1)}),  # depthwise
    ((1, 7, 7, 4), (3, 3), 1, 8, {"groups": 4}),  # depthwise, multiplier 2
    ((2, 8, 8, 6), (1, 1), 3, 8, {"groups": 2, "dilations": (1, 1)}),  # grouped 1x1
    ((1, 11, 11, 3), (3, 3), 3, 40, {"dilations": (2, 2), "strides": (2, 2)}),
]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _w8(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    return w, (rng.random(shape[-1]) * 0.02 + 1e-3).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 40])
@pytest.mark.parametrize("activation", ["linear", "relu", "gelu"])
def test_dense_w8_matches_reference(rows: int, activation: str) -> None:
    rng = _rng("dense", rows, activation)
    x = rng.normal(size=(rows, 37)).astype(np.float32)
    w, s = _w8(rng, (37, 45))
    b = rng.normal(size=45).astype(np.float32)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {"activation": activation}, const=CONST)
    np.testing.assert_allclose(got, R.dense_w8(x, w, s, b, activation), rtol=RTOL, atol=ATOL)


def test_dense_w8_rank3_and_weights_as_inputs() -> None:
    rng = _rng("dense3")
    x = rng.normal(size=(2, 5, 16)).astype(np.float32)
    w, s = _w8(rng, (16, 24))
    (got,) = run_op("DenseW8", "quant", [x, w, s], {}, const=[False, False, False])
    np.testing.assert_allclose(got, R.dense_w8(x, w, s), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rows", [2, 33])
def test_dense_f16_matches_reference(rows: int) -> None:
    rng = _rng("f16", rows)
    x = rng.normal(size=(rows, 30)).astype(np.float32)
    w = rng.normal(size=(30, 17)).astype(np.float16)
    w[0, :4] = [np.float16(6e-8), np.float16(-1e-5), np.float16(65504), np.float16(0.0)]
    b = rng.normal(size=17).astype(np.float32)
    (got,) = run_op("DenseF16", "quant", [x, w, b], {"activation": "tanh"}, const=CONST[:3])
    want = np.tanh(x.astype(np.float64) @ w.astype(np.float64) + b)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_upcast_f16_is_exact_for_every_half() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty(bits.shape, dtype=np.float32)
    QK.upcast_f16(bits, out)
    want = bits.view(np.float16).astype(np.float32)
    same = (out.view(np.uint32) == want.view(np.uint32)) | (np.isnan(out) & np.isnan(want))
    assert same.all()


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[3]}-{c[4]}")
@pytest.mark.parametrize("activation", ["relu6", "sigmoid"])
def test_conv_w8_and_f16_match_reference(case: tuple[Any, ...], activation: str) -> None:
    x_shape, (kh, kw), cg, o, attrs = case
    rng = _rng("conv", case, activation)
    x = rng.normal(size=x_shape).astype(np.float32)
    w, s = _w8(rng, (kh, kw, cg, o))
    b = rng.normal(size=o).astype(np.float32)
    a = {**attrs, "activation": activation}
    ref_attrs = {"strides": attrs.get("strides", (1, 1)),
                 "dilations": attrs.get("dilations", (1, 1)),
                 "pads": attrs.get("pads", (0, 0, 0, 0)), "groups": attrs.get("groups", 1),
                 "activation_name": activation}
    (got,) = run_op("Conv2DW8", "quant", [x, w, s, b], a, const=CONST)
    np.testing.assert_allclose(got, R.conv2d_w8(x, w, s, b, **ref_attrs), rtol=RTOL, atol=ATOL)
    w16 = (w * s).astype(np.float16)
    (got16,) = run_op("Conv2DF16", "quant", [x, w16, b], a, const=CONST[:3])
    want16 = ref_conv2d(x, w16.astype(np.float64), b, **ref_attrs)
    np.testing.assert_allclose(got16, want16, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ full int8: exact


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[3]}-{c[4]}")
@pytest.mark.parametrize("activation", ["linear", "relu", "relu6"])
def test_qconv2d_is_bit_exact(case: tuple[Any, ...], activation: str) -> None:
    x_shape, (kh, kw), cg, o, attrs = case
    rng = _rng("qconv", case, activation)
    x = rng.integers(-128, 128, size=x_shape).astype(np.int8)
    w, s = _w8(rng, (kh, kw, cg, o))
    b = rng.integers(-20000, 20000, size=o).astype(np.int32)
    q = {"x_scale": 0.037, "x_zero_point": -7, "y_scale": 0.11, "y_zero_point": 3}
    (got,) = run_op("QConv2D", "quant", [x, w, s, b], {**attrs, **q, "activation": activation},
                    const=CONST)
    want = R.qconv2d(x, w, s, b, **q, strides=attrs.get("strides", (1, 1)),
                     dilations=attrs.get("dilations", (1, 1)), pads=attrs.get("pads", (0,) * 4),
                     groups=attrs.get("groups", 1), activation_name=activation)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    assert np.unique(got).size > 8  # the case exercises the range, not just the clamps


@pytest.mark.parametrize("per_channel", [True, False])
def test_qdense_is_bit_exact(per_channel: bool) -> None:
    rng = _rng("qdense", per_channel)
    x = rng.integers(-128, 128, size=(2, 3, 50)).astype(np.int8)
    w, s = _w8(rng, (50, 21))
    s = s if per_channel else s[:1]
    b = rng.integers(-3000, 3000, size=21).astype(np.int32)
    q = {"x_scale": 0.02, "x_zero_point": 11, "y_scale": 0.07, "y_zero_point": -20}
    (got,) = run_op("QDense", "quant", [x, w, s, b], {**q, "activation": "relu"}, const=CONST)
    np.testing.assert_array_equal(got, R.qdense(x, w, s, b, **q, activation_name="relu"))


def test_quantize_and_dequantize_are_exact() -> None:
    rng = _rng("q")
    x = (rng.normal(size=4000) * 4).astype(np.float32)
    # ties and the float32 just below 0.5: round half away from zero, never 0.49999997 -> 1
    x[:6] = np.array([0.05, -0.05, 0.15, -0.25, 0.049999997, 100.0], np.float32)
    (q,) = run_op("Quantize", "quant", [x], {"scale": 0.1, "zero_point": -3})
    np.testing.assert_array_equal(q, R.quantize(x, 0.1, -3))
    assert q[5] == 127
    (d,) = run_op("Dequantize", "quant", [q], {"scale": 0.1, "zero_point": -3})
    np.testing.assert_array_equal(d, R.dequantize(q, 0.1, -3))


@pytest.mark.parametrize("m", [0.0, 1e-12, 0.3, 0.5, 0.75, 0.9999999999, 1.0, 3.7, 1 - 2**-33])
def test_quantize_multiplier_matches_reference(m: float) -> None:
    assert QK.quantize_multiplier(m) == R.quantize_multiplier(m)
    mult, shift = R.quantize_multiplier(m)
    if mult:
        assert (1 << 30) <= mult < (1 << 31)
        assert abs(mult * 2.0 ** (shift - 31) - m) <= m * 2**-30
