"""One closed-loop run against one URL, results as one JSON line (for benchmarks, which
run the generator in its own process, away from the servers' event loops).

    python -m loadtests.drive --url http://127.0.0.1:8501/v1/models/m:predict \\
        --body-file request.json --items 1 --concurrency 8 --duration 5 --client raw
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson

from loadtests.client import Result, Target, closed_loop


def _loop_runner(kind: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.run
    return asyncio.run


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.drive", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--items", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--client", choices=["httpx", "raw"], default="raw")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="extra request header (repeatable), e.g. content-type:text/plain")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                   help="event loop: uvloop (cheaper per request, so more of the shared "
                        "CPU is left to the server under test) when importable, by default")
    a = p.parse_args(argv)
    gc.disable()  # the generator's own pauses must not show up as server latency
    headers = dict((k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in a.header))
    target = Target(a.url, a.body_file.read_bytes(), a.items, headers)
    out: list[Result] = []

    async def run() -> None:
        # Not returned: 3.11's asyncio.Runner reprs the finished main task (so its result,
        # every Outcome) twice while restoring SIGINT, ~0.1 s of CPU per 20k requests.
        out.append(await closed_loop([target], a.concurrency, a.duration, a.client,
                                     warmup_s=a.warmup))

    _loop_runner(a.loop)(run())
    r = out[0]
    print(orjson.dumps(r.to_json()).decode())
    return 1 if r.lost else 0


if __name__ == "__main__":
    sys.exit(main())
