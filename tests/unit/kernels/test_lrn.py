"""LRN through its binding vs the float64 reference (float32 result, 1e-5 relative)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels.reference.normalization import lrn as ref
from tests.unit.kernels.harness import run_op


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize(("shape", "axis"), [((2, 6, 4, 5), 1), ((3, 4, 5, 7), -1),
                                             ((64, 9, 9, 16), -1)])
def test_lrn(size: int, shape: tuple[int, ...], axis: int) -> None:
    x = np.random.default_rng(size).normal(size=shape).astype(np.float32) * 3
    attrs = {"size": size, "alpha": 0.02, "beta": 0.75, "bias": 2.0, "axis": axis}
    (got,) = run_op("LRN", "normalization", [x], attrs)
    want = ref(x, size, 0.02, 0.75, 2.0, axis)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
