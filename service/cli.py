"""``numbaserve``: the server, with TF Serving's flag names; ``numbaserve warm``: compile kernels.

    numbaserve --rest_api_port=8501 --model_name=seed_cnn --model_base_path=models/seed_cnn
    numbaserve --rest_api_port 8501 --model_config_file models/models.config
    numbaserve warm
    numbaserve convert models/seed_cnn/2 models/seed_cnn/3 --weights int8

Every flag is a field of ``service.config.Settings`` and may also come from the environment
(``NUMBASERVE_<FLAG>``); a flag given on the command line wins. Both ``--flag=value`` and
``--flag value`` work; booleans also accept a bare ``--flag``.

SIGTERM/SIGINT: stop accepting connections, answer the requests in flight, stop the models,
exit 0 — all within ``--drain_seconds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["build_parser", "main", "settings_from_args"]

log = logging.getLogger("numbaserve")

# TF Serving flags we accept so existing command lines keep working, but do not act on.
_IGNORED_TF_FLAGS = {
    "port": "gRPC is not served; only the REST API (--rest_api_port)",
    "rest_api_num_threads": "requests run on the event loop and a worker pool",
    "enable_model_warmup": "warm-up requests in assets.extra/ always run",
    "monitoring_config_file": "Prometheus metrics need no config file",
    "tensorflow_session_parallelism": "not a TensorFlow session",
    "tensorflow_intra_op_parallelism": "intra-op threads follow the CPU count",
    "tensorflow_inter_op_parallelism": "intra-op threads follow the CPU count",
}


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def build_parser() -> argparse.ArgumentParser:
    from service.config import Settings

    parser = argparse.ArgumentParser(
        prog="numbaserve",
        description="Serve models over TF Serving's REST API. Subcommands: 'numbaserve warm' "
        "compiles every kernel ahead of time; 'numbaserve convert' writes a quantized version.",
        allow_abbrev=False,
    )
    for name, field in Settings.model_fields.items():
        env = f"NUMBASERVE_{name.upper()}"
        default = field.default
        shown = "unset" if default is None else repr(default)
        if _is_bool(field.annotation):
            parser.add_argument(
                f"--{name}", nargs="?", const="true", default=None, metavar="true|false",
                help=f"(default {shown}; env {env})",
            )
        else:
            parser.add_argument(
                f"--{name}", default=None, metavar=name.split("_")[-1].upper(),
                help=f"(default {shown}; env {env})",
            )
    tf = parser.add_argument_group("TF Serving flags accepted and ignored")
    for name, why in _IGNORED_TF_FLAGS.items():
        tf.add_argument(f"--{name}", default=None, metavar="VALUE", help=why)
    return parser


def settings_from_args(argv: Sequence[str]) -> Any:
    """Parse ``argv`` into Settings (flags win over NUMBASERVE_* env). Exits 2 on errors."""
    from service.config import Settings

    parser = build_parser()
    ns = parser.parse_args(list(argv))
    given = {k: v for k, v in vars(ns).items() if v is not None}
    for name in list(given):
        if name in _IGNORED_TF_FLAGS:
            print(f"numbaserve: ignoring --{name}: {_IGNORED_TF_FLAGS[name]}", file=sys.stderr)
            del given[name]
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        parser.error(problems)


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _example_instance(shape: Sequence[int | None]) -> tuple[str, str] | None:
    """(JSON instance, Python expression making it) for one input of ``shape``, if static."""
    dims = [d for d in shape[1:]]
    if any(d is None for d in dims):
        return None
    expr = "0.0"
    for d in reversed(dims):
        expr = f"[{expr}]*{d}"
    size = 1
    for d in dims:
        size *= d  # type: ignore[operator]
    literal = ""
    if size <= 8:
        value: Any = 0.0
        for d in reversed(dims):
            value = [value] * d  # type: ignore[operator]
        literal = json.dumps(value)
    return (literal, expr)


def _banner(base: str, manager: Any) -> None:
    lines = [f"numbaserve ready on {base}  (API docs: {base}/docs)"]
    for summary in manager.models():
        name = summary.name
        lines.append(f"  {name}:")
        lines.append(f"    status:   curl {base}/v1/models/{name}")
        lines.append(f"    metadata: curl {base}/v1/models/{name}/metadata")
        try:
            with manager.acquire(name) as handle:
                sig = handle.model.signatures.get("serving_default")
                inputs = dict(sig.inputs) if sig is not None else {}
        except Exception:  # not available (yet): no example
            lines.append("    (no AVAILABLE version yet)")
            continue
        if len(inputs) != 1:
            continue
        (spec,) = inputs.values()
        ex = _example_instance(spec.shape) if spec.dtype.startswith("float") else None
        if ex is None:
            continue
        literal, expr = ex
        url = f"{base}/v1/models/{name}:predict"
        if literal:
            lines.append(f"    predict:  curl -d '{{\"instances\": [{literal}]}}' {url}")
        else:
            lines.append(
                f"    predict:  python -c \"import json; print(json.dumps("
                f"{{'instances': [{expr}]}}))\" > request.json && curl -d @request.json {url}"
            )
    print("\n".join(lines), flush=True)


def serve(settings: Any) -> int:
    import uvicorn

    from service.app import create_app
    from service.config import ConfigError, config_from_settings
    from service.protocol.connection import HttpConnection

    base = f"http://{_display_host(settings.rest_api_host)}:{settings.rest_api_port}"
    try:
        configs = config_from_settings(settings)
        app = create_app(settings, on_ready=lambda manager: _banner(base, manager))
    except ConfigError as exc:
        print(f"numbaserve: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(c.name for c in configs) or "none (management API only)"
    print(f"numbaserve: listening on {base}; loading models: {names}", flush=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if getattr(app.state, "shutdown_deadline", None) is None:
                app.state.shutdown_deadline = time.monotonic() + settings.drain_seconds
                log.info("signal %s: draining for up to %.1f s", sig, settings.drain_seconds)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.rest_api_host,
        port=settings.rest_api_port,
        lifespan="on",
        http=HttpConnection,
        access_log=False,
        server_header=False,
        limit_concurrency=settings.max_concurrent_connections or None,
        timeout_graceful_shutdown=max(1, int(settings.drain_seconds * 0.8)),
        log_level=os.environ.get("NUMBASERVE_LOG_LEVEL", "info").lower(),
    )
    server = Server(config)
    # uvicorn re-raises the signal it caught once it has shut down, with the handlers that
    # were installed before it started: make those no-ops so a drained shutdown exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    return 0 if server.started else 1


def warm(argv: Sequence[str]) -> int:
    import engine

    if argv and argv[0] in ("-h", "--help"):
        print("usage: numbaserve warm\n\nCompile every kernel into the numba cache "
              "(NUMBASERVE_CACHE_DIR) so the first request does not pay for it.")
        return 0
    from service.batching import jsondecode

    start = time.perf_counter()
    try:
        count = engine.warm(progress=lambda line: print(f"numbaserve warm: {line}", flush=True))
        jsondecode.warm()
    except engine.errors.EngineError as exc:
        print(f"numbaserve warm: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - start
    print(f"numbaserve warm: compiled {count} example(s) in {took:.1f} s; cache: "
          f"{os.environ.get('NUMBASERVE_CACHE_DIR') or 'the default numba cache dir'}")
    return 0


def convert(argv: Sequence[str]) -> int:
    """``numbaserve convert SRC DEST --weights int8|float16 [...]``: a quantized version."""
    import engine
    from engine.quantize import REPORT_FILE, format_report

    parser = argparse.ArgumentParser(
        prog="numbaserve convert",
        description="Write a quantized copy of a model version (a new version directory) and "
        f"a report of its size, output differences and speed (DEST/{REPORT_FILE}).",
    )
    parser.add_argument("src", metavar="SRC_VERSION_DIR")
    parser.add_argument("dest", metavar="DEST_VERSION_DIR")
    parser.add_argument("--weights", required=True, choices=("int8", "float16"),
                        help="int8: per-output-channel symmetric, activations stay float32 "
                        "(dynamic range); float16: half-precision weights")
    parser.add_argument("--compute", choices=("int8", "float32"), default=None,
                        help="with --weights int8: int8 (default) quantizes each Dense/Conv2D "
                        "input on the fly and multiplies in int8 (TF Lite's dynamic-range "
                        "kernels: faster, a little less exact); float32 widens the weights "
                        "inside the kernels and keeps float32 arithmetic")
    parser.add_argument("--activations", choices=("int8",), default=None,
                        help="int8: full int8 Dense/Conv2D (TF Lite scheme); needs --calibration")
    parser.add_argument("--calibration", metavar="FILE.npz", default=None,
                        help="inputs keyed by the signature's input names, for activation ranges")
    parser.add_argument("--samples", metavar="FILE.npz", default=None,
                        help="inputs to measure output differences on (default: the calibration "
                        "set, else random inputs)")
    ns = parser.parse_args(list(argv))
    if ns.activations == "int8" and (ns.calibration is None or ns.weights != "int8"):
        parser.error("--activations int8 needs --weights int8 and --calibration FILE.npz")
    if ns.compute is not None and (ns.weights != "int8" or ns.activations == "int8"):
        parser.error("--compute applies to --weights int8 without --activations int8")
    try:
        report = engine.convert(
            ns.src, ns.dest, weights=ns.weights, activations=ns.activations or "float32",
            compute=ns.compute,
            calibration=ns.calibration, samples=ns.samples,
            progress=lambda line: print(f"numbaserve convert: {line}", flush=True))
    except (engine.errors.EngineError, OSError, ValueError) as exc:
        print(f"numbaserve convert: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"numbaserve convert: report written to {os.path.join(ns.dest, REPORT_FILE)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("NUMBASERVE_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args and args[0] == "warm":
        return warm(args[1:])
    if args and args[0] == "convert":
        return convert(args[1:])
    return serve(settings_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
