"""Kernel bindings: recurrent family (LSTM, Keras layout and gate order).

No BLAS here: the LSTM runs entirely in numba kernels (see engine/kernels/recurrent.py), so it
never hands the cores from numba's thread pool to a BLAS pool and back in the middle of an op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np

from engine.executor.binding import Prepared, bind
from engine.ir.graph import TensorType
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


@bind("LSTM")
def _lstm(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    n, steps, feat = (int(d or 0) for d in in_types[0].shape)  # concrete by now
    units = int(in_types[2].shape[0] or 0)
    g4 = 4 * units
    ret_seq = bool(attrs["return_sequences"])
    has_bias = len(in_types) == 4
    zeros = np.zeros(g4, _F32)
    b_c = zeros if not has_bias else (None if consts[3] is None else _f32(consts[3]))
    out3shape = (n, steps if ret_seq else 1, units)
    chunks = numba.get_num_threads()

    def bias(ins: Sequence[np.ndarray]) -> np.ndarray:
        return b_c if b_c is not None else _f32(ins[3])

    if n >= FUSED_MIN_BATCH:
        wrt_c = None
        if consts[1] is not None and consts[2] is not None:
            wrt_c = _t(np.concatenate([consts[1], consts[2]], axis=0))
        fused = K.lstm_fused

        def run_fused(ins: Sequence[np.ndarray], outs: Sequence[np.ndarray], sc: Any) -> None:
            hx, c, z = sc
            wrt = wrt_c if wrt_c is not None else _t(np.concatenate([ins[1], ins[2]], axis=0))
            fused(_f32(ins[0]), wrt, bias(ins), hx, c, z, outs[0].reshape(out3shape), ret_seq,
                  chunks)

        return Prepared(run_fused, (((n, feat + units), "float32"), ((n, units), "float32"),
                                    ((n, g4), "float32")))

    wt_c = None if consts[1] is None else _t(consts[1])
    rt_c = None if consts[2] is None else _t(consts[2])
    x2shape, xw3shape = (n * steps, feat), (n, steps, g4)
    parallel = n * steps * feat * g4 >= _PROJECT_PAR_MIN
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
        recur(xw.reshape(xw3shape), rt, h, c, z, outs[0].reshape(out3shape), ret_seq)

    scratch = (((n * steps, g4), "float32"), ((n, units), "float32"), ((n, units), "float32"),
               ((n, g4), "float32"))
    return Prepared(run, scratch)
