"""The naive baseline: FastAPI + onnxruntime, one uvicorn worker, orjson, nothing clever.

What a competent engineer writes in an afternoon: an ``async def`` route that reads the
body, ``orjson.loads`` it, ``np.asarray`` the instances, runs the ONNX session inline and
``orjson.dumps`` the predictions. No batching, no GC tuning, no load shedding.

    python -m benchmarks.naive_server --model DIR --port 8600

``DIR`` holds ``model.onnx`` and ``meta.json`` ({"name", "input", "output", "input_perm",
"output_perm"}: the ONNX graph is NCHW, the API NHWC like numbaserve's). ``POST /echo``
answers a fixed tiny body after reading the request: the ceiling of any server here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

__all__ = ["make_app"]


def make_app(model_dir: Path) -> FastAPI:
    meta = json.loads((model_dir / "meta.json").read_text())
    sess = ort.InferenceSession(str(model_dir / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    in_perm = meta.get("input_perm")
    out_perm = meta.get("output_perm")
    back = None if out_perm is None else list(np.argsort(out_perm))
    app = FastAPI()

    @app.post(f"/v1/models/{meta['name']}:predict")
    async def predict(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        x = np.asarray(doc["instances"], dtype=np.float32)
        if in_perm is not None:
            x = np.ascontiguousarray(x.transpose(in_perm))
        (y,) = sess.run([meta["output"]], {meta["input"]: x})
        if back is not None:
            y = np.ascontiguousarray(y.transpose(back))
        return Response(orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        await request.body()
        return Response(b'{"predictions":[]}', media_type="application/json")

    @app.get("/ready")
    async def ready() -> Response:
        return Response(b"{}", media_type="application/json")

    return app


async def bare_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The cheapest HTTP endpoint uvicorn can serve: read the body, answer a constant."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"18")]})
    await send({"type": "http.response.body", "body": b'{"predictions":[]}'})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="the model directory (model.onnx, meta.json)")
    p.add_argument("--port", type=int, default=8600)
    p.add_argument("--bare-echo", action="store_true",
                   help="serve only a bare ASGI echo (to measure the load generator)")
    a = p.parse_args()
    if not a.bare_echo and a.model is None:
        p.error("--model is required (or --bare-echo)")
    app: Any = bare_echo if a.bare_echo else make_app(a.model)
    uvicorn.run(app, host="127.0.0.1", port=a.port, workers=1, access_log=False,
                log_level="warning", lifespan="off" if a.bare_echo else "auto")


if __name__ == "__main__":
    main()
