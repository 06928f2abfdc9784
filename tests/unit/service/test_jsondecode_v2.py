"""The JSON decoder's KServe v2 mode (``decode_json(body, ("inputs",), ("data",))``: numeric
``inputs[*].data`` straight to numpy) against orjson, and ``parse_request`` on a JSON body
(that mode) against the same body read through the binary extension's header path (orjson,
the header being the whole body): same arrays, same dtypes, same 400 messages.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.batching.jsondecode import JsonArray, decode_json
from service.errors import InvalidArgument
from service.protocol.v2_binary import NP_DTYPE, parse_request

V2 = (("inputs",), ("data",))
# Values beyond FP16/FP32's range become inf on both paths, each with numpy's warning.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

# Magnitudes below 1e-250 are left to orjson (exponents beyond +-300): not tested here.
floats = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e30,
                   max_value=1e30).map(lambda v: 0.0 if abs(v) < 1e-250 else v)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def v2_decode(body: bytes) -> Any:
    return decode_json(body, *V2)


def plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def array_paths(v: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where the JsonArrays are in a decoded document."""
    if isinstance(v, JsonArray):
        return [path]
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    return [p for k, x in items for p in array_paths(x, (*path, k))]


def assert_like_orjson(got: Any, ref: Any) -> None:
    """``got`` is orjson's ``ref`` with numeric arrays as JsonArrays: integers equal, floats
    equal when flagged exact, else within one float64 unit or so (re-read for FP64)."""
    if isinstance(got, JsonArray):
        assert got.shape == np.shape(ref)
        if got.dtype == np.int64:
            assert got.tolist() == ref
        elif got.exact:
            assert got.tolist() == np.asarray(ref, np.float64).tolist()
        else:
            np.testing.assert_allclose(got, np.asarray(ref, np.float64), rtol=1e-14, atol=0)
            assert orjson.loads(got.source) == ref
    elif isinstance(got, dict):
        assert isinstance(ref, dict) and list(got) == list(ref)
        for k in got:
            assert_like_orjson(got[k], ref[k])
    elif isinstance(got, list):
        assert isinstance(ref, list) and len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert_like_orjson(g, r)
    else:
        assert type(got) is type(ref) and got == ref


# ----------------------------------------------------------------------------- the decoder


@st.composite
def data_values(draw: Any) -> Any:
    """A ``data`` member: mostly rectangular numbers (ints, floats, mixed), sometimes what
    the decoder leaves to orjson (strings, booleans, ragged, empty, scalars, objects)."""
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    n = math.prod(shape)
    numbers = draw(st.sampled_from([st.integers(-(2**62), 2**62), floats,
                                    st.one_of(st.integers(-1000, 1000), floats)]))
    flat = draw(st.lists(numbers, min_size=n, max_size=n))
    rect = np.array(flat, dtype=object).reshape(shape).tolist()
    return draw(st.one_of(
        st.just(rect), st.just(rect), st.just(rect),
        st.lists(st.text(max_size=3), min_size=1, max_size=3),
        st.lists(st.booleans(), min_size=1, max_size=3),
        st.just([[1, 2], [3]]), st.just([]), st.just([1, None]), st.just(3.5),
        st.just({"data": [1, 2]}),
    ))


@st.composite
def v2_docs(draw: Any) -> dict[str, Any]:
    inputs = []
    for i in range(draw(st.integers(1, 3))):
        spec: dict[str, Any] = {"name": f"in{i}", "shape": [2, 3], "datatype": "FP32"}
        if draw(st.booleans()):
            spec["parameters"] = {"data": [1, 2], "content_type": "x"}
        if draw(st.booleans()):
            spec["data"] = draw(data_values())
        items = list(spec.items())
        order = draw(st.permutations(range(len(items))))
        inputs.append(dict(items[k] for k in order))
    doc: dict[str, Any] = {"id": "r\"1\\u", "inputs": inputs,
                           "outputs": [{"name": "o", "parameters": {"binary_data": False}}]}
    if draw(st.booleans()):
        doc["parameters"] = {"signature_name": "s", "data": [1]}
    return doc


@settings(max_examples=150, deadline=None)
@given(doc=v2_docs(), pretty=st.booleans())
def test_v2_mode_matches_orjson(doc: dict[str, Any], pretty: bool) -> None:
    body = json.dumps(doc, indent=2 if pretty else None).encode()
    got = v2_decode(body)
    ref = orjson.loads(body)
    assert_like_orjson(got, ref)
    assert all(len(p) == 3 and p[0] == "inputs" and p[2] == "data" for p in array_paths(got))
    for spec, ref_spec in zip(got["inputs"], ref["inputs"], strict=True):
        data = ref_spec.get("data")
        numeric = (isinstance(data, list) and bool(data) and isinstance(
            np.asarray(data, dtype=object).reshape(-1)[0], int | float)
            and np.asarray(data).dtype.kind in "if")
        assert isinstance(spec.get("data"), JsonArray) == numeric, data
        # only 'data' members: shape and parameters stay orjson's lists
        assert type(spec["shape"]) is list
        if "parameters" in spec:
            assert type(spec["parameters"]["data"]) is list
    if "parameters" in got:
        assert type(got["parameters"]["data"]) is list


@pytest.mark.parametrize("body", [
    b'{"inputs": []}', b'{"inputs": [1, 2]}', b'{"inputs": {"a": [1], "data": [2]}}',
    b'{"data": [1], "inputs": [[1, 2]], "instances": [3]}', b'{"inputs": [1, {"data": [1]}]}',
    b'{"inputs": [{"data": [1]}, 2]}',
    b'{"inputs": [[1], {"data": [1]}]}', b'{"inputs": [{"data": [1]}, [2]]}',
    b'{"inputs": [{"data": {"a": [1]}}]}', b'{"inputs": [{"x": [1], "data": [[1], [2]]}]}',
    b'{"inputs": [ { } , {"data" : [ 1 , 2 ] } ] , "x" : [{"data": [1]}]}',
    b'{"inputs": [{"parameters": {"data": [1]}, "data": [true, 1]}]}',
    b'{"inputs": [{"data": [1]}, {"data": [2.5]}], "inputs": [{"data": [3]}]}',
    b'{"inputs": [{"data": [9999999999999999999, 1]}, {"data": [-9223372036854775808]}]}',
    b'{"inputs": [{"data": [18446744073709551615]}, {"data": [1e-320, 2]}]}',
    b'{"inputs": [{"data": ["\\u00e9", "x"]}, {"data": [false]}], "id": "\\"q\\""}',
])
def test_v2_mode_gives_orjsons_values_for_anything_else(body: bytes) -> None:
    got = v2_decode(body)
    assert plain(got) == orjson.loads(body)
    for path in array_paths(got):  # numbers decoded only as inputs[i].data
        assert len(path) == 3 and path[0] == "inputs" and path[2] == "data", path


@pytest.mark.parametrize("body", [
    b'{"inputs": [{"data": [1]},]}', b'{"inputs": [{"data": [1]}}', b'{"inputs": [{"data": [1]}]',
    b'{"inputs": [{"data": [1] "x": 1}]}', b'{"inputs": [{"data" [1]}]}',
    b'{"inputs": [{"data": [1],}]}', b'{"inputs": [{}, ]}', b'{"inputs": [{"data": [1]}] x}',
    b'{"inputs": [{"a\\q": 1}]}', b'{"inputs": [{"data": [1]} {"data": [2]}]}',
    b'{"inputs": [{"data": [01]}]}', b'{"inputs": [{"data": [1.]}]}',
    b'{"inputs": [{"data": [1]}, {"name": tru}]}', b'{"inputs": [{"data": [1]], "x": 1}',
    b'{"inputs": [{1: [1]}]}', b'{"inputs": [{"data": [1]}]]}', b'{"inputs": [{"\xff": 1}]}',
])
def test_v2_mode_refuses_what_orjson_refuses_with_its_message(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError) as ref:
        orjson.loads(body)
    with pytest.raises(orjson.JSONDecodeError) as got:
        v2_decode(body)
    assert str(got.value) == str(ref.value)


def test_lists_are_opened_only_in_v2_mode() -> None:
    body = b'{"instances": [{"data": [1, 2]}], "inputs": [{"data": [3]}]}'
    assert decode_json(body) == orjson.loads(body)  # v1: row-format objects stay lists
    got = v2_decode(body)
    assert type(got["instances"][0]["data"]) is list
    assert isinstance(got["inputs"][0]["data"], JsonArray)


@pytest.mark.parametrize("number", [b"9999999999999999999", b"-9223372036854775808",
                                    b"9223372036854775807", b"12345678901234567890",
                                    b"999999999999999999", b"-999999999999999999"])
def test_integers_beyond_18_digits_are_orjsons(number: bytes) -> None:
    for body, decode in ((b'{"instances": [%s, 1]}' % number, decode_json),
                         (b'{"inputs": [{"data": [%s, 1]}]}' % number, v2_decode)):
        assert plain(decode(body)) == orjson.loads(body)


# ----------------------------------------------------------------------------- parse_request

NUMERIC = sorted(k for k in NP_DTYPE if k not in ("BYTES", "BOOL"))


def both(body: bytes) -> tuple[Any, Any]:
    """parse_request on the JSON body (fast decoder) and on the same bytes as a binary
    request whose header is the whole body (orjson): each a request or a 400 message."""
    out = []
    for header_length in (None, len(body)):
        try:
            out.append(parse_request(body, header_length))
        except InvalidArgument as exc:
            out.append(exc.message)
    return out[0], out[1]


def assert_same_request(body: bytes) -> Any:
    fast, ref = both(body)
    if isinstance(ref, str):
        assert fast == ref
        return None
    assert not isinstance(fast, str), fast
    assert (fast.id, fast.parameters, fast.outputs, fast.batch_size) == (
        ref.id, ref.parameters, ref.outputs, ref.batch_size)
    assert list(fast.inputs) == list(ref.inputs)
    for name, arr in fast.inputs.items():
        want = ref.inputs[name]
        assert type(arr) is np.ndarray and arr.dtype == want.dtype and arr.shape == want.shape
        assert arr.flags.c_contiguous and arr.flags.writeable
        assert arr.tolist() == want.tolist(), name
    return fast


@st.composite
def typed_data(draw: Any) -> tuple[str, list[int], Any]:
    datatype = draw(st.sampled_from([*NUMERIC, "BOOL", "BYTES"]))
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    n = math.prod(shape)
    dt = NP_DTYPE[datatype]
    if dt.kind in "iu" and draw(st.booleans()):
        info = np.iinfo(dt)
        numbers: Any = st.integers(int(info.min), int(info.max))  # in range: the fast path
    else:
        numbers = draw(st.sampled_from([ints, floats, st.integers(-(2**60), 2**60),
                                        st.integers(-300, 300), st.booleans(), st.text()]))
    flat = draw(st.lists(numbers, min_size=n, max_size=n))
    if draw(st.integers(0, 9)) == 0:  # a shape that does not match the data
        shape = [n + 1]
    data = flat if draw(st.booleans()) else np.array(flat, object).reshape(
        [n] if shape == [n + 1] else shape).tolist()
    return datatype, shape, data


@settings(max_examples=300, deadline=None)
@given(tensors=st.lists(typed_data(), min_size=1, max_size=3), rid=st.booleans())
def test_parse_request_fast_path_equals_orjson_path(
        tensors: list[tuple[str, list[int], Any]], rid: bool) -> None:
    doc: dict[str, Any] = {"inputs": [
        {"name": f"t{i}", "datatype": dt, "shape": shape, "data": data}
        for i, (dt, shape, data) in enumerate(tensors)]}
    if rid:
        doc = {"id": "x", **doc, "outputs": [{"name": "y"}],
               "parameters": {"binary_data_output": True}}
    assert_same_request(orjson.dumps(doc))


@pytest.mark.parametrize("datatype,data", [
    ("FP64", [0.10000000000000000555, 0.3, 1.2345678901234567e-5]),  # > 15 digits: re-read
    ("FP64", [1, 2**53 + 1, -(2**62)]),
    ("FP32", [16777217, 2**60 + 2**36 + 1, 0.1]),  # ints round as Python's int -> float
    ("FP16", [65520.0, 1e-8, 0.1]),
    ("INT64", [-(2**63), 2**63 - 1, 0]), ("UINT64", [2**64 - 1, 0, 1]),
    ("INT8", [-128, 127, 0]), ("INT8", [-129, 0, 0]), ("UINT8", [300, 0, 0]),
    ("UINT32", [-1, 0, 0]), ("INT32", [1.5, 2.0, -1.7]), ("INT16", [1e3, 2, 3]),
    ("BOOL", [1, 0, 1]), ("BOOL", [True, False, True]), ("BYTES", [1, 2, 3]),
    ("BYTES", [1.5, 2, 3]), ("BYTES", ["a", "é", ""]), ("FP32", [1, True, 2]),
])
def test_parse_request_edge_values(datatype: str, data: list[Any]) -> None:
    for d in (data, [data]):
        shape = [len(data)] if d is data else [1, len(data)]
        body = orjson.dumps({"inputs": [{"name": "a", "shape": shape, "datatype": datatype,
                                         "data": d}]})
        assert_same_request(body)


def test_fp64_beyond_15_digits_is_exact_and_fp32_uses_the_fast_path() -> None:
    text = b'[0.10000000000000000555, 0.30000000000000004441, 1.2345678901234567e-5]'
    body = (b'{"inputs": [{"name": "d", "shape": [3], "datatype": "FP64", "data": %s},'
            b' {"name": "f", "shape": [3], "datatype": "FP32", "data": %s}]}' % (text, text))
    data = v2_decode(body)["inputs"][0]["data"]
    assert isinstance(data, JsonArray) and not data.exact
    req = assert_same_request(body)
    assert req.inputs["d"].tolist() == orjson.loads(text)
    assert req.inputs["f"].tolist() == np.array(orjson.loads(text), np.float32).tolist()


def test_malformed_json_message_is_the_same_on_both_paths() -> None:
    for body in (b'{"inputs": [{"name": "a", "data": [1]},]}', b'{"inputs": [{"data": [1]}'):
        fast, ref = both(body)
        assert isinstance(fast, str) and fast == ref and "malformed JSON" in fast


def test_a_bytearray_body_decodes_like_bytes_with_the_same_compiled_scan() -> None:
    """The connection hands its bytearray to the hot routes: same result, and no second
    specialization of the scanner (a writable buffer is another numba type, one that
    ``warm`` would not have compiled)."""
    from service.batching.jsondecode import scan

    body = orjson.dumps({"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32",
                                     "data": [1.5, 2.25, -3.0, 4.125]}]})
    parse_request(body)
    before = len(scan.signatures)
    for b in (bytearray(body), body):
        got = parse_request(b).inputs["a"]
        np.testing.assert_array_equal(got, np.array([[1.5, 2.25], [-3.0, 4.125]], np.float32))
    assert len(scan.signatures) == before
