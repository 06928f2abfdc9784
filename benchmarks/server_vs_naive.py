"""numbaserve vs a naive FastAPI + onnxruntime server, same model, same load, one run.

    .venv/bin/python -m benchmarks.server_vs_naive            # ~3 minutes
    .venv/bin/python -m benchmarks.server_vs_naive --quick    # ~1 minute, noisier

Starts (a) ``benchmarks/naive_server.py`` (FastAPI, onnxruntime, one worker, orjson) and
(b) numbaserve, both serving the seed CNN built from the same seeded weights
(``benchmarks.models.seed_cnn``), checks they answer the same, then drives each with the
same load generator (``loadtests.drive``, its own process, raw HTTP/1.1 keep-alive
client) and the same body: ``instances`` with one 32x32x3 image at concurrency 1, 8 and 64,
then 32 images per request at concurrency 8. Runs alternate between the servers, ``--reps``
times; each cell is the median. First it measures the generator's own ceiling against a
bare ASGI echo (nothing is faster on this machine: generator and servers share its cores).

With ``--v2`` (the default; ``--no-v2`` to skip) numbaserve is also driven through KServe v2
``POST /v2/models/seed_cnn/infer`` at (1 image, c=64) and (32 images, c=8), once with a JSON
body (``inputs[0].data``, flat) and once binary (a JSON header, then the raw little-endian
float32 bytes, ``Inference-Header-Content-Length``, binary output), each compared with the
naive server's v1 JSON row at the same images per request and concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import orjson

import engine
from benchmarks.models import seed_cnn

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# (label, images per request, concurrency)
CONFIGS = [("1 image, c=1", 1, 1), ("1 image, c=8", 1, 8), ("1 image, c=64", 1, 64),
           ("32 images, c=8", 32, 8)]
# Configs that also get numbaserve's KServe v2 rows (JSON and binary).
V2_LABELS = ("1 image, c=64", "32 images, c=8")
V2_SERVERS = ("v2 json", "v2 binary")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = f"load avg {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return f"{cpu}, {os.cpu_count()} cores, {load}"


class Proc:
    def __init__(self, name: str, args: list[str], ready_url: str, log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASERVE_")}
        if "NUMBASERVE_CACHE_DIR" in os.environ:
            full["NUMBASERVE_CACHE_DIR"] = os.environ["NUMBASERVE_CACHE_DIR"]
        full.update(env or {})
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready:\n{log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def drive(url: str, body: Path, items: int, concurrency: int, duration: float,
          warmup: float, client: str = "raw",
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    extra = [f"--header={k}:{v}" for k, v in (headers or {}).items()]
    out = subprocess.run(
        [PY, "-m", "loadtests.drive", "--url", url, "--body-file", str(body), "--items",
         str(items), "--concurrency", str(concurrency), "--duration", str(duration),
         "--warmup", str(warmup), "--client", client, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=duration + warmup + 120)
    if not out.stdout.strip():
        raise RuntimeError(f"load generator failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@dataclass
class Cell:
    rps: float
    items: float
    p50: float
    p99: float
    non_ok: int
    lost: int


def _median(runs: Sequence[dict[str, Any]]) -> Cell:
    return Cell(
        statistics.median(r["rps"] for r in runs),
        statistics.median(r["items_per_s"] for r in runs),
        statistics.median(r["p50_ms"] for r in runs),
        statistics.median(r["p99_ms"] for r in runs),
        sum(r["requests"] - r["ok"] - r["lost"] for r in runs),
        sum(r["lost"] for r in runs),
    )


def prepare(root: Path) -> tuple[Path, Path, Any]:
    tm = seed_cnn()
    ns_dir = root / "models" / "seed_cnn"
    engine.save(ns_dir / "1", tm.graph)
    naive_dir = root / "naive"
    naive_dir.mkdir(parents=True)
    onnx.save(tm.onnx_model, str(naive_dir / "model.onnx"))
    (naive_dir / "meta.json").write_text(json.dumps({
        "name": "seed_cnn", "input": tm.onnx_input, "output": tm.onnx_output,
        "input_perm": list(tm.input_perm) if tm.input_perm else None,
        "output_perm": list(tm.output_perm) if tm.output_perm else None}))
    return ns_dir, naive_dir, tm


def bodies(root: Path, tm: Any) -> dict[int, Path]:
    out = {}
    for n in sorted({c[1] for c in CONFIGS}):
        x = tm.example(n, seed=7).round(4)
        p = root / f"body_{n}.json"
        p.write_bytes(orjson.dumps({"instances": x.tolist()}))
        out[n] = p
    return out


@dataclass
class V2Body:
    path: Path
    headers: dict[str, str]


def v2_bodies(root: Path, tm: Any, meta_url: str) -> dict[tuple[str, int], V2Body]:
    """The v2 JSON and binary bodies for the same images as ``bodies``; the input's name
    comes from the running server's model metadata."""
    meta = httpx.get(meta_url, timeout=30).json()
    (inp,) = meta["inputs"]
    name = inp["name"]
    out: dict[tuple[str, int], V2Body] = {}
    for n in sorted({c[1] for c in CONFIGS if c[0] in V2_LABELS}):
        x = tm.example(n, seed=7).round(4).astype(np.float32)
        shape = list(x.shape)
        p = root / f"v2_{n}.json"
        p.write_bytes(orjson.dumps({"inputs": [{
            "name": name, "shape": shape, "datatype": "FP32",
            "data": x.reshape(-1).tolist()}]}))
        out[("v2 json", n)] = V2Body(p, {"content-type": "application/json"})
        raw = x.astype("<f4").tobytes()
        header = orjson.dumps({
            "inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True}})
        p = root / f"v2_{n}.bin"
        p.write_bytes(header + raw)
        out[("v2 binary", n)] = V2Body(p, {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header))})
    return out


def check_v2(url: str, naive_url: str, v2: dict[tuple[str, int], V2Body],
             v1: dict[int, Path]) -> float:
    """Both v2 bodies answer what the naive server answers for the same images (v1 JSON)."""
    worst = 0.0
    for (kind, n), b in v2.items():
        ref = httpx.post(naive_url, content=v1[n].read_bytes(), timeout=300,
                         headers={"content-type": "application/json"})
        ref.raise_for_status()
        want = np.asarray(ref.json()["predictions"], np.float32)
        r = httpx.post(url, content=b.path.read_bytes(), headers=b.headers, timeout=300)
        r.raise_for_status()
        if kind == "v2 binary":
            hlen = int(r.headers["inference-header-content-length"])
            (o,) = orjson.loads(r.content[:hlen])["outputs"]
            got = np.frombuffer(r.content[hlen:], "<f4").reshape(o["shape"])
        else:
            (o,) = r.json()["outputs"]
            got = np.asarray(o["data"], np.float32).reshape(o["shape"])
        if got.shape != want.shape:
            raise SystemExit(f"{kind}: output shape {got.shape}, naive {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > 1e-3:
        raise SystemExit(f"v2 and the naive server disagree: max abs diff {worst}")
    return worst


def check_same(urls: dict[str, str], body: Path) -> float:
    preds = {}
    for name, url in urls.items():
        # A generous deadline: on a cold numba cache the first call compiles kernels.
        r = httpx.post(url, content=body.read_bytes(), timeout=300,
                       headers={"content-type": "application/json",
                                "x-request-timeout-ms": "300000"})
        r.raise_for_status()
        preds[name] = np.asarray(r.json()["predictions"], np.float32)
    a, b = preds.values()
    if a.shape != b.shape:
        raise SystemExit(f"the servers disagree on the output shape: {a.shape} vs {b.shape}")
    diff = float(np.max(np.abs(a - b)))
    if diff > 1e-3:
        raise SystemExit(f"the servers disagree: max abs diff {diff}")
    return diff


# ----------------------------------------------------------------------------- profile


def _per_call_us(fn: Any, reps: int = 200, rounds: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e6)
    return best


def profile_request(root: Path) -> None:
    """Where one request's time goes inside numbaserve (one 32x32x3 image as JSON): each
    step timed alone on this machine (best of 5), then the whole ASGI app in-process."""
    import asyncio

    from service.app import create_app
    from service.batching.jsondecode import JsonArray, decode_json
    from service.batching.scheduler import intra_op_threads, limit_engine_threads
    from service.config import Settings
    from service.inference import as_array
    from service.protocol import v1

    limit_engine_threads(intra_op_threads(0, 1))  # as on a batch thread
    ns_dir, _, tm = prepare(root)
    model = engine.load(ns_dir / "1")
    sig = model.signatures["serving_default"]
    (alias, spec), = sig.inputs.items()
    x = tm.example(1, seed=7).round(4)
    body = orjson.dumps({"instances": x.tolist()})
    lists = orjson.loads(body)["instances"]
    fast = decode_json(body)["instances"]
    arr = as_array(alias, lists, spec)
    x32 = tm.example(32, seed=7)
    out = model.run({alias: arr})
    steps = [
        ("orjson.loads (3,072 numbers as nested lists)", lambda: orjson.loads(body)),
        ("np.asarray(lists, float32)", lambda: as_array(alias, lists, spec)),
        ("decode_json (numbers straight to numpy)", lambda: decode_json(body)),
        ("as_array(JsonArray) -> float32", lambda: as_array(alias, fast, spec)),
        ("Model.check_feeds (dtype/shape checks)", lambda: model.check_feeds({alias: arr})),
        ("engine: seed CNN, batch 1", lambda: model.run({alias: arr})),
        ("engine: seed CNN, batch 32, per image",
         lambda: model.run({alias: x32}), 32),
        ("orjson.dumps of the 4x4x64 output (numpy)",
         lambda: v1._encode_rows(_Result(out))),
    ]
    print(f"\nbody: {len(body)} bytes; per step, microseconds (best of 5):")
    for label, fn, *per in steps:
        print(f"  {label:<48} {_per_call_us(fn) / (per[0] if per else 1):8.1f}")
    fast_v1 = isinstance(v1._parse_json(body)["instances"], JsonArray)
    print(f"  (the v1 route here decodes with {'decode_json' if fast_v1 else 'orjson.loads'})")

    settings = Settings(model_name="seed_cnn", model_base_path=str(ns_dir),
                        file_system_poll_wait_seconds=0)
    app = create_app(settings)
    scope = {"type": "http", "method": "POST", "path": "/v1/models/seed_cnn:predict",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "query_string": b"", "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2), "http_version": "1.1",
             "asgi": {"version": "3.0"}}

    async def one() -> None:
        status = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(m: dict[str, Any]) -> None:
            if m["type"] == "http.response.start":
                status.append(m["status"])

        await app(dict(scope), receive, send)
        assert status == [200], status

    async def main() -> None:
        async with app.router.lifespan_context(app):
            while not app.state.manager.ready():
                await asyncio.sleep(0.05)
            for _ in range(100):
                await one()
            for conc in (1, 64):
                n = 1024 if conc == 1 else 4096
                t0 = time.perf_counter()
                for _ in range(n // conc):
                    await asyncio.gather(*(one() for _ in range(conc)))
                dt = time.perf_counter() - t0
                print(f"  whole app in-process (no sockets), {conc:>2} at a time:"
                      f"{dt / n * 1e6:8.1f} us/request ({n / dt:.0f} req/s)")

    asyncio.run(main())


class _Result:
    def __init__(self, out: dict[str, np.ndarray]) -> None:
        self.outputs = out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_vs_naive",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    p.add_argument("--reps", type=int, default=3, help="runs per server and config")
    p.add_argument("--quick", action="store_true", help="--duration 2 --reps 1")
    p.add_argument("--numbaserve-arg", action="append", default=[],
                   help="extra numbaserve flag (repeatable), e.g. --num_batch_threads=2")
    p.add_argument("--only", action="append", default=[], metavar="LABEL",
                   help="run only the configs whose label contains LABEL (repeatable)")
    p.add_argument("--v2", action=argparse.BooleanOptionalAction, default=True,
                   help="also drive numbaserve's KServe v2 /infer route, JSON and binary, "
                        f"for {' and '.join(V2_LABELS)} (default: on)")
    p.add_argument("--profile-request", action="store_true",
                   help="only time the steps of one request inside numbaserve")
    a = p.parse_args(argv)
    if a.quick:
        a.duration, a.reps, a.warmup = 2.0, 1, 0.5
    tmp = Path(tempfile.mkdtemp(prefix="server-vs-naive-"))
    if a.profile_request:
        profile_request(tmp)
        return 0
    ns_dir, naive_dir, tm = prepare(tmp)
    body = bodies(tmp, tm)
    procs: list[Proc] = []
    try:
        p_echo, p_naive, p_ns = _free_port(), _free_port(), _free_port()
        procs.append(Proc("echo", [PY, "-m", "benchmarks.naive_server", "--bare-echo",
                                   "--port", str(p_echo)],
                          f"http://127.0.0.1:{p_echo}/", tmp / "echo.log"))
        procs.append(Proc("naive", [PY, "-m", "benchmarks.naive_server", "--model",
                                    str(naive_dir), "--port", str(p_naive)],
                          f"http://127.0.0.1:{p_naive}/ready", tmp / "naive.log"))
        procs.append(Proc("numbaserve", [
            PY, "-m", "service", "--rest_api_host=127.0.0.1", f"--rest_api_port={p_ns}",
            "--model_name=seed_cnn", f"--model_base_path={ns_dir}",
            "--file_system_poll_wait_seconds=0", *a.numbaserve_arg],
            f"http://127.0.0.1:{p_ns}/readyz", tmp / "numbaserve.log",
            env={"NUMBASERVE_LOG_LEVEL": "warning"}))
        urls = {"naive": f"http://127.0.0.1:{p_naive}/v1/models/seed_cnn:predict",
                "numbaserve": f"http://127.0.0.1:{p_ns}/v1/models/seed_cnn:predict"}
        diff = check_same(urls, body[32])
        print(f"machine: {machine()}")
        print(f"both servers agree (max abs diff {diff:.2e} on 32 images)")
        v2: dict[tuple[str, int], V2Body] = {}
        v2_url = f"http://127.0.0.1:{p_ns}/v2/models/seed_cnn/infer"
        if a.v2:
            v2 = v2_bodies(tmp, tm, f"http://127.0.0.1:{p_ns}/v2/models/seed_cnn")
            d2 = check_v2(v2_url, urls["naive"], v2, body)
            print(f"v2 JSON and binary agree with the naive server (max abs diff {d2:.2e})")
        # Warm-up: every padded batch size's plan, both servers' first-call costs.
        for url in urls.values():
            drive(url, body[1], 1, 64, 2.0, 0.0)
            drive(url, body[32], 32, 8, 1.0, 0.0)
        for (_kind, n), b in v2.items():
            drive(v2_url, b.path, n, 64 if n == 1 else 8, 1.0, 0.0, headers=b.headers)
        echo_url = f"http://127.0.0.1:{p_echo}/echo"
        ceiling = {c: drive(echo_url, body[1], 1, c, a.duration, a.warmup)["rps"]
                   for c in (1, 64)}
        print(f"load generator ceiling (raw client vs a bare ASGI echo, same body): "
              f"{ceiling[1]:.0f} req/s at c=1, {ceiling[64]:.0f} req/s at c=64")
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        configs = [c for c in CONFIGS if not a.only or any(o in c[0] for o in a.only)]
        for label, images, conc in configs:
            for _ in range(a.reps):
                for name, url in urls.items():
                    r = drive(url, body[images], images, conc, a.duration, a.warmup)
                    runs.setdefault((label, name), []).append(r)
                if label in V2_LABELS:
                    for kind in V2_SERVERS:
                        vb = v2.get((kind, images))
                        if vb is None:
                            continue
                        r = drive(v2_url, vb.path, images, conc, a.duration, a.warmup,
                                  headers=vb.headers)
                        runs.setdefault((label, kind), []).append(r)
        print_table(runs, a, configs)
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()


def print_table(runs: dict[tuple[str, str], list[dict[str, Any]]], a: Any,
                configs: Sequence[tuple[str, int, int]]) -> None:
    print(f"\nmedian of {a.reps} run(s) of {a.duration:g} s each "
          f"(ratio = numbaserve / naive, v2 rows vs the naive v1 JSON row; "
          f"p99 ratio < 1 is better)")
    head = ("config", "server", "req/s", "items/s", "p50 ms", "p99 ms", "non-200", "lost",
            "req/s ratio", "p99 ratio")
    rows = [head]
    verdicts = []
    for label, _, conc in configs:
        naive = _median(runs[(label, "naive")])
        ours = _median(runs[(label, "numbaserve")])
        ratio = ours.rps / naive.rps if naive.rps else float("nan")
        p99r = ours.p99 / naive.p99 if naive.p99 else float("nan")
        rows.append((label, "naive", f"{naive.rps:.0f}", f"{naive.items:.0f}",
                     f"{naive.p50:.2f}", f"{naive.p99:.2f}", str(naive.non_ok),
                     str(naive.lost), "", ""))
        for name in ("numbaserve", *V2_SERVERS):
            if (label, name) not in runs:
                continue
            c = _median(runs[(label, name)])
            rr = c.rps / naive.rps if naive.rps else float("nan")
            pr = c.p99 / naive.p99 if naive.p99 else float("nan")
            rows.append(("", "numbaserve" if name == "numbaserve" else f"numbaserve {name}",
                         f"{c.rps:.0f}", f"{c.items:.0f}", f"{c.p50:.2f}", f"{c.p99:.2f}",
                         str(c.non_ok), str(c.lost), f"{rr:.2f}x", f"{pr:.2f}"))
            if name == "v2 binary" and label == "1 image, c=64":
                verdicts.append(f"v2 binary c=64: {rr:.2f}x the naive JSON server's req/s "
                                f"(target >= 5x): {'MET' if rr >= 5 else 'NOT MET'}")
        if label == "1 image, c=64":
            ok = ratio >= 2.5 and p99r <= 1.0
            verdicts.append(f"c=64: {ratio:.3f}x req/s (target >= 2.5x), p99 {p99r:.2f} of "
                            f"naive's (target <= 1): {'MET' if ok else 'NOT MET'}")
        if conc == 1:
            ok = ratio >= 0.9
            verdicts.append(f"c=1: {ratio:.3f}x req/s (target >= 0.9x): "
                            f"{'MET' if ok else 'NOT MET'}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for i, r in enumerate(rows):
        print(" | ".join(c.ljust(w) if j < 2 else c.rjust(w)
                         for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    sys.exit(main())
