"""numbaserve's engine against onnxruntime on five models, same weights, 2 threads each.

    .venv/bin/python -m benchmarks.engine_vs_onnxruntime [--quick] [--models seed,mlp,...]
        [--profile N] [--no-startup] [--imported]

For every (model, batch) row: checks that both agree (max abs diff; fails if it exceeds 1e-3
of the output's magnitude), times both interleaved (median), and prints a markdown table with
the ratio numbaserve / onnxruntime, its geometric mean and the worst row. Then the first-call
compile time with a cold numba cache and the load time with a warm one (fresh subprocesses),
and with ``--profile N`` a per-op breakdown of the N worst rows, ours and onnxruntime's.

``--imported`` adds the importer rows (benchmarks/imported_models.py, needs torch and
transformers): models exported by torch.onnx.export, the same .onnx file read by onnxruntime and
by ``engine.load``; they can also be named in --models / --rows (torch_resnet18, torch_bert).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `engine` importable
    sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import onnxruntime as ort  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import engine  # noqa: E402
from benchmarks.imported_models import IMPORTED_BENCHMARKS  # noqa: E402
from benchmarks.models import BENCHMARKS  # noqa: E402
from benchmarks.twin import Twin, TwinModel  # noqa: E402

__all__ = ["main", "ort_session", "Row"]

THREADS = 2
RTOL = 1e-3
# onnxruntime's pool threads spin after each run by default. Interleaved with our runs on 2
# cores, the spinning thread steals a core from OpenBLAS and numba (measured: mlp b256 went
# from 2.1 ms to 54 ms), and it did not make onnxruntime itself faster here; --ort-spinning
# turns it back on.
ORT_SPINNING = False


@dataclasses.dataclass
class Row:
    model: str
    batch: int
    ort_ms: float
    ours_ms: float
    max_abs: float
    rel: float
    runs: int
    error: str = ""
    ort_min_ms: float = math.nan
    ours_min_ms: float = math.nan

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.ort_ms


def ort_session(model: TwinModel | Path, profile: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if ORT_SPINNING else "0")
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    src = str(model) if isinstance(model, Path) else model.onnx_model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def machine() -> str:
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    env = "; ".join(f"{k}={os.environ.get(k) or 'unset'}" for k in
                    ("OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY",
                     "GOMP_SPINCOUNT"))
    return (f"CPU: {cpu} ({isa}), {os.cpu_count()} logical CPUs; {env}; "
            f"numpy {np.__version__}, numba {numba.__version__} "
            f"({numba.threading_layer()} layer, {numba.get_num_threads()} threads), "
            f"onnxruntime {ort.__version__} (idle threads spin: {ORT_SPINNING}); "
            f"{THREADS} threads each")


# ------------------------------------------------------------------ timing
def _timed_pair(ours: Callable[[], Any], theirs: Callable[[], Any], target_s: float,
                 min_runs: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of every run of each, interleaved (order alternating) so drift hits both."""
    for _ in range(warmup):
        ours()
        theirs()
    t0 = time.perf_counter()
    ours()
    theirs()
    pair = max(time.perf_counter() - t0, 1e-6)
    runs = max(min_runs, math.ceil(2 * target_s / pair))
    a = np.empty(runs)
    b = np.empty(runs)
    clock = time.perf_counter
    gc.collect()
    gc.disable()  # both sides alike: no collector pauses inside a timed call
    try:
        for i in range(runs):
            if i & 1:
                t = clock()
                theirs()
                b[i] = clock() - t
                t = clock()
                ours()
                a[i] = clock() - t
            else:
                t = clock()
                ours()
                a[i] = clock() - t
                t = clock()
                theirs()
                b[i] = clock() - t
    finally:
        gc.enable()
    return a, b


def bench_row(name: str, tm: TwinModel, model: engine.Model, sess: ort.InferenceSession,
              batch: int, quick: bool) -> Row:
    x = tm.example(batch)
    ox = tm.to_onnx(x)
    feeds = {tm.input_name: x}
    ofeeds = {tm.onnx_input: ox}
    outs = [tm.onnx_output]
    try:
        ours = model.run(feeds)[tm.output_name]
    except Exception as exc:  # a kernel still missing: report the row, keep going
        return Row(name, batch, math.nan, math.nan, math.nan, math.nan, 0,
                   f"{type(exc).__name__}: {exc}")
    theirs = tm.from_onnx(sess.run(outs, ofeeds)[0])
    return _measure(name, batch, ours, theirs, lambda: model.run(feeds),
                    lambda: sess.run(outs, ofeeds), quick)


def _measure(name: str, batch: int, ours: np.ndarray, theirs: np.ndarray,
             run_ours: Callable[[], Any], run_theirs: Callable[[], Any], quick: bool) -> Row:
    if ours.shape != theirs.shape:
        return Row(name, batch, math.nan, math.nan, math.nan, math.nan, 0,
                   f"MISMATCH: output shapes {ours.shape} (ours) vs {theirs.shape}")
    diff = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
    rel = diff / max(float(np.max(np.abs(theirs))), 1e-30)
    err = "" if rel <= RTOL else f"MISMATCH: max abs diff {diff:.3g} ({rel:.3g} relative)"
    a, b = _timed_pair(
        run_ours, run_theirs,
        target_s=0.25 if quick else 1.0, min_runs=5 if quick else 20, warmup=2 if quick else 5)
    return Row(name, batch, float(np.median(b)) * 1e3, float(np.median(a)) * 1e3, diff, rel,
               len(a), err, float(b.min()) * 1e3, float(a.min()) * 1e3)


def imported_rows(name: str, batches: Sequence[int], quick: bool) -> list[Row]:
    """An importer row: a torch-exported model, the same .onnx file loaded by onnxruntime and
    by engine.load; compared on its first output, timed on all of them."""
    from benchmarks.imported_models import EXPORTS, IMPORTED_BENCHMARKS, export

    key, seq, _ = IMPORTED_BENCHMARKS[name]
    spec = EXPORTS[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = export(spec, Path(tmp))
        sess = ort_session(path)
        try:
            model = engine.load(path)
        except Exception as exc:
            return [Row(name, b, math.nan, math.nan, math.nan, math.nan, 0,
                        f"{type(exc).__name__}: {exc}") for b in batches]
    rows = []
    for b in batches:
        feeds = spec.feeds(b, seq, 1)
        out = spec.outputs[0]
        try:
            ours = model.run(feeds)[out]
        except Exception as exc:
            rows.append(Row(name, b, math.nan, math.nan, math.nan, math.nan, 0,
                            f"{type(exc).__name__}: {exc}"))
            continue
        theirs = sess.run([out], feeds)[0]
        rows.append(_measure(name, b, ours, theirs, lambda f=feeds: model.run(f),
                             lambda f=feeds: sess.run(None, f), quick))
    return rows


def _fmt_ms(v: float) -> str:
    if math.isnan(v):
        return "—"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def print_table(rows: Sequence[Row]) -> None:
    print("| model | batch | onnxruntime ms | numbaserve ms | ratio (numbaserve/onnxruntime) "
          "| min ms (ort / ours) | ratio of mins | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ok = not math.isnan(r.ours_ms)
        ratio = f"{r.ratio:.2f}" if ok else "—"
        mins = f"{_fmt_ms(r.ort_min_ms)} / {_fmt_ms(r.ours_min_ms)}" if ok else "—"
        min_ratio = f"{r.ours_min_ms / r.ort_min_ms:.2f}" if ok else "—"
        note = f" ({r.error.splitlines()[0][:90]})" if r.error else ""
        print(f"| {r.model} | {r.batch} | {_fmt_ms(r.ort_ms)} | {_fmt_ms(r.ours_ms)} | "
              f"{ratio} | {mins} | {min_ratio} | {r.max_abs:.2g}{note} |")
    ok_rows = [r for r in rows if not math.isnan(r.ours_ms)]
    if ok_rows:
        geo = math.exp(sum(math.log(r.ratio) for r in ok_rows) / len(ok_rows))
        geo_min = math.exp(sum(math.log(r.ours_min_ms / r.ort_min_ms) for r in ok_rows)
                           / len(ok_rows))
        worst = max(ok_rows, key=lambda r: r.ratio)
        print(f"\ngeometric-mean ratio over {len(ok_rows)} rows: {geo:.2f} (of medians), "
              f"{geo_min:.2f} (of minimums); worst: {worst.model} b{worst.batch} at "
              f"{worst.ratio:.2f}")


# ------------------------------------------------------------------ startup probes
# Each probe runs in a fresh interpreter (python -c) so imports and numba's cache are cold
# as they would be in a new server process; it prints one JSON line.
_PROBE_HEAD = """
import json, sys, time
t0 = time.perf_counter()
import numba, numpy as np
import engine
numba.set_num_threads(2)
out = {"import_s": time.perf_counter() - t0}
"""
PROBES = {
    "cold": _PROBE_HEAD + """
from benchmarks.models import seed_cnn
tm = seed_cnn()
x = tm.example(1)
t = time.perf_counter()
model = engine.compile_graph(tm.graph)
out["compile_graph_s"] = time.perf_counter() - t
t1 = time.perf_counter()
model.run({tm.input_name: x})
out["first_run_s"] = time.perf_counter() - t1
out["total_s"] = time.perf_counter() - t
print(json.dumps(out))
""",
    "warm_all": _PROBE_HEAD + """
t = time.perf_counter()
out["examples"] = engine.warm()
out["total_s"] = time.perf_counter() - t
print(json.dumps(out))
""",
    "load": _PROBE_HEAD + """
x = np.random.default_rng(1).standard_normal((1, 32, 32, 3)).astype(np.float32)
t = time.perf_counter()
model = engine.load(sys.argv[1])
out["load_s"] = time.perf_counter() - t
t1 = time.perf_counter()
model.predict(x)
out["first_run_s"] = time.perf_counter() - t1
out["total_s"] = time.perf_counter() - t
print(json.dumps(out))
""",
    "ort": """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import onnxruntime as ort
out = {"import_s": time.perf_counter() - t0}
x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
t = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
sess.run(None, {"input": x})
out["total_s"] = time.perf_counter() - t
print(json.dumps(out))
""",
}


def _probe(kind: str, cache: str, arg: str = "") -> dict[str, Any]:
    env = dict(os.environ, NUMBASERVE_CACHE_DIR=cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-c", PROBES[kind]] + ([arg] if arg else [])
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=1800)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 30 min"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def _secs(v: float) -> str:
    return f"{v:.2f} s" if v >= 1 else f"{v * 1e3:.0f} ms"


def startup(seed: TwinModel) -> None:
    print("\n## Startup (fresh subprocesses, seed CNN, batch 1)\n")
    with tempfile.TemporaryDirectory() as tmp:
        cold_cache = os.path.join(tmp, "cache-cold")
        cold = _probe("cold", cold_cache)
        model_dir = os.path.join(tmp, "models", "seed_cnn", "1")
        engine.save(model_dir, seed.graph)
        load = _probe("load", cold_cache, model_dir)  # the cache the cold probe filled
        warm_all = _probe("warm_all", os.path.join(tmp, "cache-warm-all"))
        onnx_path = os.path.join(tmp, "seed.onnx")
        Path(onnx_path).write_bytes(seed.onnx_model.SerializeToString())
        ortp = _probe("ort", cold_cache, onnx_path)

    def show(label: str, d: dict[str, Any], keys: Sequence[str], imp: str = "engine") -> None:
        if "error" in d:
            print(f"- {label}: failed: {d['error']}")
            return
        parts = ", ".join(f"{k.removesuffix('_s')} {_secs(d[k])}" for k in keys if k in d)
        print(f"- {label}: {parts} (before it: import {imp} {_secs(d['import_s'])})")

    show("cold numba cache: compile_graph + first run", cold,
         ["total_s", "compile_graph_s", "first_run_s"])
    show("warm cache: engine.load of the saved seed CNN + first run", load,
         ["total_s", "load_s", "first_run_s"])
    show(f"cold numba cache: engine.warm() ({warm_all.get('examples', '?')} examples)",
         warm_all, ["total_s"])
    show("onnxruntime: InferenceSession + first run", ortp, ["total_s"], "onnxruntime")


# ------------------------------------------------------------------ profiling
def _node_label(node: engine.Node, types: Any) -> str:
    act = node.attrs.get("activation")
    extra = f"[{act}]" if act and act != "linear" else ""
    shape = "x".join(str(d) for d in types[node.outputs[0]].shape)
    return f"{node.op}{extra} -> {shape}"


def profile_ours(tm: TwinModel, model: engine.Model, batch: int, reps: int) -> None:
    """Time every Prepared.run of a fresh plan (the model's own plans are left untouched)."""
    from engine.executor import build_plan

    x = tm.example(batch)
    feeds = {tm.input_name: x}
    plan = build_plan(model.graph, {tm.input_name: x.shape})
    steps = list(plan._steps)
    nodes = plan.graph.nodes
    times = np.zeros((reps, len(steps)))
    row = [0]

    def timed(i: int, run: Callable[..., None]) -> Callable[..., None]:
        def wrapper(ins: Any, outs: Any, scratch: Any) -> None:
            t = time.perf_counter()
            run(ins, outs, scratch)
            times[row[0], i] = time.perf_counter() - t
        return wrapper

    plan._steps = [dataclasses.replace(
        s, prepared=dataclasses.replace(s.prepared, run=timed(i, s.prepared.run)))
        for i, s in enumerate(steps)]
    for _ in range(3):
        plan.run(feeds)
    totals = np.zeros(reps)
    bare = np.zeros(reps)
    for r in range(reps):
        row[0] = r
        t = time.perf_counter()
        plan.run(feeds)
        totals[r] = time.perf_counter() - t
    plan._steps = steps
    for r in range(reps):
        t = time.perf_counter()
        model.run(feeds)
        bare[r] = time.perf_counter() - t
    med = np.median(times, axis=0)
    total = float(np.median(totals))
    print(f"\nnumbaserve, {len(steps)} steps, plan.run median {total * 1e3:.3f} ms with timers, "
          f"model.run {np.median(bare) * 1e3:.3f} ms without; per step (median of {reps}):\n")
    print("| # | node | ms | % |")
    print("|---:|---|---:|---:|")
    by_op: dict[str, float] = defaultdict(float)
    small = 0.0
    for i in np.argsort(-med):
        node = nodes[i]
        by_op[node.op] += med[i]
        if med[i] >= 0.01 * total:
            print(f"| {i} | {_node_label(node, plan.types)} | {med[i] * 1e3:.3f} | "
                  f"{100 * med[i] / total:.1f} |")
        else:
            small += med[i]
    rest = total - med.sum()
    print(f"| | {sum(med < 0.01 * total)} steps under 1% each | {small * 1e3:.3f} | "
          f"{100 * small / total:.1f} |")
    print(f"| | executor overhead (plan.run minus the steps) | {rest * 1e3:.3f} | "
          f"{100 * rest / total:.1f} |")
    print("\nby op: " + ", ".join(f"{op} {v * 1e3:.3f} ms" for op, v in
                                  sorted(by_op.items(), key=lambda kv: -kv[1])))


def profile_ort(tm: TwinModel, batch: int, reps: int) -> None:
    sess = ort_session(tm, profile=True)
    ox = tm.to_onnx(tm.example(batch))
    for _ in range(3):
        sess.run(None, {tm.onnx_input: ox})
    t = time.perf_counter()
    for _ in range(reps):
        sess.run(None, {tm.onnx_input: ox})
    wall = (time.perf_counter() - t) / reps
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    by_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            key = (ev["name"][: -len("_kernel_time")], ev.get("args", {}).get("op_name", "?"))
            by_node[key].append(ev["dur"] / 1e3)
    runs = reps + 3
    per_node = {k: sum(v) / runs for k, v in by_node.items()}
    by_op: dict[str, float] = defaultdict(float)
    for (_, op), ms in per_node.items():
        by_op[op] += ms
    total = sum(per_node.values())
    print(f"\nonnxruntime (profiling on, {wall * 1e3:.3f} ms per run), kernel time by op "
          f"(mean ms per run, sum {total:.3f} ms):\n")
    print("; ".join(f"{op} {ms:.3f} ({100 * ms / total:.0f}%)" for op, ms in
                    sorted(by_op.items(), key=lambda kv: -kv[1])))
    print("\n| onnxruntime node | op | ms | % |\n|---|---|---:|---:|")
    for (node, op), ms in sorted(per_node.items(), key=lambda kv: -kv[1]):
        if ms >= 0.02 * total:
            print(f"| {node} | {op} | {ms:.3f} | {100 * ms / total:.1f} |")
    Path(path).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(path).parent.rmdir()


# ------------------------------------------------------------------ single layers
# (name, input h, w, c, filters, kernel, stride, pad): every distinct conv of the seed CNN
# and the residual CNN, to see which shapes the conv kernel loses on.
CONV_LAYERS = [
    ("seed conv1", 32, 32, 3, 32, 3, 1, 0),
    ("seed conv2", 15, 15, 32, 64, 3, 1, 0),
    ("seed conv3", 6, 6, 64, 64, 3, 1, 0),
    ("resnet stem", 64, 64, 3, 32, 3, 1, 1),
    ("resnet 32->32", 64, 64, 32, 32, 3, 1, 1),
    ("resnet 32->64 s2", 64, 64, 32, 64, 3, 2, 1),
    ("resnet 1x1 32->64 s2", 64, 64, 32, 64, 1, 2, 0),
    ("resnet 64->64", 32, 32, 64, 64, 3, 1, 1),
    ("resnet 64->128 s2", 32, 32, 64, 128, 3, 2, 1),
    ("resnet 128->128", 16, 16, 128, 128, 3, 1, 1),
]


def conv_layers(batches: Sequence[int], quick: bool) -> None:
    """One Conv2D (+relu) at a time, ours against onnxruntime's Conv, interleaved."""
    print("\n## Single conv layers (relu fused on both sides)\n")
    print("| layer | input | batch | onnxruntime ms | numbaserve ms | ratio | GFLOP/s ours |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, h, w, c, f, k, st, pad in CONV_LAYERS:
        t = Twin(name)
        y = t.conv2d(t.image(h, w, c), f, k, strides=st, pads=pad, activation="relu")
        tm = t.build(y)
        model = engine.compile_graph(tm.graph)
        sess = ort_session(tm)
        for b in batches:
            row = bench_row(name, tm, model, sess, b, quick)
            oh, ow = (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
            flops = 2.0 * b * oh * ow * f * k * k * c
            print(f"| {name} | {h}x{w}x{c} k{k} s{st} | {b} | {_fmt_ms(row.ort_ms)} | "
                  f"{_fmt_ms(row.ours_ms)} | {row.ratio:.2f} | "
                  f"{flops / (row.ours_ms * 1e-3) / 1e9:.0f} |", flush=True)


# ------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--models", default=",".join(BENCHMARKS),
                    help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    ap.add_argument("--batches", default="", help="comma-separated batch sizes (default: each "
                    "model's own)")
    ap.add_argument("--rows", default="", help="only these rows, e.g. bert:1,mlp:256 "
                    "(overrides --models and --batches)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="per-op breakdown of the N worst rows")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="let onnxruntime's idle threads spin (its default; off here)")
    ap.add_argument("--conv-layers", default="", metavar="BATCHES",
                    help="also time each distinct conv layer alone at these batch sizes, "
                    "e.g. 1,16")
    ap.add_argument("--no-startup", action="store_true", help="skip the startup subprocesses")
    ap.add_argument("--imported", action="store_true", help="add the importer rows: "
                    f"{', '.join(IMPORTED_BENCHMARKS)} (torch-exported .onnx files)")
    args = ap.parse_args(argv)
    global ORT_SPINNING
    ORT_SPINNING = args.ort_spinning
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.imported:
        names += [n for n in IMPORTED_BENCHMARKS if n not in names]
    wanted: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (r.strip() for r in args.rows.split(","))):
        model_name, _, batch = item.partition(":")
        wanted[model_name] = (*wanted.get(model_name, ()), int(batch))
    if wanted:
        names = list(wanted)
    unknown = sorted(set(names) - set(BENCHMARKS) - set(IMPORTED_BENCHMARKS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from "
                 f"{sorted(BENCHMARKS) + sorted(IMPORTED_BENCHMARKS)}")
    numba.set_num_threads(THREADS)
    rows: list[Row] = []
    built: dict[str, tuple[TwinModel, engine.Model]] = {}
    load0 = os.getloadavg()[0]
    with threadpool_limits(limits=THREADS, user_api="blas"):
        print(machine())
        print(f"command: python -m benchmarks.engine_vs_onnxruntime {' '.join(sys.argv[1:])}\n")
        for name in names:
            if name in IMPORTED_BENCHMARKS:
                batches = IMPORTED_BENCHMARKS[name][2]
                if args.batches:
                    batches = tuple(int(b) for b in args.batches.split(","))
                for row in imported_rows(name, wanted.get(name, batches), args.quick):
                    rows.append(row)
                    print(f"  {name} b{row.batch}: onnxruntime {_fmt_ms(row.ort_ms)} ms, "
                          f"numbaserve {_fmt_ms(row.ours_ms)} ms {row.error}",
                          file=sys.stderr, flush=True)
                continue
            builder, batches = BENCHMARKS[name]
            if args.batches:
                batches = tuple(int(b) for b in args.batches.split(","))
            batches = wanted.get(name, batches)
            tm = builder()
            try:
                model = engine.compile_graph(tm.graph)
            except Exception as exc:
                for b in batches:
                    rows.append(Row(name, b, math.nan, math.nan, math.nan, math.nan, 0,
                                    f"{type(exc).__name__}: {exc}"))
                continue
            built[name] = (tm, model)
            sess = ort_session(tm)
            for b in batches:
                row = bench_row(name, tm, model, sess, b, args.quick)
                rows.append(row)
                print(f"  {name} b{b}: onnxruntime {_fmt_ms(row.ort_ms)} ms, numbaserve "
                      f"{_fmt_ms(row.ours_ms)} ms ({row.runs} runs each; load average "
                      f"{os.getloadavg()[0]:.1f}) {row.error}",
                      file=sys.stderr, flush=True)
        print()
        print_table(rows)
        print(f"load average (1 min) at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        if not args.no_startup:
            from benchmarks.models import seed_cnn

            startup(built["seed"][0] if "seed" in built else seed_cnn())
        if args.conv_layers:
            conv_layers([int(b) for b in args.conv_layers.split(",")], args.quick)
        if args.profile:
            ok = sorted((r for r in rows if not math.isnan(r.ours_ms) and r.model in built),
                        key=lambda r: -r.ratio)
            for r in ok[: args.profile]:
                tm, model = built[r.model]
                reps = max(10, min(200, int((0.25 if args.quick else 1.0) / (r.ours_ms / 1e3))))
                print(f"\n## Profile: {r.model} batch {r.batch} (ratio {r.ratio:.2f})")
                profile_ours(tm, model, r.batch, reps)
                profile_ort(tm, r.batch, reps)
    bad = [r for r in rows if r.error]
    for r in bad:
        print(f"FAILED: {r.model} b{r.batch}: {r.error}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
