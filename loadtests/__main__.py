"""``python -m loadtests SCENARIO``: drive a numbaserve and print what happened.

    python -m loadtests steady                 # starts its own server (dense model)
    python -m loadtests all --quick            # every scenario, a few seconds each
    python -m loadtests steady --url http://127.0.0.1:8501 --model seed_cnn:seed_cnn

Exits 1 if any request was lost (neither answered nor refused with a status).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from loadtests.client import Result
from loadtests.scenarios import SCENARIOS, Options
from loadtests.server import LocalServer

# Own-server settings per scenario: the burst one gets a short queue so refusals show.
_OWN = {
    "steady": ({"dense": "dense"}, []),
    "burst": ({"dense": "dense"}, ["--max_enqueued_batches=2"]),
    "reload": ({"dense": "dense"}, ["--file_system_poll_wait_seconds=0.25"]),
    "mixed": ({"dense": "dense", "mlp": "mlp"}, []),
}


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 1e3:.1f}"


def table(results: Sequence[Result]) -> str:
    head = ("phase", "requests", "ok", "errors by status", "lost", "req/s", "p50 ms",
            "p95 ms", "p99 ms")
    rows = [head]
    for r in results:
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(r.by_status().items())
                         if k != "200" and not k.startswith("lost")) or "-"
        rows.append((r.label, str(r.requests), str(r.ok), errs, str(r.lost), f"{r.rps:.0f}",
                     _ms(r.percentile(50)), _ms(r.percentile(95)), _ms(r.percentile(99))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) if i == 0 or i == 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _models(specs: Sequence[str]) -> dict[str, str]:
    out = {}
    for s in specs:
        name, _, kind = s.partition(":")
        out[name] = kind or name
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, "all"])
    p.add_argument("--url", help="a running server (127.0.0.1 only); default: start one")
    p.add_argument("--model", action="append", default=[], metavar="NAME[:KIND]",
                   help="served model and its kind (dense, mlp, seed_cnn); repeatable")
    p.add_argument("--model-dir", type=Path,
                   help="the running server's model directory (reload writes versions there)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    p.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")
    a = p.parse_args(argv)
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    lost = 0
    summary = {}
    for name in names:
        server = None
        models = _models(a.model)
        model_dir = a.model_dir
        url = a.url
        if url is None:
            own_models, args = _OWN[name]
            server = LocalServer(models or own_models, args)
            server.wait_ready()
            url, models, model_dir = server.url, server.models, server.root
        elif not models:
            p.error("--url needs --model NAME[:KIND]")
        o = Options(url=url.rstrip("/"), models=models, concurrency=a.concurrency,
                    duration_s=a.duration, client=a.client, quick=a.quick, model_dir=model_dir)
        try:
            results = asyncio.run(SCENARIOS[name](o))
        finally:
            if server is not None:
                server.stop()
        print(f"\n== {name} ({a.client} client, {url})")
        print(table(results))
        for note in o.notes:
            print(note)
        n_lost = sum(r.lost for r in results if not r.label.startswith("  "))
        lost += n_lost
        if n_lost:
            print(f"LOST {n_lost} request(s): {[k for k in results[0].by_status()]}")
        summary[name] = [r.to_json() for r in results]
    if a.json:
        print(orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
