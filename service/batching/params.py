"""TF Serving's ``BatchingParameters``: the defaults, the text-format file, the flags.

The file is what ``--batching_parameters_file`` names in TF Serving, e.g.::

    max_batch_size { value: 8192 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 16 }
    num_batch_threads { value: 1 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: 32
    enable_large_batch_splitting { value: true }
    max_execution_batch_size { value: 32 }
    pad_variable_length_inputs: false

Wrapped values (``{ value: N }``) and plain ones (``max_batch_size: 512``) are both accepted.
Precedence: built-in defaults < the file < flags/env given explicitly (``Settings``).

Meaning (as TF's, see docs/batching.md): with ``enable_large_batch_splitting`` the engine runs
batches of at most ``max_execution_batch_size`` rows and ``max_batch_size`` is the largest
request accepted (a bigger one is split across batches); without it ``max_batch_size`` is both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from service.config import ConfigError, Settings, _Field, _Parser, _scalar

__all__ = [
    "BatchingParameters",
    "load_batching_parameters_file",
    "params_from_settings",
    "parse_batching_parameters",
]

_INT_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
               "num_batch_threads", "max_execution_batch_size")
_BOOL_FIELDS = ("pad_variable_length_inputs", "enable_large_batch_splitting")
# TF fields that mean nothing here; accepted so TF files load unchanged.
_IGNORED = frozenset(("thread_pool_name", "mixed_priority_batching_policy"))


def _default_threads() -> int:
    # Each batch already uses every core (numba's intra-op threads): more concurrent batches
    # only help once there are enough cores for two teams.
    return 1 if (os.cpu_count() or 1) < 8 else 2


@dataclass(frozen=True)
class BatchingParameters:
    """One model server's batching knobs (TF Serving names; defaults chosen for this engine)."""

    max_batch_size: int = 8192
    batch_timeout_micros: int = 0  # 0: a batch closes as soon as a thread is free for it
    max_enqueued_batches: int = 16
    num_batch_threads: int = field(default_factory=_default_threads)
    # None: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32 ... up to the execution limit: the engine builds a
    # plan (and buffers) per batch size, so a bounded set; padding is at most a third of a
    # batch. (): any size, no padding (TF's default).
    allowed_batch_sizes: tuple[int, ...] | None = None
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = True
    max_execution_batch_size: int = 32

    @property
    def execution_limit(self) -> int:
        """The most rows one engine call runs."""
        if self.enable_large_batch_splitting:
            return self.max_execution_batch_size
        return self.max_batch_size

    @property
    def queue_capacity(self) -> int:
        """Rows a model's queue holds before refusing (``max_enqueued_batches`` full batches)."""
        return self.max_enqueued_batches * self.execution_limit

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The allowed batch sizes in force (``allowed_batch_sizes`` resolved)."""
        if self.allowed_batch_sizes is not None:
            return self.allowed_batch_sizes
        limit = self.execution_limit
        sizes = {1} | {m << i for i in range(limit.bit_length()) for m in (2, 3)}
        return (*sorted(s for s in sizes if s < limit), limit)

    def validate(self) -> BatchingParameters:
        """Raise ConfigError for values TF Serving would refuse; return self."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads",
                     "max_execution_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"batching parameter {name} must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ConfigError("batching parameter batch_timeout_micros must be >= 0")
        if (self.enable_large_batch_splitting
                and self.max_execution_batch_size > self.max_batch_size):
            raise ConfigError("max_execution_batch_size must not exceed max_batch_size")
        sizes = self.batch_sizes
        if sizes:
            if any(s < 1 for s in sizes) or list(sizes) != sorted(set(sizes)):
                raise ConfigError(
                    f"allowed_batch_sizes must be positive and increasing, got {list(sizes)}")
            if sizes[-1] != self.execution_limit:
                which = ("max_execution_batch_size" if self.enable_large_batch_splitting
                         else "max_batch_size")
                raise ConfigError(
                    f"the last of allowed_batch_sizes ({sizes[-1]}) must equal {which} "
                    f"({self.execution_limit})")
        return self

    def padded_size(self, rows: int) -> int:
        """``rows`` rounded up to the next allowed batch size (``rows`` if none is set)."""
        for s in self.batch_sizes:
            if s >= rows:
                return s
        return rows

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["allowed_batch_sizes"] = list(self.batch_sizes)
        return doc


def _wrapped(f: _Field, kind: str, source: str) -> Any:
    """``name: v`` or TF's wrapper message ``name { value: v }``."""
    name, v, tok = f
    if isinstance(v, list):
        if len(v) != 1 or v[0][0] != "value":
            raise ConfigError(f"field {name!r} must be a value or {{ value: ... }}", tok.line,
                              tok.col, source)
        f = v[0]
    if kind == "bool":
        word = str(_scalar(f, "ident", source)).lower()
        if word not in ("true", "false", "1", "0"):
            raise ConfigError(f"field {name!r} must be true or false, got {word!r}", tok.line,
                              tok.col, source)
        return word in ("true", "1")
    return _scalar(f, "int", source) if f[1].kind == "number" else _bad_int(f, source)


def _bad_int(f: _Field, source: str) -> Any:
    name, v, _ = f
    raise ConfigError(f"field {name!r} must be an integer, got {v.text!r}", v.line, v.col,
                      source)


def parse_batching_parameters(text: str, *, source: str = "",
                              base: BatchingParameters | None = None) -> BatchingParameters:
    """A TF Serving batching parameters file (text format) over ``base`` (the defaults)."""
    values: dict[str, Any] = {}
    sizes: list[int] = []
    seen: set[str] = set()
    for f in _Parser(text, source).message(None):
        name, _, tok = f
        if name in _IGNORED:
            continue
        if name != "allowed_batch_sizes" and name in seen:
            raise ConfigError(f"field {name!r} given twice", tok.line, tok.col, source)
        seen.add(name)
        if name in _INT_FIELDS:
            values[name] = _wrapped(f, "int", source)
        elif name in _BOOL_FIELDS:
            values[name] = _wrapped(f, "bool", source)
        elif name == "allowed_batch_sizes":
            sizes.append(_wrapped(f, "int", source))
        else:
            raise ConfigError(f"unknown batching parameter {name!r}", tok.line, tok.col, source)
    if "allowed_batch_sizes" in seen:
        values["allowed_batch_sizes"] = tuple(sizes)
    params = replace(base or BatchingParameters(), **values)
    try:
        return params.validate()
    except ConfigError as exc:
        raise ConfigError(str(exc), source=source) from None


def load_batching_parameters_file(path: str | os.PathLike[str],
                                  base: BatchingParameters | None = None) -> BatchingParameters:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read batching parameters file: {exc.strerror or exc}",
                          source=str(p)) from None
    return parse_batching_parameters(text, source=str(p), base=base)


def _sizes(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ConfigError(
                f"--allowed_batch_sizes must be comma-separated integers, got {value!r}"
            ) from None
    return tuple(int(v) for v in value)


def params_from_settings(settings: Settings) -> BatchingParameters:
    """Defaults, then ``--batching_parameters_file``, then flags/env given explicitly.

    ``--enable_batching=false`` keeps the same queue, threads and limits but runs every
    request alone (a batch is never more than one request).
    """
    params = BatchingParameters()
    if settings.batching_parameters_file:
        params = load_batching_parameters_file(settings.batching_parameters_file, params)
    values: dict[str, Any] = {}
    for name in (*_INT_FIELDS, *_BOOL_FIELDS):
        value = getattr(settings, name, None)
        if value is not None:
            values[name] = value
    if settings.allowed_batch_sizes is not None:
        values["allowed_batch_sizes"] = _sizes(settings.allowed_batch_sizes)
    return replace(params, **values).validate()
