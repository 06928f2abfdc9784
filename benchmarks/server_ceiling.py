"""What bounds the server at c=64: numbaserve serving a model that costs nothing (one Relu on
the seed CNN's 32x32x3 input) next to the seed CNN and the naive server, same load generator.

    .venv/bin/python -m benchmarks.server_ceiling [--reps 2] [--duration 5]

Prints req/s per cell (1 image per request, 64 connections) and the ratio to the naive
server's seed CNN row: the Relu's v2 binary row is the HTTP + protocol ceiling, the gap to the
seed CNN's rows the engine's share of the two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import engine
from benchmarks import server_vs_naive as S
from benchmarks.twin import Twin


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--duration", type=float, default=5.0)
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="server-ceiling-"))
    ns_dir, naive_dir, tm = S.prepare(tmp)
    t = Twin("relu", 0)
    engine.save(tmp / "relu" / "1", t.build(t.relu(t.image(32, 32, 3))).graph)
    body = S.bodies(tmp, tm)
    procs: list[S.Proc] = []
    try:
        pe, pn, pr, ps = (S._free_port() for _ in range(4))
        procs.append(S.Proc("echo", [S.PY, "-m", "benchmarks.naive_server", "--bare-echo",
                                     "--port", str(pe)], f"http://127.0.0.1:{pe}/",
                            tmp / "echo.log"))
        procs.append(S.Proc("naive", [S.PY, "-m", "benchmarks.naive_server", "--model",
                                      str(naive_dir), "--port", str(pn)],
                            f"http://127.0.0.1:{pn}/ready", tmp / "naive.log"))
        for port, name, base in ((pr, "relu", tmp / "relu"), (ps, "seed_cnn", ns_dir)):
            procs.append(S.Proc(name, [
                S.PY, "-m", "service", "--rest_api_host=127.0.0.1", f"--rest_api_port={port}",
                f"--model_name={name}", f"--model_base_path={base}",
                "--file_system_poll_wait_seconds=0"], f"http://127.0.0.1:{port}/readyz",
                tmp / f"{name}.log", env={"NUMBASERVE_LOG_LEVEL": "warning"}))
        (tmp / "relu_bodies").mkdir()
        v2r = S.v2_bodies(tmp / "relu_bodies", tm, f"http://127.0.0.1:{pr}/v2/models/relu")
        v2s = S.v2_bodies(tmp, tm, f"http://127.0.0.1:{ps}/v2/models/seed_cnn")
        rb, sb = v2r[("v2 binary", 1)], v2s[("v2 binary", 1)]
        cells: list[tuple[str, str, Path, dict[str, str] | None]] = [
            ("bare ASGI echo", f"http://127.0.0.1:{pe}/echo", body[1], None),
            ("naive, seed CNN, v1 JSON", f"http://127.0.0.1:{pn}/v1/models/seed_cnn:predict",
             body[1], None),
            ("numbaserve, Relu, v1 JSON", f"http://127.0.0.1:{pr}/v1/models/relu:predict",
             body[1], None),
            ("numbaserve, Relu, v2 binary", f"http://127.0.0.1:{pr}/v2/models/relu/infer",
             rb.path, rb.headers),
            ("numbaserve, seed CNN, v1 JSON",
             f"http://127.0.0.1:{ps}/v1/models/seed_cnn:predict", body[1], None),
            ("numbaserve, seed CNN, v2 binary",
             f"http://127.0.0.1:{ps}/v2/models/seed_cnn/infer", sb.path, sb.headers),
        ]
        for _label, url, b, h in cells:  # warm-up: plans, first calls
            S.drive(url, b, 1, 64, 1.0, 0.0, headers=h)
        res: dict[str, list[float]] = {}
        for _ in range(a.reps):
            for label, url, b, h in cells:
                r: dict[str, Any] = S.drive(url, b, 1, 64, a.duration, 1.0, headers=h)
                res.setdefault(label, []).append(r["rps"])
                print(f"{label:34s} {r['rps']:8.0f} req/s  p99 {r['p99_ms']:6.1f} ms  "
                      f"ok {r['ok']}/{r['requests']}", flush=True)
        naive = float(np.median(res["naive, seed CNN, v1 JSON"]))
        print(f"\nmachine: {S.machine()}; medians of {a.reps} x {a.duration:.0f} s, 1 image, c=64")
        print("| server | req/s | / naive |\n|---|---:|---:|")
        for label, v in res.items():
            print(f"| {label} | {np.median(v):.0f} | {np.median(v) / naive:.2f}x |")
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    sys.exit(main())
