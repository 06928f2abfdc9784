"""BatchNorm and LayerNorm through their bindings vs the float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ShapeError
from engine.kernels.reference import normalization as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 1e-5


def _bn_params(rng: np.random.Generator, c: int) -> list[np.ndarray]:
    gamma = rng.uniform(0.5, 2.0, c).astype(np.float32)
    beta = rng.normal(size=c).astype(np.float32)
    mean = rng.normal(size=c).astype(np.float32)
    var = rng.uniform(0.1, 3.0, c).astype(np.float32)
    return [gamma, beta, mean, var]


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 5, 5, 8), -1), ((3, 4), 1), ((2, 3, 4, 5), 1), ((1, 7, 3), 0), ((4, 32, 32, 16), -1),
     ((2, 16, 40, 40), 1), ((1, 1, 1, 1), 3)],
)
@pytest.mark.parametrize("const", [True, False])
def test_batchnorm(shape: tuple[int, ...], axis: int, const: bool) -> None:
    rng = np.random.default_rng(sum(shape) + axis)
    x = rng.normal(size=shape).astype(np.float32)
    params = _bn_params(rng, shape[axis])
    attrs = {"axis": axis, "epsilon": 1e-3}
    (got,) = run_op("BatchNorm", "normalization", [x, *params], attrs,
                    const=[False] + [const] * 4)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, ref.batch_norm(x, *params, 1e-3, axis), rtol=RTOL, atol=ATOL)


def test_batchnorm_float64_and_epsilon() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6)).astype(np.float64)
    params = [p.astype(np.float64) for p in _bn_params(rng, 6)]
    params[3][:] = 0.0  # var 0: only epsilon keeps it finite
    (got,) = run_op("BatchNorm", "normalization", [x, *params], {"epsilon": 0.5},
                    const=[False, True, True, True, True])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.batch_norm(x, *params, 0.5, -1), rtol=1e-12)


@pytest.mark.parametrize(
    ("shape", "axis", "gamma_shape"),
    [((2, 7, 384), -1, (384,)), ((4, 3, 5), 1, (3, 5)), ((4, 3, 5), 1, (15,)),
     ((8, 128, 384), 2, (384,)), ((5,), 0, (5,)), ((3, 1), -1, (1,))],
)
@pytest.mark.parametrize("with_beta", [True, False])
@pytest.mark.parametrize("const", [True, False])
def test_layernorm(
    shape: tuple[int, ...], axis: int, gamma_shape: tuple[int, ...], with_beta: bool, const: bool
) -> None:
    rng = np.random.default_rng(len(shape) * 31 + axis)
    x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, gamma_shape).astype(np.float32)
    beta = rng.normal(size=gamma_shape).astype(np.float32)
    ins = [x, gamma, beta] if with_beta else [x, gamma]
    (got,) = run_op("LayerNorm", "normalization", ins, {"axis": axis, "epsilon": 1e-5},
                    const=[False] + [const] * (len(ins) - 1))
    want = ref.layer_norm(x, gamma, beta if with_beta else None, 1e-5, axis)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_layernorm_large_mean_is_stable() -> None:
    rng = np.random.default_rng(7)
    x = (1000.0 + rng.normal(size=(16, 384)) * 0.01).astype(np.float32)
    gamma = np.ones(384, np.float32)
    (got,) = run_op("LayerNorm", "normalization", [x, gamma], {"epsilon": 1e-9},
                    const=[False, True])
    np.testing.assert_allclose(got, ref.layer_norm(x, gamma, None, 1e-9), rtol=1e-3, atol=1e-3)
    assert abs(float(got.std()) - 1.0) < 1e-3


def test_layernorm_float64_input() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 10))
    gamma = rng.uniform(size=10)
    (got,) = run_op("LayerNorm", "normalization", [x, gamma], {})
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.layer_norm(x, gamma), rtol=RTOL, atol=ATOL)


def test_layernorm_rejects_wrong_gamma() -> None:
    x = np.zeros((2, 4, 6), np.float32)
    with pytest.raises(ShapeError):
        run_op("LayerNorm", "normalization", [x, np.ones(5, np.float32)], {})


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    data=st.data(),
)
def test_layernorm_property(shape: list[int], data: st.DataObject) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    gamma = rng.normal(size=shape[axis:]).astype(np.float32)
    beta = rng.normal(size=shape[axis:]).astype(np.float32)
    (got,) = run_op("LayerNorm", "normalization", [x, gamma, beta], {"axis": axis},
                    const=[False, True, True])
    np.testing.assert_allclose(got, ref.layer_norm(x, gamma, beta, 1e-5, axis),
                               rtol=RTOL, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), data=st.data())
def test_batchnorm_property(shape: list[int], data: st.DataObject) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(sum(shape) + 3)
    x = rng.normal(size=shape).astype(np.float32)
    params = _bn_params(rng, shape[axis])
    (got,) = run_op("BatchNorm", "normalization", [x, *params], {"axis": axis},
                    const=[False, True, True, True, True])
    np.testing.assert_allclose(got, ref.batch_norm(x, *params, 1e-3, axis),
                               rtol=RTOL, atol=ATOL)
