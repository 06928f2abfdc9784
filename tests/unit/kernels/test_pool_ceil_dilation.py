"""Pooling with ONNX's extras (ceil_mode, dilations, count_include_pad under ceil mode) through
the bindings vs the float64 reference (tolerance 1e-5 absolute and relative)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels.reference import conv as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-5, 1e-5

CASES = [
    # x shape, pool, strides, pads, dilations, ceil_mode
    ((2, 7, 7, 3), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),
    ((1, 6, 6, 4), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),  # last window starts on pad
    ((2, 9, 8, 5), (2, 3), (1, 2), (1, 0, 0, 1), (2, 2), False),
    ((1, 10, 11, 2), (3, 2), (3, 2), (2, 1, 1, 1), (2, 3), True),
]


@pytest.mark.parametrize(("shape", "pool", "strides", "pads", "dil", "ceil"), CASES)
@pytest.mark.parametrize("mode", ["max", "avg", "avg_pad"])
def test_pool_ceil_dilation(shape: tuple[int, ...], pool: tuple[int, int],
                            strides: tuple[int, int], pads: tuple[int, ...],
                            dil: tuple[int, int], ceil: bool, mode: str) -> None:
    x = np.random.default_rng(len(shape) + sum(pool)).normal(size=shape).astype(np.float32)
    attrs = {"pool_size": pool, "strides": strides, "pads": pads, "dilations": dil,
             "ceil_mode": ceil}
    if mode == "max":
        (got,) = run_op("MaxPool2D", "conv", [x], attrs)
        want = ref.max_pool2d(x, pool, strides, pads, dil, ceil)
    else:
        attrs["count_include_pad"] = mode == "avg_pad"
        (got,) = run_op("AvgPool2D", "conv", [x], attrs)
        want = ref.avg_pool2d(x, pool, strides, pads, mode == "avg_pad", dil, ceil)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_ceil_mode_drops_window_starting_in_end_pad() -> None:
    """5 wide, pool 2, stride 2, pad 1 each side: ceil gives 4 windows, but the 4th would start
    in the right pad, so 3 remain (PyTorch and ONNX)."""
    x = np.ones((1, 1, 5, 1), np.float32)
    attrs = {"pool_size": (1, 2), "strides": (1, 2), "pads": (0, 0, 1, 1), "ceil_mode": True}
    (got,) = run_op("MaxPool2D", "conv", [x], attrs)
    assert got.shape == (1, 1, 3, 1)
