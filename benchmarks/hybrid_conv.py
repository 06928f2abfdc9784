"""Hybrid int8 Conv2D (Conv2DW8 compute="int8") vs float32 Conv2D and Conv2DW8 compute=float32.

    .venv/bin/python -m benchmarks.hybrid_conv [--reps 7] [--budget 2]

Each op is a one-node graph compiled by the engine (as a loaded model runs it: plan, arena,
constant weights packed once), on one numba thread (the engine runs one intra-op thread per
request here). Per shape, medians of interleaved runs in one process; ratios are the other
op's time over the hybrid's (> 1: hybrid faster). ``err`` is the hybrid output's max |diff|
to the float32 conv of the dequantized weight, relative to max |that|.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

# one thread from the start, so the float conv's binding also picks its serial kernel (it
# sizes its thread split from NUMBA_NUM_THREADS at plan time)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402

import engine  # noqa: E402
from engine import Graph, Node, TensorType  # noqa: E402

# (name, batch, (H, W, C), (KH, KW, O), pads)
SHAPES: list[tuple[str, int, tuple[int, int, int], tuple[int, int, int],
                   tuple[int, int, int, int]]] = [
    ("cnn conv1 32x32x3->32", 32, (32, 32, 3), (3, 3, 32), (0, 0, 0, 0)),
    ("cnn conv2 15x15x32->64", 32, (15, 15, 32), (3, 3, 64), (0, 0, 0, 0)),
    ("cnn conv3 6x6x64->64", 32, (6, 6, 64), (3, 3, 64), (0, 0, 0, 0)),
    ("resnet 56x56x64->64", 8, (56, 56, 64), (3, 3, 64), (1, 1, 1, 1)),
    ("resnet 28x28x128->128", 8, (28, 28, 128), (3, 3, 128), (1, 1, 1, 1)),
]


def _model(op: str, x_shape: tuple[int, ...], consts: dict[str, np.ndarray],
           attrs: dict[str, Any]) -> engine.Model:
    node = Node.make(op, ["x", *consts], ["y"], {**attrs, "activation": "relu"})
    graph = Graph.make([("x", TensorType("float32", (None, *x_shape[1:])))], ["y"], [node],
                       consts)
    return engine.compile_graph(graph)


def _time(fns: list[Callable[[], Any]], reps: int, budget_s: float) -> list[float]:
    for fn in fns:  # warm-up: compile, build the plan
        fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    rep = 0
    while rep < reps or (time.perf_counter() - start < budget_s and rep < 100):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
        rep += 1
        if time.perf_counter() - start > 3 * budget_s:
            break
    return [statistics.median(t) for t in times]


def bench(batch: int, hwc: tuple[int, int, int], kko: tuple[int, int, int],
          pads: tuple[int, int, int, int], reps: int, budget_s: float) -> dict[str, float]:
    (h, w, c), (kh, kw, o) = hwc, kko
    rng = np.random.default_rng([batch, h, c, o])
    x = rng.normal(size=(batch, h, w, c)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(kh, kw, c, o)).astype(np.int8)
    scale = (rng.random(o) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.normal(size=o).astype(np.float32)
    wf = wq.astype(np.float32) * scale
    geo = {"pads": pads}
    models = [
        _model("Conv2D", x.shape, {"w": wf, "b": bias}, geo),
        _model("Conv2DW8", x.shape, {"w": wq, "s": scale, "b": bias},
               {**geo, "compute": "float32"}),
        _model("Conv2DW8", x.shape, {"w": wq, "s": scale, "b": bias},
               {**geo, "compute": "int8"}),
    ]
    t_f32, t_w8f, t_hyb = _time([lambda m=m: m.predict(x) for m in models], reps, budget_s)
    ref, got = models[0].predict(x), models[2].predict(x)
    macs = batch * ref.shape[1] * ref.shape[2] * kh * kw * c * o
    return {"f32_ms": t_f32 * 1e3, "w8f_ms": t_w8f * 1e3, "hyb_ms": t_hyb * 1e3,
            "vs_f32": t_f32 / t_hyb, "vs_w8f": t_w8f / t_hyb,
            "hyb_gmacs": macs / t_hyb / 1e9,
            "err": float(np.abs(got - ref).max() / np.abs(ref).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timing per shape")
    args = ap.parse_args()
    numba.set_num_threads(1)
    print(f"{'shape':28s} {'batch':>5s} {'f32 ms':>8s} {'w8/f32 ms':>9s} {'hybrid ms':>9s} "
          f"{'x f32':>6s} {'x w8f':>6s} {'GMAC/s':>7s} {'err':>8s}")
    for name, batch, hwc, kko, pads in SHAPES:
        r = bench(batch, hwc, kko, pads, args.reps, args.budget)
        print(f"{name:28s} {batch:5d} {r['f32_ms']:8.2f} {r['w8f_ms']:9.2f} {r['hyb_ms']:9.2f} "
              f"{r['vs_f32']:6.2f} {r['vs_w8f']:6.2f} {r['hyb_gmacs']:7.1f} {r['err']:8.1e}")


if __name__ == "__main__":
    main()
