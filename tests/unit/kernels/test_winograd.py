"""Winograd F(2x2, 3x3) convs through the Conv2D binding vs the float64 reference, and the
binding's choice between it and the direct GEMM."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine.executor.bindings.conv as conv_binding
from engine.executor.binding import binding_for
from engine.ir import TensorType, schema_for
from engine.kernels.reference.conv import conv2d as ref_conv2d
from tests.unit.kernels.harness import run_op

# float32 sums over 9 * C terms through the transforms' extra adds: a few ulps more than
# the direct conv's, far inside this
RTOL, ATOL = 1e-4, 1e-4


def _case(x_shape: tuple[int, int, int, int], out_ch: int,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, *x_shape, out_ch])
    x = rng.normal(size=x_shape).astype(np.float32)
    w = (rng.normal(size=(3, 3, x_shape[3], out_ch)) * 2 / np.sqrt(9 * x_shape[3]))
    b = rng.normal(size=(out_ch,)).astype(np.float32)
    return x, w.astype(np.float32), b


def _kernel_name(x_shape: tuple[int, ...], w: np.ndarray, attrs: dict[str, Any]) -> str:
    resolved = schema_for("Conv2D").resolve_attrs(attrs, "t")
    in_types = [TensorType("float32", x_shape), TensorType("float32", w.shape)]
    out_types = schema_for("Conv2D").infer(in_types, resolved)
    prepared = binding_for("Conv2D")(resolved, in_types, out_types, [None, w])
    assert prepared.native is not None
    return prepared.native.kernel


def _check(x: np.ndarray, w: np.ndarray, b: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    (got,) = run_op("Conv2D", "conv", [x, w, b], attrs, const=[False, True, True])
    want = ref_conv2d(x, w, b, attrs.get("strides", (1, 1)), attrs.get("dilations", (1, 1)),
                      attrs.get("pads", (0, 0, 0, 0)),
                      activation_name=attrs.get("activation", "linear"),
                      alpha=attrs.get("alpha", 0.2))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return got


GEOMETRIES = [
    # x shape, out channels, attrs
    ((1, 15, 15, 32), 64, {"activation": "relu"}),  # the seed CNN's second conv, odd output
    ((1, 6, 6, 64), 64, {"activation": "relu"}),  # its third: 4x4 output, one block
    ((20, 15, 15, 32), 64, {"activation": "relu"}),  # a server batch: many blocks
    ((3, 9, 10, 20), 100, {"pads": (1, 1, 1, 1)}),  # C, O not multiples of a vector, 2 cols
    ((2, 8, 7, 16), 48, {"pads": (0, 2, 1, 0), "activation": "relu6"}),  # asymmetric pads
    ((2, 5, 5, 17), 16, {"pads": (1, 1, 1, 1), "activation": "leaky_relu", "alpha": 0.1}),
    ((1, 3, 3, 16), 16, {}),  # one output pixel: one tile, three of its pixels dropped
    ((4, 4, 4, 33), 7, {"pads": (1, 1, 1, 1)}),  # fewer output channels than a vector
]


@pytest.mark.parametrize(("x_shape", "out_ch", "attrs"), GEOMETRIES)
def test_matches_reference(x_shape: tuple[int, int, int, int], out_ch: int,
                           attrs: dict[str, Any]) -> None:
    x, w, b = _case(x_shape, out_ch)
    assert _kernel_name(x_shape, w, attrs).startswith("WG.winograd_kernels(")
    _check(x, w, b, attrs)


@pytest.mark.parametrize(("x_shape", "out_ch", "attrs"), [
    *GEOMETRIES[2:4], ((6, 12, 11, 16), 48, {"pads": (0, 2, 1, 0), "activation": "relu6"})])
def test_parallel_matches_reference(x_shape: tuple[int, int, int, int], out_ch: int,
                                    attrs: dict[str, Any],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_binding, "CONV_PAR_MIN_FMA", 0)
    monkeypatch.setattr(conv_binding, "_threads", lambda: 2)
    x, w, b = _case(x_shape, out_ch, seed=1)
    kernel = _kernel_name(x_shape, w, attrs)
    assert kernel.startswith("WG.") and kernel.endswith("[1]"), kernel
    _check(x, w, b, attrs)


def test_agrees_with_the_direct_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same answers, to float32 rounding, with Winograd on and off (NUMBASERVE_WINOGRAD)."""
    x, w, b = _case((5, 13, 13, 32), 64, seed=2)
    attrs = {"pads": (1, 1, 1, 1), "activation": "relu"}
    wino = _check(x, w, b, attrs)
    monkeypatch.setenv("NUMBASERVE_WINOGRAD", "0")
    assert _kernel_name(x.shape, w, attrs).startswith("CK.gemm_kernels(")
    direct = _check(x, w, b, attrs)
    np.testing.assert_allclose(wino, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("x_shape", "attrs"), [
    ((1, 8, 8, 3), {}),  # too few input channels (the seed CNN's first conv)
    ((1, 8, 8, 32), {"strides": (2, 2)}),
    ((1, 8, 8, 32), {"dilations": (2, 2)}),
    ((1, 8, 8, 32), {"activation": "gelu"}),  # not foldable into the output transform
])
def test_other_convs_stay_direct(x_shape: tuple[int, int, int, int],
                                 attrs: dict[str, Any]) -> None:
    x, w, b = _case(x_shape, 16)
    assert _kernel_name(x_shape, w, attrs).startswith("CK.gemm_kernels(")
    _check(x, w, b, attrs)


def test_non_finite_inputs_stay_local() -> None:
    """An inf reaches every output whose window covers it (as in the direct conv) and, at
    most, the rest of those outputs' 2x2 tiles (the transforms mix a tile's window); never
    another image, another tile or a block's spare rows."""
    x, w, b = _case((3, 7, 7, 16), 16, seed=3)
    x[1, 3, 3, 5] = np.inf
    (got,) = run_op("Conv2D", "conv", [x, w, b], {}, const=[False, True, True])
    assert np.isfinite(got[0]).all() and np.isfinite(got[2]).all()
    bad = ~np.isfinite(got[1]).all(axis=-1)
    covering = np.zeros((5, 5), dtype=bool)
    covering[1:4, 1:4] = True  # outputs whose 3x3 window holds input pixel (3, 3)
    tiles = np.zeros((5, 5), dtype=bool)
    tiles[0:4, 0:4] = True  # the 2x2 tiles those outputs belong to
    assert (bad >= covering).all() and (bad <= tiles).all(), bad
