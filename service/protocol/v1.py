"""TF Serving's REST API (``/v1/models/...``), request and response shapes as TF Serving's.

Two halves:
- the hot path, ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:(predict|classify|regress)``,
  is a raw ASGI route (``VerbRoute``): read the body (bounded), ``decode_json`` (numeric
  arrays straight to numpy, orjson for the rest), hand them to ``inference``, and
  ``orjson.dumps(..., OPT_SERIALIZE_NUMPY)`` the result. No pydantic, no Request object.
- status and metadata (``GET``) are ordinary FastAPI routes, in the OpenAPI docs.

The ``:verb`` suffix is why the hot route has its own regex: Starlette's ``{name}`` would
happily swallow ``seed_cnn:predict``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engine import Signature, TensorSpec, dtypes
from service.batching.jsondecode import decode_json
from service.errors import InvalidArgument, NotFound
from service.inference import Inference, InferResult, as_array
from service.protocol.asgi import (
    Disconnected,
    JsonResponse,
    PostRoute,
    read_body,
    send_bytes,
    send_error,
)
from service.protocol.errors import error_body

__all__ = ["VerbRoute", "install", "metadata_json", "parse_version", "status_router"]

_VERBS = frozenset(("predict", "classify", "regress"))
_OPTS = orjson.OPT_SERIALIZE_NUMPY

# name, then optional /versions/<v> or /labels/<l>, then :verb. Names and labels hold no '/'
# and no ':'; a bad version or verb is matched here (and refused with 400 or 404) rather than
# left to the GET routes, which would read "name:verb" as a model name.
_VERB_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>[^/:]*)$"
)


def parse_version(text: str) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"version must be a positive integer, got {text!r}")
    return int(text)


# ---------------------------------------------------------------------------- decoding


def _parse_json(body: bytes | bytearray) -> dict[str, Any]:
    if not body:
        raise InvalidArgument("request body is empty; expected a JSON object")
    try:
        doc = decode_json(body)  # numbers under instances/inputs straight to numpy
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"request body must be a JSON object, got {type(doc).__name__}")
    return doc


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _bytes(alias: str, value: Any) -> Any:
    """A JSON value for a DT_STRING input -> nested lists of bytes (``{"b64": ...}`` decoded)."""
    if isinstance(value, list):
        return [_bytes(alias, v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"input {alias!r}: invalid base64 in 'b64' value ({exc})"
            ) from None
    raise InvalidArgument(
        f"input {alias!r}: expected strings or {{\"b64\": ...}} objects for a DT_STRING "
        f"tensor, got {type(value).__name__}"
    )


def _values(alias: str, value: Any, spec: TensorSpec | None) -> Any:
    if spec is not None and spec.dtype == "object":
        nested = _bytes(alias, value)
        arr = np.empty(np.shape(nested) if isinstance(nested, list) else (), dtype=object)
        arr[...] = nested if isinstance(nested, list) else nested
        return arr
    return value


def _decode_rows(instances: Any, sig: Signature) -> dict[str, Any]:
    """TF's row format: a list of instances; objects of named inputs when there are several."""
    if isinstance(instances, np.ndarray):  # a numeric array decoded straight from the body
        if len(sig.inputs) != 1:
            raise InvalidArgument(
                f"the signature has {len(sig.inputs)} inputs {sorted(sig.inputs)}; each "
                f"instance must be an object naming them")
        (alias,) = sig.inputs
        return {alias: _values(alias, instances, sig.inputs[alias])}
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty list")
    aliases = list(sig.inputs)
    first = instances[0]
    if isinstance(first, dict) and not _is_b64(first):
        cols: dict[str, list[Any]] = {a: [] for a in aliases}
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict) or inst.keys() != cols.keys():
                got = sorted(inst) if isinstance(inst, dict) else type(inst).__name__
                raise InvalidArgument(
                    f"instance {i}: expected an object with inputs {sorted(aliases)}, got {got}"
                )
            for a in aliases:
                cols[a].append(inst[a])
        return {a: _values(a, c, sig.inputs[a]) for a, c in cols.items()}
    if len(aliases) != 1:
        raise InvalidArgument(
            f"the signature has {len(aliases)} inputs {sorted(aliases)}; each instance must be "
            f"an object naming them"
        )
    alias = aliases[0]
    return {alias: _values(alias, instances, sig.inputs[alias])}


def _decode_columns(inputs: Any, sig: Signature) -> dict[str, Any]:
    """TF's columnar format: ``inputs`` is one tensor (single input) or an object of them."""
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if not inputs:
            raise InvalidArgument("'inputs' must name at least one input")
        return {a: _values(a, v, sig.inputs.get(a)) for a, v in inputs.items()}
    if len(sig.inputs) != 1:
        raise InvalidArgument(
            f"the signature has {len(sig.inputs)} inputs {sorted(sig.inputs)}; 'inputs' must "
            f"be an object naming them"
        )
    (alias,) = sig.inputs
    return {alias: _values(alias, inputs, sig.inputs[alias])}


_MISSING = object()


def _decode_examples(examples: Any, context: Any, sig: Signature) -> dict[str, np.ndarray]:
    """TF's classify/regress format: examples (feature name -> value), plus shared context."""
    if not isinstance(examples, list) or not examples:
        raise InvalidArgument("'examples' must be a non-empty list of objects")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise InvalidArgument("'context' must be an object of features")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise InvalidArgument(f"example {i}: expected an object of features")
    feeds: dict[str, np.ndarray] = {}
    for alias, spec in sig.inputs.items():
        col = []
        for i, ex in enumerate(examples):
            v = ex.get(alias, context.get(alias, _MISSING))
            if v is _MISSING:
                raise InvalidArgument(f"example {i}: missing feature {alias!r}")
            # tf.Example features are lists: a bare scalar is the one-element list [x].
            col.append(v if isinstance(v, list) else [v])
        arr = as_array(alias, _values(alias, col, spec), spec)
        # Fit [N, 1] to a spec of rank 1, or [N] to a spec ending in 1.
        rank = len(spec.shape)
        if arr.ndim == rank + 1 and arr.shape[-1] == 1:
            arr = arr.reshape(arr.shape[:-1])
        elif arr.ndim + 1 == rank and spec.shape[-1] == 1:
            arr = arr[..., None]
        feeds[alias] = arr
    return feeds


# ---------------------------------------------------------------------------- encoding


def _strings_out(alias: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_strings_out(alias, v) for v in value]
    if isinstance(value, bytes):
        if not alias.endswith("_bytes"):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _jsonable(alias: str, arr: np.ndarray) -> Any:
    if arr.dtype == object:
        return _strings_out(alias, arr.tolist())
    if arr.dtype.kind == "c" or not arr.dtype.isnative:
        return arr.tolist()
    return np.ascontiguousarray(arr)


def _encode_rows(result: InferResult) -> bytes:
    outs = result.outputs
    if len(outs) == 1:
        ((alias, arr),) = outs.items()
        return orjson.dumps({"predictions": _jsonable(alias, arr)}, option=_OPTS)
    sizes = {a: (v.shape[0] if v.ndim else None) for a, v in outs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise InvalidArgument(
            f"outputs have different batch sizes {sizes}; use the columnar format ('inputs') "
            f"for this signature"
        )
    cols = {a: _jsonable(a, v) for a, v in outs.items()}
    n = next(iter(sizes.values()))
    rows = [{a: c[i] for a, c in cols.items()} for i in range(n)]  # type: ignore[arg-type]
    return orjson.dumps({"predictions": rows}, option=_OPTS)


def _encode_columns(result: InferResult) -> bytes:
    outs = result.outputs
    if len(outs) == 1:
        ((alias, arr),) = outs.items()
        return orjson.dumps({"outputs": _jsonable(alias, arr)}, option=_OPTS)
    return orjson.dumps({"outputs": {a: _jsonable(a, v) for a, v in outs.items()}}, option=_OPTS)


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _encode_classify(result: InferResult) -> bytes:
    outs = result.outputs
    scores = outs.get("scores")
    classes = outs.get("classes")
    if scores is None and classes is None:
        if len(outs) != 1:
            raise InvalidArgument(
                f"a classify signature needs a 'scores' and/or 'classes' output; it has "
                f"{sorted(outs)}"
            )
        (scores,) = outs.values()
    ref = scores if scores is not None else classes
    assert ref is not None
    n = ref.shape[0] if ref.ndim else 1
    s2 = None if scores is None else scores.reshape(n, -1).tolist()
    c2 = None if classes is None else classes.reshape(n, -1).tolist()
    k = len((s2 or c2)[0]) if n else 0  # type: ignore[index]
    rows = []
    for i in range(n):
        rows.append([
            [
                _label(c2[i][j]) if c2 is not None else str(j),
                s2[i][j] if s2 is not None else 0.0,
            ]
            for j in range(k)
        ])
    return orjson.dumps({"result": rows})


def _encode_regress(result: InferResult) -> bytes:
    outs = result.outputs
    arr = outs.get("outputs")
    if arr is None:
        if len(outs) != 1:
            raise InvalidArgument(
                f"a regress signature needs an 'outputs' output; it has {sorted(outs)}"
            )
        (arr,) = outs.values()
    n = arr.shape[0] if arr.ndim else 1
    if arr.size != n:
        raise InvalidArgument(
            f"a regress signature must give one value per example; got shape {list(arr.shape)}"
        )
    return orjson.dumps({"result": arr.reshape(n).astype(np.float64).tolist()})


# ---------------------------------------------------------------------------- hot route


class VerbRoute(PostRoute):
    """``POST .../{name}[/versions/{v}|/labels/{l}]:{predict,classify,regress}`` as raw ASGI.

    Placed first in the app's routes so the router tries one regex before anything else.
    """

    def __init__(self, inference: Inference, max_request_bytes: int) -> None:
        super().__init__(_VERB_PATH, "/v1/models/{name}:{verb}", "v1_verb")
        self.inference = inference
        self.max_request_bytes = max_request_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.refuse_unless_post(scope, send):
            return
        params = scope["path_params"]
        if params["verb"] not in _VERBS:
            msg = (f"unknown method ':{params['verb']}' in {scope['path']}; expected :predict, "
                   f":classify or :regress")
            await send_bytes(send, 404, error_body(msg))
            return
        try:
            body = await read_body(scope, receive, self.max_request_bytes)
            doc = _parse_json(body)
            out = await self._dispatch(params, doc)
        except Disconnected:
            return
        except Exception as exc:  # every error goes out as {"error": ...}
            await send_error(send, exc)
            return
        await send_bytes(send, 200, out)

    async def _dispatch(self, params: dict[str, Any], doc: dict[str, Any]) -> bytes:
        name = params["name"]
        version = parse_version(params["version"]) if params.get("version") else None
        label = params.get("label")
        sig_name = doc.get("signature_name") or None
        if sig_name is not None and not isinstance(sig_name, str):
            raise InvalidArgument("'signature_name' must be a string")
        verb = params["verb"]
        decoder: Callable[[Signature], Mapping[str, Any]]
        if verb == "predict":
            has_rows, has_cols = "instances" in doc, "inputs" in doc
            if has_rows and has_cols:
                raise InvalidArgument(
                    "give either 'instances' (row format) or 'inputs' (columnar format), not both"
                )
            if not (has_rows or has_cols):
                raise InvalidArgument("missing 'instances' (row format) or 'inputs' (columnar)")
            decoder = partial(_decode_rows if has_rows else _decode_columns,
                              doc["instances" if has_rows else "inputs"])
            result = await self.inference.infer(
                name, decoder, version=version, label=label, signature=sig_name
            )
            return _encode_rows(result) if has_rows else _encode_columns(result)
        if "examples" not in doc:
            raise InvalidArgument(f"missing 'examples' in :{verb} request")
        decoder = partial(_decode_examples, doc["examples"], doc.get("context"))
        result = await self.inference.infer(
            name, decoder, version=version, label=label, signature=sig_name, method=verb
        )
        return _encode_classify(result) if verb == "classify" else _encode_regress(result)


# ---------------------------------------------------------------------------- GET routes


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": dtypes.info(spec.dtype).tf,
        "tensor_shape": {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }


def metadata_json(name: str, version: int, signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """TF Serving's GetModelMetadata response for one version."""
    defs = {
        key: {
            "inputs": {a: _tensor_info(s) for a, s in sig.inputs.items()},
            "outputs": {a: _tensor_info(s) for a, s in sig.outputs.items()},
            "method_name": f"tensorflow/serving/{sig.method}",
        }
        for key, sig in signatures.items()
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": defs}},
    }


_STATUS_EXAMPLE = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


def status_router(manager: Any) -> APIRouter:
    """``GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]``."""
    router = APIRouter(prefix="/v1/models", tags=["TF Serving REST API"])
    ok: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/json": {"example": _STATUS_EXAMPLE}}}
    }

    def status(name: str, version: int | None, label: str | None) -> Response:
        entries = manager.status(name, version, label)
        if not entries:
            raise NotFound(f"model {name!r} has no versions")
        return JsonResponse({"model_version_status": [e.to_json() for e in entries]})

    def metadata(name: str, version: int | None, label: str | None) -> Response:
        with manager.acquire(name, version, label) as handle:
            signatures = handle.model.signatures
            return JsonResponse(metadata_json(handle.name, handle.version, signatures))

    @router.get("/{name}", responses=ok, summary="Model status (every version)")
    async def model_status(name: str) -> Response:
        return status(name, None, None)

    @router.get("/{name}/versions/{version}", summary="Status of one version")
    async def version_status(name: str, version: str) -> Response:
        return status(name, parse_version(version), None)

    @router.get("/{name}/labels/{label}", summary="Status of the version a label points at")
    async def label_status(name: str, label: str) -> Response:
        return status(name, None, label)

    @router.get("/{name}/metadata", summary="Signatures of the latest version")
    async def model_metadata(name: str) -> Response:
        return metadata(name, None, None)

    @router.get("/{name}/versions/{version}/metadata", summary="Signatures of one version")
    async def version_metadata(name: str, version: str) -> Response:
        return metadata(name, parse_version(version), None)

    @router.get("/{name}/labels/{label}/metadata", summary="Signatures of a labelled version")
    async def label_metadata(name: str, label: str) -> Response:
        return metadata(name, None, label)

    return router


def _verb_doc(verb: str, where: str) -> dict[str, Any]:
    examples = {
        "predict": {
            "row": {"value": {"instances": [[1.0, 2.0, 3.0, 4.0]]}},
            "columnar": {"value": {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}},
        },
        "classify": {"examples": {"value": {"examples": [{"x": [1.0, 2.0, 3.0, 4.0]}]}}},
        "regress": {"examples": {"value": {"examples": [{"x": [1.0, 2.0, 3.0, 4.0]}]}}},
    }[verb]
    params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if where:
        key = where.strip("{}")
        params.append({"name": key, "in": "path", "required": True,
                       "schema": {"type": "string"}})
    return {
        "post": {
            "tags": ["TF Serving REST API"],
            "summary": f"{verb.capitalize()} ({'latest version' if not where else key})",
            "description": "TF Serving's REST request/response format; see docs/rest-api.md.",
            "operationId": f"{verb}_{where.strip('{}') or 'latest'}",
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"},
                                                 "examples": examples}},
            },
            "responses": {
                "200": {"description": "Outputs", "content": {"application/json": {}}},
                "400": {"description": "Bad input: {\"error\": message}"},
                "404": {"description": "Unknown model, version or label"},
                "413": {"description": "Request body too large"},
                "503": {"description": "No AVAILABLE version"},
            },
        }
    }


def install(app: FastAPI, manager: Any, inference: Inference, max_request_bytes: int) -> None:
    """Add the v1 routes to ``app``: the hot verb route first, then the GET routes."""
    # First in the route list: the router tries one regex before anything else. (A pure ASGI
    # middleware in front of the router measured no faster.)
    app.router.routes.insert(0, VerbRoute(inference, max_request_bytes))
    app.include_router(status_router(manager))

    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        paths = schema.setdefault("paths", {})
        for verb in ("predict", "classify", "regress"):
            for suffix, where in (("", ""), ("/versions/{version}", "{version}"),
                                  ("/labels/{label}", "{label}")):
                paths[f"/v1/models/{{name}}{suffix}:{verb}"] = _verb_doc(verb, where)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
