"""Pooling ops through their real bindings against the numpy reference (float32, 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.reference import conv as ref
from tests.unit.kernels.harness import run_op

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _x(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize(
    ("pool", "strides", "pads"),
    [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1)),
     ((3, 3), (2, 2), (0, 1, 0, 1)), ((2, 3), (1, 2), (1, 0, 2, 0))],
)
def test_max_and_avg_pool(n: int, pool: tuple[int, int], strides: tuple[int, int],
                          pads: tuple[int, int, int, int]) -> None:
    x = _x(np.random.default_rng(0), (n, 9, 8, 5))
    attrs = {"pool_size": pool, "strides": strides, "pads": pads}
    (got,) = run_op("MaxPool2D", "conv", [x], attrs)
    np.testing.assert_allclose(got, ref.max_pool2d(x, pool, strides, pads), **TOL)
    for include in (False, True):
        (got,) = run_op("AvgPool2D", "conv", [x], {**attrs, "count_include_pad": include})
        want = ref.avg_pool2d(x, pool, strides, pads, count_include_pad=include)
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools(keepdims: bool) -> None:
    x = _x(np.random.default_rng(1), (2, 7, 6, 33))
    (avg,) = run_op("GlobalAvgPool2D", "conv", [x], {"keepdims": keepdims})
    (mx,) = run_op("GlobalMaxPool2D", "conv", [x], {"keepdims": keepdims})
    np.testing.assert_allclose(avg, ref.global_avg_pool2d(x, keepdims), **TOL)
    np.testing.assert_allclose(mx, ref.global_max_pool2d(x, keepdims), **TOL)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3), h=st.integers(3, 10), w=st.integers(3, 10), c=st.integers(1, 9),
    k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 1),
    include=st.booleans(), seed=st.integers(0, 2**16),
)
def test_pools_random_shapes(n: int, h: int, w: int, c: int, k: int, s: int, p: int,
                             include: bool, seed: int) -> None:
    x = _x(np.random.default_rng(seed), (n, h, w, c))
    attrs = {"pool_size": (k, k), "strides": (s, s), "pads": (p, p, p, p)}
    if p >= k:  # a window made only of padding: not a shape any layer produces
        return
    (got,) = run_op("MaxPool2D", "conv", [x], attrs)
    np.testing.assert_allclose(got, ref.max_pool2d(x, (k, k), (s, s), (p,) * 4), **TOL)
    (got,) = run_op("AvgPool2D", "conv", [x], {**attrs, "count_include_pad": include})
    want = ref.avg_pool2d(x, (k, k), (s, s), (p,) * 4, count_include_pad=include)
    np.testing.assert_allclose(got, want, **TOL)
