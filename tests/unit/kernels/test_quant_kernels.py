"""The blocked int8 kernels (engine.kernels.quant_conv) and the DenseW8 direct kernel, through
their bindings, against the scalar TF Lite transcription in engine/kernels/reference/quant.

Every integer case must match exactly. The cases cover each code path of the kernels: the
contiguous-run and per-tap reduction layouts (groups, W dilation), odd reduction lengths
(a run's pad half word), padding / strides / dilations, depthwise with and without a channel
multiplier, edge tiles (channels and pixels not multiples of the tile), the short tiles of a
QDense with few rows, weights given as inputs, and convs large enough for the threaded entry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.executor.bindings import conv as CB
from engine.kernels import quant_conv as QC
from engine.kernels import quant_requant as QR
from engine.kernels.reference import quant as R
from tests.unit.kernels.harness import run_op

CONST = [False, True, True, True]
Q = {"x_scale": 0.041, "x_zero_point": 9, "y_scale": 0.13, "y_zero_point": -4}

QCONV_CASES = [  # x shape, (kh, kw), C/groups, O, attrs
    ((1, 5, 5, 1), (3, 3), 1, 3, {"pads": (1, 1, 1, 1)}),  # C = 1, odd run, O < lanes
    ((2, 10, 9, 3), (3, 3), 3, 33, {"pads": (2, 0, 1, 2)}),  # asymmetric pads, edge tile
    ((1, 9, 11, 5), (2, 3), 5, 17, {"strides": (2, 3), "pads": (1, 1, 0, 2)}),
    ((1, 12, 12, 4), (3, 3), 4, 16, {"dilations": (2, 3), "pads": (2, 2, 3, 3)}),  # per tap
    ((2, 7, 7, 8), (3, 3), 2, 12, {"groups": 4, "pads": (1, 1, 1, 1)}),  # grouped, odd og
    ((1, 8, 8, 6), (1, 1), 6, 70, {"strides": (2, 2)}),  # 1x1, O over two column blocks
    ((2, 9, 9, 5), (3, 3), 1, 5, {"groups": 5, "pads": (1, 1, 1, 1), "strides": (2, 2)}),
    ((1, 8, 6, 3), (3, 2), 1, 9, {"groups": 3, "dilations": (2, 1), "pads": (1, 2, 0, 1)}),
    ((1, 3, 3, 7), (3, 3), 7, 129, {}),  # one output pixel, tiles of 1 row
]


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _qconv_case(x_shape: tuple[int, ...], k: tuple[int, int], cg: int, o: int,
                rng: np.random.Generator, bias: bool = True) -> list[np.ndarray]:
    x = rng.integers(-128, 128, size=x_shape).astype(np.int8)
    w = rng.integers(-127, 128, size=(*k, cg, o)).astype(np.int8)
    s = (rng.random(o) * 0.02 + 1e-3).astype(np.float32)
    ins = [x, w, s]
    if bias:
        ins.append(rng.integers(-20000, 20000, size=o).astype(np.int32))
    return ins


def _ref_qconv(ins: list[np.ndarray], attrs: dict[str, Any], activation: str) -> np.ndarray:
    b = ins[3] if len(ins) == 4 else None
    return R.qconv2d(ins[0], ins[1], ins[2], b, **Q, strides=attrs.get("strides", (1, 1)),
                     dilations=attrs.get("dilations", (1, 1)),
                     pads=attrs.get("pads", (0, 0, 0, 0)), groups=attrs.get("groups", 1),
                     activation_name=activation)


@pytest.mark.parametrize("case", QCONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[3]}-{c[4]}")
@pytest.mark.parametrize("activation", ["linear", "relu", "relu6"])
def test_qconv2d_paths_are_bit_exact(case: tuple[Any, ...], activation: str) -> None:
    x_shape, k, cg, o, attrs = case
    ins = _qconv_case(x_shape, k, cg, o, _rng("qc", case, activation))
    (got,) = run_op("QConv2D", "quant", ins, {**attrs, **Q, "activation": activation},
                    const=CONST)
    np.testing.assert_array_equal(got, _ref_qconv(ins, attrs, activation))


@pytest.mark.parametrize("per_channel", [True, False])
def test_qconv2d_weights_as_inputs_and_no_bias(per_channel: bool) -> None:
    attrs = {"pads": (1, 0, 0, 1), "strides": (1, 2)}
    ins = _qconv_case((2, 6, 7, 6), (2, 2), 6, 20, _rng("qc-in", per_channel), bias=False)
    ins[2] = ins[2] if per_channel else ins[2][:1]
    (got,) = run_op("QConv2D", "quant", ins, {**attrs, **Q}, const=[False] * 3)
    np.testing.assert_array_equal(got, _ref_qconv(ins, attrs, "linear"))


@pytest.mark.parametrize("case", [
    ((3, 13, 14, 16), (3, 3), 16, 48, {"pads": (1, 1, 1, 1)}),  # row blocks shared out
    ((1, 1, 1, 16), (3, 3), 16, 200, {"pads": (1, 1, 1, 1)}),  # one pixel: column blocks
    ((2, 11, 12, 24), (3, 3), 1, 24, {"groups": 24, "pads": (1, 1, 1, 1)}),  # depthwise
    ((2, 10, 10, 4), (3, 3), 1, 8, {"groups": 4, "pads": (1, 1, 1, 1)}),  # multiplier 2
], ids=["gemm-rows", "gemm-cols", "depthwise", "depthwise-mult"])
def test_qconv2d_threaded_entry_is_bit_exact(case: tuple[Any, ...],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if CB._threads() < 2:
        pytest.skip("the threaded entry needs numba with 2+ threads")
    # the real threshold would need convs too big for the scalar reference: lower it
    monkeypatch.setattr(CB, "CONV_PAR_MIN_FMA", 1)
    x_shape, k, cg, o, attrs = case
    ins = _qconv_case(x_shape, k, cg, o, _rng("qc-par", case))
    (got,) = run_op("QConv2D", "quant", ins, {**attrs, **Q, "activation": "relu"},
                    const=CONST)
    np.testing.assert_array_equal(got, _ref_qconv(ins, attrs, "relu"))


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 13, 40])
@pytest.mark.parametrize("k, n", [(1, 1), (7, 3), (50, 21), (33, 64), (64, 70)])
@pytest.mark.parametrize("activation", ["linear", "relu6"])
def test_qdense_shapes_are_bit_exact(rows: int, k: int, n: int, activation: str) -> None:
    rng = _rng("qd", rows, k, n, activation)
    x = rng.integers(-128, 128, size=(rows, k)).astype(np.int8)
    w = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    s = (rng.random(n) * 0.05 + 1e-3).astype(np.float32)
    b = rng.integers(-3000, 3000, size=n).astype(np.int32)
    (got,) = run_op("QDense", "quant", [x, w, s, b], {**Q, "activation": activation},
                    const=CONST)
    np.testing.assert_array_equal(got, R.qdense(x, w, s, b, **Q, activation_name=activation))


def test_qdense_weights_as_inputs_without_bias() -> None:
    rng = _rng("qd-in")
    x = rng.integers(-128, 128, size=(2, 3, 19)).astype(np.int8)
    w = rng.integers(-127, 128, size=(19, 9)).astype(np.int8)
    s = (rng.random(1) * 0.05 + 1e-3).astype(np.float32)
    (got,) = run_op("QDense", "quant", [x, w, s], {**Q, "activation": "relu"},
                    const=[False] * 3)
    np.testing.assert_array_equal(got, R.qdense(x, w, s, None, **Q, activation_name="relu"))


@pytest.mark.parametrize("shift", [-12, -1, 0, 1, 3])
def test_requantization_extremes_match_reference(shift: int) -> None:
    """Accumulators at and past the int32 range, negative ties, left shifts: the vectorized
    requantization against the scalar gemmlowp / TF Lite transcriptions."""
    rng = _rng("rq", shift)
    acc = np.concatenate([rng.integers(-(1 << 20), 1 << 20, size=200),
                          [0, 1, -1, 2047, -2048, 2048, -2049, (1 << 31) - 1, -(1 << 31)]])
    acc = acc.astype(np.int64)
    o = acc.shape[0]
    mult = rng.integers(1 << 30, 1 << 31, size=o).astype(np.int64)
    mult[:3] = [1 << 30, (1 << 31) - 1, 0]
    shifts = np.full(o, shift, np.int64)
    rq = QR.requant_table(np.zeros(o, np.int32), mult, shifts)
    for single in (False, True):
        out = np.zeros(o, np.int8)
        QR.requant_span(acc.astype(np.int32), out, rq, 5, -128, 127, single)
        f = (R.multiply_by_quantized_multiplier_single if single
             else R.multiply_by_quantized_multiplier)
        want = [min(127, max(-128, f(int(a), int(m), shift) + 5))
                for a, m in zip(acc, mult, strict=True)]
        np.testing.assert_array_equal(out, np.array(want, np.int8))


def test_pack_qweight_layout_pairs_runs() -> None:
    """Odd runs get a zero pad weight; each pair word sits at its run's image offset."""
    woff, kidx = QC.reduction_layout(2, 3, 3, 3, 1, 1, 10)
    assert list(woff) == [0, 2, 4, 6, 8, 30, 32, 34, 36, 38]
    assert list(kidx[8:12]) == [8, -1, 9, 10]
    w = np.arange(2 * 3 * 3 * 2, dtype=np.int8).reshape(2, 3, 3, 2)
    p = QC.pack_qweight(w, 1, 16, kidx)
    assert p.shape == (1, 1, 10, 32)
    flat = w.reshape(18, 2)
    assert p[0, 0, 4, 0] == flat[8, 0] and p[0, 0, 4, 1] == 0  # pad half of the odd run
    assert p[0, 0, 5, 2] == flat[9, 1] and p[0, 0, 5, 3] == flat[10, 1]


@pytest.mark.parametrize("rows", [1, 2, 4, 5, 8])
def test_dense_w8_direct_rows_match_reference(rows: int) -> None:
    """The int8-in-place DenseW8 kernel at every row count it takes (the GEMV branch and
    partial groups of four), wide enough for the column split."""
    rng = _rng("w8", rows)
    x = rng.normal(size=(rows, 129)).astype(np.float32)
    w = rng.integers(-127, 128, size=(129, 67)).astype(np.int8)
    s = (rng.random(67) * 0.02 + 1e-3).astype(np.float32)
    b = rng.normal(size=67).astype(np.float32)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {"activation": "relu"}, const=CONST)
    np.testing.assert_allclose(got, R.dense_w8(x, w, s, b, "relu"), rtol=1e-4, atol=1e-4)
