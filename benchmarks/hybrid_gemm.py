"""Hybrid int8 GEMM (engine.kernels.quant_hybrid) vs float32 paths, one thread each.

    .venv/bin/python -m benchmarks.hybrid_gemm [--reps 5] [--shapes 512x768x768,...]

Per shape (M x K x N), medians of interleaved runs in one process of: float32 ``x @ w``
(numpy / OpenBLAS limited to 1 thread with threadpoolctl), DenseW8's tiled int8-reading
float32 kernel (engine.kernels.quant_dense, serial entry, as ``_dense_w8_tiled`` calls it),
the hybrid kernel including the per-row activation quantization (its quantization alone
also shown; VNNI where the CPU has it, else the portable kernel) and the portable kernel's GEMM
alone (``port``, on already quantized rows; what CPUs without AVX-512 VNNI run). Ratios are
float32 time / other time (> 1: faster than float32). ``err`` is the hybrid output's max
|difference| to the float product x @ (wq * scale), relative to max |that|.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from engine.kernels import quant_dense as QD
from engine.kernels import quant_hybrid as QH

SHAPES = [(512, 768, 768), (512, 768, 3072), (512, 3072, 768),
          (4096, 768, 768), (4096, 768, 3072), (4096, 3072, 768),
          (32, 1024, 64), (32, 2304, 64), (1, 768, 3072)]


def _time(fns: list[Callable[[], None]], reps: int, budget_s: float) -> list[float]:
    for fn in fns:  # warm-up (and compile)
        fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    rep = 0
    while rep < reps or (time.perf_counter() - start < budget_s and rep < 200):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
        rep += 1
        if time.perf_counter() - start > 4 * budget_s:
            break
    return [statistics.median(t) for t in times]


def bench(m: int, k: int, n: int, reps: int) -> dict[str, float]:
    rng = np.random.default_rng([m, k, n])
    x = rng.normal(size=(m, k)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    scale = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    wf = wq.astype(np.float32) * scale
    y = np.empty((m, n), np.float32)

    mr, nr = QD.w8_tile_shape(n)
    serial, _ = QD.w8_gemm_kernels(mr, nr)
    tail = QD.pack_tail(wq, nr)
    packed = QH.pack(wq, scale)
    xq, rs = QH.hybrid_scratch(m, packed)

    def f32() -> None:
        np.matmul(x, wf, out=y)

    def w8() -> None:
        serial(x, wq, tail, scale, y, 1)

    def hybrid() -> None:
        QH.hybrid_gemm(x, packed, y, xq, rs)

    def quant() -> None:
        QH.quantize_rows(x, xq, rs)

    def portable() -> None:
        QH.portable_gemm_q(xq, rs, m, packed, y)

    budget = 0.5 if m * k * n < 1e9 else 1.5
    t_f, t_w, t_h, t_q, t_p = _time([f32, w8, hybrid, quant, portable], reps, budget)
    hybrid()
    want = x.astype(np.float64) @ wf.astype(np.float64)
    err = float(np.abs(y - want).max() / np.abs(want).max())
    return {"f32": t_f, "w8": t_w, "hyb": t_h, "quant": t_q, "port": t_p, "err": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shapes", default="", help="comma list of MxKxN (default: all)")
    args = ap.parse_args()
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
              if args.shapes else SHAPES)
    numba.set_num_threads(1)
    print(f"hybrid kernel: {'VNNI' if QH.HYBRID_AVAILABLE else 'portable (no AVX-512 VNNI)'}")
    print(f"{'M x K x N':>18} {'f32 ms':>9} {'w8 ms':>9} {'hyb ms':>9} {'quant ms':>9} "
          f"{'port ms':>9} {'f32/w8':>7} {'f32/hyb':>8} {'hyb GOPS':>9} {'port GOPS':>9} "
          f"{'err':>8}")
    with threadpool_limits(limits=1):
        for m, k, n in shapes:
            r = bench(m, k, n, args.reps)
            ops = 2 * m * k * n / 1e9
            print(f"{f'{m}x{k}x{n}':>18} {r['f32'] * 1e3:9.3f} {r['w8'] * 1e3:9.3f} "
                  f"{r['hyb'] * 1e3:9.3f} {r['quant'] * 1e3:9.3f} {r['port'] * 1e3:9.3f} "
                  f"{r['f32'] / r['w8']:7.2f} {r['f32'] / r['hyb']:8.2f} "
                  f"{ops / r['hyb']:9.1f} {ops / r['port']:9.1f} {r['err']:8.1e}", flush=True)


if __name__ == "__main__":
    main()
