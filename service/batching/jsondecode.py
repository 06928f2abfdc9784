"""JSON request bodies with the tensors decoded straight from the bytes into numpy.

``orjson.loads`` of one 32x32x3 image builds 3,072 Python floats and 1,057 lists, and
``np.asarray`` then walks them again: together ~280 us of the ~450 us a request costs the
event loop (docs/benchmarks.md). ``decode_json`` instead scans the top-level object once
(numba, no GIL needed, no Python objects), parses the numeric arrays under ``tensor_keys``
(and the members of an object under them; or, for KServe v2, the ``member_keys`` of each
object in a list under them: ``inputs[*].data``) directly into one flat buffer, and hands
every other value to ``orjson.loads`` on its own slice of the body.

Result: the same dict orjson would give, except that those rectangular numeric arrays are
``JsonArray``s (an ndarray subclass: int64 when every number is an integer literal, else
float64) that ``service.inference.as_array`` casts to the signature's dtype as it would cast
the lists. Anything unusual (not an object at the top, empty or ragged arrays, strings or
booleans inside, more than 8 dimensions, numbers out of range) is left to orjson: the fast
path returns either exactly orjson's structure or raises orjson's own error.

Precision: a decimal with at most 15 significant digits and an exponent within +-22 (how
float32 values print) is converted exactly as orjson does; longer ones may differ from
orjson's float64 by one unit in the last place — below float32's resolution; an array
that holds such numbers is flagged (``JsonArray.exact``) and re-read by orjson when the
signature asks for float64.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any

import numba
import numpy as np
import orjson

import engine  # noqa: F401 - sets numba's cache directory before anything compiles
from service.batching.jsonarray import MAX_DIMS, parse_array

__all__ = ["JsonArray", "decode_json", "warm"]

log = logging.getLogger("numbaserve.json")



class JsonArray(np.ndarray):
    """A numeric JSON array decoded without Python floats; ``exact`` as described above,
    ``source`` the array's JSON text (for an exact re-read)."""

    exact: bool = True
    source: bytes | memoryview = b""


@numba.njit(cache=True, nogil=True)
def _skip_ws(buf: np.ndarray, i: int, n: int) -> int:
    while i < n:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            return i
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _skip_string(buf: np.ndarray, i: int, n: int) -> int:
    """``buf[i]`` is '"': the index after the closing quote, or -1."""
    i += 1
    while i < n:
        c = buf[i]
        if c == 34:
            return i + 1
        if c == 92:
            i += 2
            continue
        if c < 32:
            return -1
        i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _skip_value(buf: np.ndarray, i: int, n: int) -> int:
    """The index after the JSON value starting at ``i`` (brackets balanced, strings
    skipped; the value's own syntax is left to orjson), or -1."""
    c = buf[i]
    if c == 34:
        return _skip_string(buf, i, n)
    if c == 91 or c == 123:
        depth = 0
        while i < n:
            c = buf[i]
            if c == 34:
                i = _skip_string(buf, i, n)
                if i < 0:
                    return -1
                continue
            if c == 91 or c == 123:
                depth += 1
            elif c == 93 or c == 125:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    # a scalar: up to the next delimiter
    while i < n:
        c = buf[i]
        if c == 44 or c == 125 or c == 93 or c == 32 or c == 10 or c == 13 or c == 9:
            return i
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _is_wanted(buf: np.ndarray, k0: int, k1: int, wanted: np.ndarray,
               woff: np.ndarray) -> bool:
    """Whether the key string buf[k0:k1] (quotes included) is one of ``wanted``."""
    length = k1 - k0 - 2
    for w in range(woff.shape[0] - 1):
        a, b = woff[w], woff[w + 1]
        if b - a != length:
            continue
        same = True
        for j in range(length):
            if buf[k0 + 1 + j] != wanted[a + j]:
                same = False
                break
        if same:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _tensor_key(buf: np.ndarray, k0: int, k1: int, ctype: int, wanted: np.ndarray,
                woff: np.ndarray, members: np.ndarray, moff: np.ndarray) -> bool:
    """Whether the value under this key, in a container of type ``ctype``, is looked at
    (for a tensor or a container): at the top (0) under a key of ``wanted``, in an object
    under such a key (2) under any key, in an object in a list there (4) under a key of
    ``members``."""
    if ctype == 2:
        return True
    if ctype == 0:
        return _is_wanted(buf, k0, k1, wanted, woff)
    return _is_wanted(buf, k0, k1, members, moff)


@numba.njit(cache=True, nogil=True)
def scan(buf: np.ndarray, n: int, wanted: np.ndarray, woff: np.ndarray, members: np.ndarray,
         moff: np.ndarray, rows: np.ndarray, tensors: np.ndarray, fout: np.ndarray,
         iout: np.ndarray) -> int:
    """One pass over a top-level object. ``rows[r]`` = (key start, key end, value start,
    value end, kind, tensor index, parent row): kind 0 a value for orjson, 1 a tensor
    (``tensors[t]`` its meta), 2 an object, 3 a list of objects (its elements are kind-2
    rows without a key: key start = -1). Members of a container follow it as rows with it
    as parent. With ``members`` empty (v1), a wanted key's array is a tensor and its
    object a container whose arrays are tensors. Otherwise (v2) only a wanted key's list
    that starts with an object is opened: each element must be an object (else -1), and
    the arrays under its ``members`` keys are tensors. Returns the row count, -1 (not a
    plain object, or not as described: orjson's job) or -2 (``rows``/``tensors`` too
    small)."""
    nrows = 0
    ntens = 0
    off = 0
    lists = moff.shape[0] > 1
    if n == 0 or buf[n - 1] != 125 and buf[n - 1] not in (32, 9, 10, 13):
        return -1  # an object ends with '}' (+ whitespace): number loops need no bounds check
    i = _skip_ws(buf, 0, n)
    if i >= n or buf[i] != 123:
        return -1
    # the open containers: row and type (0 the top object, 2 an object under a wanted key,
    # 3 a list under a wanted key, 4 an object in that list)
    srow = np.full(3, -1, np.int64)
    stype = np.zeros(3, np.int64)
    d = 0
    i = _skip_ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return 0 if _skip_ws(buf, i + 1, n) == n else -1
    while i < n:
        ctype = stype[d]
        k0 = -1
        k1 = -1
        if ctype != 3:
            if buf[i] != 34:
                return -1
            k0 = i
            i = _skip_string(buf, i, n)
            if i < 0:
                return -1
            k1 = i
            i = _skip_ws(buf, i, n)
            if i >= n or buf[i] != 58:
                return -1
            i = _skip_ws(buf, i + 1, n)
            if i >= n:
                return -1
        if nrows >= rows.shape[0] or ntens >= tensors.shape[0]:
            return -2
        v0 = i
        kind = 0
        tindex = -1
        c = buf[i]
        if ctype == 3:
            if c != 123:
                return -1
            kind = 2
        elif _tensor_key(buf, k0, k1, ctype, wanted, woff, members, moff):
            if ctype == 0 and lists:
                if c == 91:
                    j = _skip_ws(buf, i + 1, n)
                    if j < n and buf[j] == 123:
                        kind = 3
            elif c == 91:
                e = parse_array(buf, i, n, fout, iout, off, tensors[ntens])
                if e > 0:
                    kind = 1
                    tindex = ntens
                    off += tensors[ntens, 1]
                    ntens += 1
                    i = e
            elif c == 123 and ctype == 0:
                kind = 2
        if kind == 0:
            i = _skip_value(buf, i, n)
            if i < 0 or i == v0:
                return -1
        r = nrows
        rows[r, 0] = k0
        rows[r, 1] = k1
        rows[r, 2] = v0
        rows[r, 3] = i
        rows[r, 4] = kind
        rows[r, 5] = tindex
        rows[r, 6] = srow[d]
        nrows += 1
        if kind >= 2:  # descend: its members are the next rows
            d += 1
            srow[d] = r
            stype[d] = kind if ctype != 3 else 4
            i = _skip_ws(buf, i + 1, n)
            if kind == 3 or buf[i] != 125:  # (a list starts with '{': checked above)
                continue
        else:
            i = _skip_ws(buf, i, n)
        # after a member: ',' or the end of the current container (maybe several)
        while True:
            if i >= n:
                return -1
            if buf[i] == 44:
                i = _skip_ws(buf, i + 1, n)
                break
            if buf[i] != (93 if stype[d] == 3 else 125):
                return -1
            if d == 0:
                return nrows if _skip_ws(buf, i + 1, n) == n else -1
            rows[srow[d], 3] = i + 1  # the container ends here
            d -= 1
            i = _skip_ws(buf, i + 1, n)
    return -1


_WANTED_CACHE: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}


def _wanted(keys: Collection[str]) -> tuple[np.ndarray, np.ndarray]:
    key = tuple(keys)
    got = _WANTED_CACHE.get(key)
    if got is None:
        raw = [k.encode("utf-8") for k in key]
        offs = np.zeros(len(raw) + 1, np.int64)
        offs[1:] = np.cumsum([len(r) for r in raw])
        got = _WANTED_CACHE[key] = (np.frombuffer(b"".join(raw) or b"\0", np.uint8), offs)
    return got


_local = threading.local()
_KEEP = 1 << 21  # scratch kept per thread between requests, in values (16 MiB)


def _scratch(n: int) -> np.ndarray:
    """A float64 buffer of >= n values, reused by this thread's next decode (the tensors
    are copied out of it: a request holds only its own numbers, whatever the body size)."""
    buf: np.ndarray | None = getattr(_local, "buf", None)
    if buf is None or buf.shape[0] < n:
        buf = np.empty(max(n, 4096), np.float64)
        if n <= _KEEP:
            _local.buf = buf
    return buf


def _tensor(store: np.ndarray, meta: Any, body: bytes | bytearray, v0: int,
            v1: int) -> JsonArray:
    off, count, is_int, exact, ndim = (int(v) for v in meta[:5])
    flat = store.view(np.int64) if is_int else store
    arr = flat[off:off + count].reshape(tuple(int(d) for d in meta[5:5 + ndim]))
    out = arr.copy().view(JsonArray)
    out.exact = bool(exact)
    if not exact:  # a view: float32 inputs never read it, and it would be a 60 KB copy
        out.source = memoryview(body)[v0:v1]
    return out


def decode_json(body: bytes | bytearray, tensor_keys: Collection[str] = ("instances", "inputs"),
                member_keys: Collection[str] = ()) -> Any:
    """``orjson.loads(body)``, with the numeric arrays under ``tensor_keys`` (directly, or
    as members of an object there) as JsonArrays; with ``member_keys``, instead those under
    these keys in the objects of a list under ``tensor_keys``, and only those (KServe v2's
    ``{"inputs": [{"data": [...], ...}, ...]}``).

    Raises ``orjson.JSONDecodeError`` for malformed JSON, as orjson does.
    """
    # read-only whatever the body: a bytearray's writable view would be another numba type
    # (a compile on the first request, and one `warm` does not make)
    buf = np.frombuffer(memoryview(body).toreadonly(), np.uint8)
    wanted, woff = _wanted(tensor_keys)
    members, moff = _wanted(member_keys)
    store = _scratch(len(body) // 2 + 1)
    rows = np.empty((32, 7), np.int64)
    tensors = np.empty((32, 5 + MAX_DIMS), np.int64)
    while True:
        m = scan(buf, len(body), wanted, woff, members, moff, rows, tensors, store,
                 store.view(np.int64))
        if m != -2:
            break
        rows = np.empty((rows.shape[0] * 8, 7), np.int64)
        tensors = np.empty((tensors.shape[0] * 8, 5 + MAX_DIMS), np.int64)
    if m < 0:
        return orjson.loads(body)
    try:
        doc: dict[str, Any] = {}
        nested: dict[int, Any] = {}
        for r, (k0, k1, v0, v1, kind, t, parent) in enumerate(rows[:m].tolist()):
            if kind == 1:
                value: Any = _tensor(store, tensors[t], body, v0, v1)
            elif kind == 2:
                value = nested[r] = {}
            elif kind == 3:
                value = nested[r] = []
            else:
                value = orjson.loads(body[v0:v1])
            if k0 < 0:  # an element of a list
                nested[parent].append(value)
            else:
                (doc if parent < 0 else nested[parent])[orjson.loads(body[k0:k1])] = value
    except orjson.JSONDecodeError:
        return orjson.loads(body)  # a member orjson refuses: it reports on the whole body
    return doc


def warm() -> None:
    """Compile (or load from numba's cache) the scanner: call once before serving. Never
    raises: without it the first request compiles instead."""
    try:
        decode_json(b'{"instances": [[1, 2.5], [3e1, -4]], "inputs": {"a": [0]}, "x": "y"}')
    except Exception:
        log.exception("could not warm up the JSON decoder")
