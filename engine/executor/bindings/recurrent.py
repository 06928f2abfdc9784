"""Kernel bindings: recurrent family (LSTM, LSTMSeq, GRUSeq; Keras layouts and gate orders).

No BLAS here: the LSTM runs entirely in numba kernels (see engine/kernels/recurrent.py), so it
never hands the cores from numba's thread pool to a BLAS pool and back in the middle of an op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import Prepared, bind
from engine.executor.threads import plan_threads, use_parallel
from engine.ir.graph import TensorType
from engine.kernels import gru as G
from engine.kernels import recurrent as K

__all__ = ["FUSED_MIN_BATCH"]

_F32 = np.float32
# From this batch size on, blocks of 4 sequences run in parallel, each with one fused
# [x_t, h] @ [kernel; recurrent] product per step; smaller batches project every timestep at
# once (parallel) and then run the recurrence serially.
FUSED_MIN_BATCH = 8
_PROJECT_PAR_MIN = 1 << 20  # multiply-adds below which the projection runs serially


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F32)


def _t(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=_F32).T)


_NO_STATE = np.zeros((1, 1), _F32)  # placeholder h0/c0 when the state starts at zero


@bind("LSTM")
def _lstm(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    return _lstm_prepare(in_types, consts, bool(attrs["return_sequences"]), False, False)


@bind("LSTMSeq")
def _lstm_seq(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    return _lstm_prepare(in_types, consts, True, bool(attrs["reverse"]), True)


def _lstm_prepare(
    in_types: Sequence[TensorType], consts: Sequence[np.ndarray | None], ret_seq: bool,
    reverse: bool, seq_op: bool,
) -> Prepared:
    """LSTM: inputs x, kernel, recurrent[, bias]; LSTMSeq (``seq_op``): x, kernel,
    recurrent, bias[, h0[, c0]] and two more outputs, the final h and c."""
    n, steps, feat = (int(d or 0) for d in in_types[0].shape)  # concrete by now
    units = int(in_types[2].shape[0] or 0)
    g4 = 4 * units
    has_bias = len(in_types) >= 4
    n_state = len(in_types) - 4 if seq_op else 0  # 0, 1 (h0) or 2 (h0, c0)
    zeros = np.zeros(g4, _F32)
    b_c = zeros if not has_bias else (None if consts[3] is None else _f32(consts[3]))
    out3shape = (n, steps if ret_seq else 1, units)
    chunks = plan_threads()

    def bias(ins: Sequence[np.ndarray]) -> np.ndarray:
        return b_c if b_c is not None else _f32(ins[3])

    def state(ins: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if n_state == 0:
            return _NO_STATE, _NO_STATE
        h0 = _f32(ins[4]).reshape(n, units)
        c0 = _f32(ins[5]).reshape(n, units) if n_state == 2 else np.zeros((n, units), _F32)
        return h0, c0

    def finish(outs: Sequence[np.ndarray], h: np.ndarray, c: np.ndarray) -> None:
        if seq_op:
            outs[1][...] = h
            outs[2][...] = c

    if n >= FUSED_MIN_BATCH:
        wrt_c = None
        if consts[1] is not None and consts[2] is not None:
            wrt_c = _t(np.concatenate([consts[1], consts[2]], axis=0))
        fused = K.lstm_fused

        def run_fused(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], sc: Any) -> None:
            hx, c, z = sc
            wrt = wrt_c if wrt_c is not None else _t(np.concatenate([ins[1], ins[2]], axis=0))
            h0, c0 = state(ins)
            fused(_f32(ins[0]), wrt, bias(ins), hx, c, z, outs[0].reshape(out3shape), ret_seq,
                  chunks, h0, c0, n_state > 0, reverse)
            finish(outs, hx[:, feat:], c)

        return Prepared(run_fused, (((n, feat + units), "float32"), ((n, units), "float32"),
                                    ((n, g4), "float32")))

    wt_c = None if consts[1] is None else _t(consts[1])
    rt_c = None if consts[2] is None else _t(consts[2])
    x2shape, xw3shape = (n * steps, feat), (n, steps, g4)
    parallel = use_parallel(n * steps * feat * g4 >= _PROJECT_PAR_MIN)
    project, project_block, recur = K.project, K.project_block, K.lstm_recurrence
    rows = n * steps

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], sc: Any) -> None:
        xw, h, c, z = sc
        wt = wt_c if wt_c is not None else _t(ins[1])
        rt = rt_c if rt_c is not None else _t(ins[2])
        x2 = _f32(ins[0]).reshape(x2shape)
        if parallel:
            project(x2, wt, bias(ins), xw, chunks)
        else:
            project_block(x2, wt, bias(ins), xw, 0, rows)
        h0, c0 = state(ins)
        recur(xw.reshape(xw3shape), rt, h, c, z, outs[0].reshape(out3shape), ret_seq, h0, c0,
              n_state > 0, reverse)
        finish(outs, h, c)

    scratch = (((n * steps, g4), "float32"), ((n, units), "float32"), ((n, units), "float32"),
               ((n, g4), "float32"))
    return Prepared(run, scratch)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *a.shape[1:]), _F32)
    out[:a.shape[0]] = a
    return out


@bind("GRUSeq")
def _gru_seq(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    n, steps, feat = (int(d or 0) for d in in_types[0].shape)
    units = int(in_types[2].shape[0] or 0)
    g3, gp, up = 3 * units, G.padded(3 * units), G.padded(units)
    reset_after, reverse = bool(attrs["reset_after"]), bool(attrs["reverse"])
    has_init = len(in_types) == 5
    chunks = plan_threads()
    parallel = use_parallel(n * steps * feat * g3 >= _PROJECT_PAR_MIN)
    rec_par = n >= FUSED_MIN_BATCH and chunks > 1
    rows = n * steps

    def weights(k: np.ndarray, r: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        b2 = _f32(b).reshape(2, g3)
        return (_pad_rows(_t(k), gp), _pad_rows(b2[0].reshape(-1, 1), gp).reshape(gp),
                _pad_rows(_t(r), gp), _pad_rows(_t(np.asarray(r)[:, 2 * units:]), up),
                np.ascontiguousarray(b2[1]))

    k_c, r_c, b_c = consts[1:4]
    packed = (weights(k_c, r_c, b_c)
              if k_c is not None and r_c is not None and b_c is not None else None)

    def run(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], sc: Any) -> None:
        xw, h, zh, rh, zn = sc
        wt, bin_, rt, rnt, brec = packed if packed is not None else weights(*ins[1:4])
        x2 = _f32(ins[0]).reshape(rows, feat)
        if parallel:
            K.project(x2, wt, bin_, xw, chunks)
        else:
            K.project_block(x2, wt, bin_, xw, 0, rows)
        h0 = _f32(ins[4]).reshape(n, units) if has_init else _NO_STATE
        xw3, y = xw.reshape(n, steps, gp), outs[0].reshape(n, steps, units)
        if rec_par:
            G.gru_recurrence(xw3, rt, rnt, brec, h, zh, rh, zn, y, h0, has_init, reset_after,
                             reverse, chunks)
        else:
            G.gru_recurrence_block(xw3, rt, rnt, brec, h, zh, rh, zn, y, h0, has_init,
                                   reset_after, reverse, 0, n)
        outs[1][...] = h

    scratch = (((rows, gp), "float32"), ((n, units), "float32"), ((n, gp), "float32"),
               ((n, units), "float32"), ((n, up), "float32"))
    return Prepared(run, scratch)
