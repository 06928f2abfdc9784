"""The scenarios: steady, burst, reload, mixed. Each returns the phases it ran (Results)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from loadtests.client import Result, Target, closed_loop, open_loop
from loadtests.server import MODELS, publish_version

__all__ = ["Options", "SCENARIOS", "target_for"]


@dataclass
class Options:
    url: str
    models: dict[str, str]  # served name -> kind (dense, mlp, seed_cnn)
    concurrency: int = 16
    duration_s: float = 10.0
    client: str = "httpx"
    quick: bool = False
    model_dir: Path | None = None  # where `reload` publishes versions
    swap_every_s: float = 5.0
    burst_factor: float = 10.0
    burst_s: float = 5.0
    max_connections: int = 256
    notes: list[str] = field(default_factory=list)


def target_for(url: str, name: str, kind: str, images: int = 1, seed: int = 0) -> Target:
    spec = MODELS[kind]
    body = orjson.dumps({"instances": [spec.instance(seed + i) for i in range(images)]})
    return Target(f"{url}/v1/models/{name}:predict", body, images, name=name)


def _targets(o: Options, names: Sequence[str] | None = None) -> list[Target]:
    names = list(names or o.models)
    return [target_for(o.url, n, o.models[n], seed=i) for i, n in enumerate(names)]


def _dur(o: Options, full: float, quick: float) -> float:
    return quick if o.quick else full


async def steady(o: Options) -> list[Result]:
    """Fixed concurrency on the first model."""
    first = next(iter(o.models))
    d = o.duration_s if not o.quick else min(o.duration_s, 2.0)
    r = await closed_loop(_targets(o, [first]), o.concurrency, d, o.client,
                          label=f"steady c={o.concurrency}", warmup_s=_dur(o, 1.0, 0.3))
    return [r]


async def burst(o: Options) -> list[Result]:
    """Measure capacity, then offer ``burst_factor`` x that for ``burst_s`` (open loop),
    then check the server serves normally again."""
    targets = _targets(o, [next(iter(o.models))])
    cal = await closed_loop(targets, 8, _dur(o, 2.0, 1.0), o.client, label="calibrate c=8",
                            warmup_s=0.3)
    capacity = max(cal.rps, 50.0)
    rate = capacity * o.burst_factor
    seconds = _dur(o, o.burst_s, 2.0)
    hit = await open_loop(targets, rate, seconds, o.max_connections, o.client,
                          max_requests=50_000,
                          label=f"burst {o.burst_factor:g}x ({rate:.0f}/s offered)")
    offered = hit.requests / seconds
    o.notes.append(f"burst: capacity {capacity:.0f} req/s; offered {rate:.0f} req/s, the "
                   f"generator managed {offered:.0f} req/s ({offered / capacity:.1f}x)")
    after = await closed_loop(targets, 8, _dur(o, 2.0, 1.0), o.client, label="after c=8")
    return [cal, hit, after]


async def reload(o: Options) -> list[Result]:
    """Steady load while a new version of the first model is published every
    ``swap_every_s`` (the server's policy serves the latest; old versions retire)."""
    if o.model_dir is None:
        raise SystemExit("reload needs --model-dir (the served model's base path)")
    name = next(iter(o.models))
    kind = o.models[name]
    base = o.model_dir / name
    swap = _dur(o, o.swap_every_s, 1.0)
    duration = o.duration_s if not o.quick else 4.0
    stop = threading.Event()
    published: list[int] = []

    def swapper() -> None:
        version = max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0)
        while not stop.wait(swap):
            version += 1
            publish_version(base, kind, version)
            published.append(version)

    th = threading.Thread(target=swapper, daemon=True)
    th.start()
    try:
        r = await closed_loop(_targets(o, [name]), o.concurrency, duration, o.client,
                              label=f"reload every {swap:g}s c={o.concurrency}")
    finally:
        stop.set()
        await asyncio.to_thread(th.join)
    o.notes.append(f"reload: published versions {published} under load")
    return [r]


async def mixed(o: Options) -> list[Result]:
    """Every served model at once, requests interleaved; one row per model."""
    r = await closed_loop(_targets(o), o.concurrency, o.duration_s if not o.quick else 2.0,
                          o.client, label=f"mixed c={o.concurrency}",
                          warmup_s=_dur(o, 1.0, 0.3))
    rows = [r]
    for name in o.models:
        part = [x for x in r.outcomes if x.target == name]
        rows.append(Result(f"  {name}", part, r.wall_s))
    return rows


SCENARIOS = {"steady": steady, "burst": burst, "reload": reload, "mixed": mixed}
