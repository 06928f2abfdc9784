"""Kernel bindings: normalization family (BatchNorm for inference, LayerNorm)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.executor.binding import Prepared, bind
from engine.executor.threads import plan_threads, use_parallel
from engine.ir.graph import TensorType
from engine.kernels import normalization as K

__all__: list[str] = []

_F32 = np.dtype(np.float32)


def _dims(t: TensorType) -> tuple[int, ...]:
    return tuple(int(d or 0) for d in t.shape)  # types are concrete by the time we bind


def _bn_coeffs(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fold the four BatchNorm vectors into one scale and one shift (in float64, then f32)."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale, shift


@bind("BatchNorm")
def _batchnorm(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    axis = attrs["axis"] % len(shape)
    a, c, b = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    eps = float(attrs["epsilon"])
    dtype = np.dtype(in_types[0].dtype)
    bshape = (1, c, 1)

    folded: tuple[np.ndarray, np.ndarray] | None = None
    g_, b_, m_, v_ = consts[1:5]
    if g_ is not None and b_ is not None and m_ is not None and v_ is not None:
        s64, h64 = _bn_coeffs(g_, b_, m_, v_, eps)
        folded = (s64.astype(dtype), h64.astype(dtype))

    def coeffs(ins: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if folded is not None:
            return folded
        s, h = _bn_coeffs(ins[1], ins[2], ins[3], ins[4], eps)
        return s.astype(dtype), h.astype(dtype)

    if dtype != _F32:
        def run_np(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
            s, h = coeffs(ins)
            o3 = outs[0].reshape(a, c, b)
            np.multiply(ins[0].reshape(a, c, b), s.reshape(bshape), out=o3)
            np.add(o3, h.reshape(bshape), out=o3)

        return Prepared(run_np)

    parallel = use_parallel(a * c * b >= K.PAR_MIN and a >= 2)
    par, block = K.channel_affine, K.channel_affine_block
    chunks = plan_threads()

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
        s, h = coeffs(ins)
        x3, o3 = ins[0].reshape(a, c, b), outs[0].reshape(a, c, b)
        if parallel:
            par(x3, s, h, o3, chunks)
        else:
            block(x3, s, h, o3, 0, a)

    return Prepared(run)


def _ln_param(p: np.ndarray, d: int, what: str) -> np.ndarray:
    if p.size != d:
        raise ShapeError(f"LayerNorm {what} has {p.size} elements, expected {d}")
    return np.ascontiguousarray(p.reshape(d), dtype=np.float32)


@bind("LayerNorm")
def _layernorm(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    axis = attrs["axis"] % len(shape)
    m, d = math.prod(shape[:axis]), math.prod(shape[axis:])
    eps = float(attrs["epsilon"])
    for i, what in ((1, "gamma"), (2, "beta")):
        if i < len(in_types) and math.prod(_dims(in_types[i])) != d:
            raise ShapeError(
                f"LayerNorm {what} shape {in_types[i].shape} does not match the normalized "
                f"shape {shape[axis:]}"
            )
    has_beta = len(in_types) == 3
    empty = np.zeros(0, np.float32)
    gamma_c = None if consts[1] is None else _ln_param(consts[1], d, "gamma")
    beta_c = empty if not has_beta else (
        None if consts[2] is None else _ln_param(consts[2], d, "beta"))
    dtype = np.dtype(in_types[0].dtype)
    parallel = use_parallel(m * d >= K.PAR_MIN and m >= 2)
    par, block = K.layer_norm, K.layer_norm_block
    chunks = plan_threads()

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
        g = gamma_c if gamma_c is not None else _ln_param(ins[1], d, "gamma")
        bt = beta_c if beta_c is not None else _ln_param(ins[2], d, "beta")
        x2 = ins[0].reshape(m, d)
        o2 = outs[0].reshape(m, d)
        if dtype != _F32:  # rare: compute in float32 through the same kernel
            x32, o32 = x2.astype(np.float32), np.empty((m, d), np.float32)
            block(x32, g, bt, eps, o32, 0, m)
            np.copyto(o2, o32, casting="unsafe")
        elif parallel:
            par(x2, g, bt, eps, o2, chunks)
        else:
            block(x2, g, bt, eps, o2, 0, m)

    return Prepared(run)


@bind("LRN")
def _lrn(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    axis = attrs["axis"] % len(shape)
    a, c, b = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    size, alpha = int(attrs["size"]), float(attrs["alpha"])
    beta, bias = float(attrs["beta"]), float(attrs["bias"])
    parallel = use_parallel(a * c * b * size >= K.PAR_MIN and a >= 2)
    par, block = K.lrn, K.lrn_block
    chunks = plan_threads()
    f32 = np.dtype(in_types[0].dtype) == _F32

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], _s: Any) -> None:
        x3 = ins[0].reshape(a, c, b)
        o3 = outs[0].reshape(a, c, b)
        if not f32:  # rare: compute in float32 through the same kernel
            x3, tmp = x3.astype(np.float32), np.empty((a, c, b), np.float32)
            block(x3, tmp, size, alpha, beta, bias, 0, a)
            np.copyto(o3, tmp, casting="unsafe")
        elif parallel:
            par(x3, o3, size, alpha, beta, bias, chunks)
        else:
            block(x3, o3, size, alpha, beta, bias, 0, a)

    return Prepared(run)
