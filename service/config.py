"""Server settings (TF Serving's flag names, env ``NUMBASERVE_*``) and the model config file.

The model config file is TF Serving's ``--model_config_file``: a text-format protobuf
``ModelServerConfig`` holding ``model_config_list { config { ... } ... }``. It is parsed here
by a small tokenizer + recursive-descent reader (no protobuf dependency); fields the server
does not use are accepted and ignored, unknown fields are errors (as protobuf's parser does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "Settings",
    "VersionPolicy",
    "ModelConfig",
    "ConfigError",
    "parse_model_config_list",
    "load_model_config_file",
    "config_from_settings",
]

MiB = 1 << 20


class Settings(BaseSettings):
    """Every server flag; names and defaults follow TF Serving's ``tensorflow_model_server``."""

    model_config = SettingsConfigDict(env_prefix="NUMBASERVE_", extra="ignore")

    rest_api_port: int = 8501
    rest_api_host: str = "127.0.0.1"  # the Docker image passes 0.0.0.0
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = 1.0  # <= 0: scan once at start, never poll
    model_config_file_poll_wait_seconds: float = 0.0  # 0: never re-read the config file
    allow_version_labels_for_unavailable_models: bool = False
    enable_batching: bool = True  # TF's default is false; here batching is on (docs/batching.md)
    batching_parameters_file: str | None = None
    # TF's BatchingParameters as flags (unset: the file's value, else the default in
    # service/batching/params.py); allowed_batch_sizes is comma-separated, "" for any size.
    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: str | None = None
    pad_variable_length_inputs: bool | None = None
    enable_large_batch_splitting: bool | None = None
    max_execution_batch_size: int | None = None
    # Requests of one model queued or running at once; more are refused with 503 (0: only
    # the batch queue's bound applies).
    max_in_flight_requests_per_model: int = 0
    # Threads one engine call may use (numba, BLAS); 0: the cores left after the event
    # loop's, shared by the batch threads (1 on a 2-core machine).
    intra_op_threads: int = 0
    # Connections + requests uvicorn serves at once; beyond it new ones get 503 at once, so
    # memory stays bounded however many clients connect (0: no limit).
    max_concurrent_connections: int = 1024
    rest_api_timeout_in_ms: int = 5000
    admin_token: str | None = None
    max_request_bytes: int = 64 * MiB
    drain_seconds: float = 10.0
    # TF: a failed load is retried this many times, no sooner than the interval apart; a
    # version whose files change is retried at the next poll whatever these say.
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    num_load_threads: int = 2


@dataclass(frozen=True)
class VersionPolicy:
    """TF's ``model_version_policy``: ``latest { num_versions }``, ``all {}``, ``specific``."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "latest":
            return {"latest": {"num_versions": self.num_versions}}
        if self.kind == "all":
            return {"all": {}}
        return {"specific": {"versions": list(self.versions)}}


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its versions live, which of them to serve, and labels."""

    name: str
    base_path: str
    model_platform: str = "numbaserve"
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_path": self.base_path,
            "model_platform": self.model_platform,
            "model_version_policy": self.version_policy.to_json(),
            "version_labels": dict(self.version_labels),
        }


class ConfigError(ValueError):
    """A malformed model config file; the message names the file, line and column."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source: str = "") -> None:
        where = f"{source or '<config>'}:{line}:{column}: " if line else (
            f"{source}: " if source else "")
        super().__init__(where + message)
        self.line = line
        self.column = column
        self.source = source


# ---------------------------------------------------------------------------- tokenizer

_PUNCT = "{}:<>[],;"


@dataclass(frozen=True)
class _Tok:
    kind: Literal["ident", "number", "string", "punct", "eof"]
    text: str
    line: int
    col: int
    value: Any = None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0",
            "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _tokenize(text: str, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, line, col, n = 0, 1, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            i, line, col = i + 1, line + 1, 1
            continue
        if c.isspace():
            i, col = i + 1, col + 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start_col = col
        if c in _PUNCT:
            toks.append(_Tok("punct", c, line, start_col))
            i, col = i + 1, col + 1
            continue
        if c in "\"'":
            j, buf = i + 1, []
            while True:
                if j >= n or text[j] == "\n":
                    raise ConfigError("unterminated string", line, start_col, source)
                ch = text[j]
                if ch == c:
                    break
                if ch == "\\" and j + 1 < n:
                    esc = text[j + 1]
                    buf.append(_ESCAPES.get(esc, esc))
                    j += 2
                    continue
                buf.append(ch)
                j += 1
            col += j + 1 - i
            i = j + 1
            s = "".join(buf)
            prev = toks[-1] if toks else None
            if prev is not None and prev.kind == "string" and prev.line == line:
                # Adjacent string literals concatenate, as in protobuf text format.
                toks[-1] = _Tok("string", prev.text, prev.line, prev.col, prev.value + s)
            else:
                toks.append(_Tok("string", s, line, start_col, s))
            continue
        if c.isalnum() or c in "_-+.":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_-+."):
                j += 1
            word = text[i:j]
            kind: Literal["ident", "number"] = (
                "number" if (word[0].isdigit() or word[0] in "-+.") else "ident")
            toks.append(_Tok(kind, word, line, start_col, word))
            col += j - i
            i = j
            continue
        raise ConfigError(f"unexpected character {c!r}", line, start_col, source)
    toks.append(_Tok("eof", "", line, col))
    return toks


# ---------------------------------------------------------------------------- parser

# A message is a list of (field name, value, token) in file order; value is a scalar token
# or a nested message. Schema checks happen after parsing, with positions kept.
_Field = tuple[str, Any, _Tok]


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.toks = _tokenize(text, source)
        self.pos = 0
        self.source = source

    def error(self, msg: str, tok: _Tok | None = None) -> ConfigError:
        t = tok or self.toks[self.pos]
        return ConfigError(msg, t.line, t.col, self.source)

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def next(self) -> _Tok:
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def message(self, close: str | None) -> list[_Field]:
        fields: list[_Field] = []
        while True:
            t = self.peek()
            if close is None and t.kind == "eof":
                return fields
            if close is not None and t.kind == "punct" and t.text == close:
                self.next()
                return fields
            if t.kind == "eof":
                raise self.error(f"expected {close!r} before end of file", t)
            if t.kind == "punct" and t.text in ",;":
                self.next()
                continue
            if t.kind != "ident":
                raise self.error(f"expected a field name, got {t.text!r}", t)
            name = self.next()
            sep = self.peek()
            if sep.kind == "punct" and sep.text == ":":
                self.next()
                sep = self.peek()
            if sep.kind == "punct" and sep.text in "{<":
                self.next()
                fields.append((name.text, self.message("}" if sep.text == "{" else ">"), name))
            elif sep.kind == "punct" and sep.text == "[":
                self.next()
                while True:
                    v = self.next()
                    if v.kind == "punct" and v.text == "]":
                        break
                    if v.kind == "punct" and v.text == ",":
                        continue
                    if v.kind == "punct" and v.text in "{<":
                        fields.append(
                            (name.text, self.message("}" if v.text == "{" else ">"), name))
                    elif v.kind in ("number", "string", "ident"):
                        fields.append((name.text, v, name))
                    else:
                        raise self.error(f"unexpected {v.text!r} in list", v)
            elif sep.kind in ("number", "string", "ident"):
                if self.toks[self.pos - 1] is name:  # scalars need the colon
                    raise self.error(f"expected ':' after field {name.text!r}", sep)
                fields.append((name.text, self.next(), name))
            else:
                raise self.error(f"expected a value for field {name.text!r}", sep)


def _scalar(f: _Field, kind: str, source: str) -> Any:
    name, v, tok = f
    if isinstance(v, list) or not isinstance(v, _Tok):
        raise ConfigError(f"field {name!r} must be a {kind}, not a message", tok.line, tok.col,
                          source)
    if kind == "string":
        if v.kind != "string":
            raise ConfigError(f"field {name!r} must be a quoted string", v.line, v.col, source)
        return v.value
    if kind == "int":
        try:
            if v.kind != "number":
                raise ValueError
            return int(v.text, 0)
        except ValueError:
            raise ConfigError(f"field {name!r} must be an integer, got {v.text!r}", v.line,
                              v.col, source) from None
    if kind == "ident":
        if v.kind not in ("ident", "string"):
            raise ConfigError(f"field {name!r} must be a name, got {v.text!r}", v.line, v.col,
                              source)
        return v.value
    raise AssertionError(kind)


def _message(f: _Field, source: str) -> list[_Field]:
    name, v, tok = f
    if not isinstance(v, list):
        raise ConfigError(f"field {name!r} must be a message {{ ... }}", tok.line, tok.col,
                          source)
    return v


def _only_once(fields: list[_Field], singular: set[str], where: str, source: str) -> None:
    seen: set[str] = set()
    for name, _, tok in fields:
        if name in singular and name in seen:
            raise ConfigError(f"field {name!r} given twice in {where}", tok.line, tok.col, source)
        seen.add(name)


def _policy(fields: list[_Field], source: str) -> VersionPolicy:
    _only_once(fields, {"latest", "all", "specific"}, "model_version_policy", source)
    if len(fields) != 1:
        tok = fields[1][2] if fields else None
        raise ConfigError("model_version_policy needs exactly one of latest, all, specific",
                          tok.line if tok else 0, tok.col if tok else 0, source)
    name, _, tok = fields[0]
    body = _message(fields[0], source)
    if name == "all":
        if body:
            raise ConfigError("'all' takes no fields", body[0][2].line, body[0][2].col, source)
        return VersionPolicy("all")
    if name == "latest":
        num = 1
        for f in body:
            if f[0] != "num_versions":
                raise ConfigError(f"unknown field {f[0]!r} in latest", f[2].line, f[2].col, source)
            num = _scalar(f, "int", source)
            if num < 1:
                raise ConfigError("num_versions must be >= 1", f[2].line, f[2].col, source)
        return VersionPolicy("latest", num_versions=num)
    if name == "specific":
        versions: list[int] = []
        for f in body:
            if f[0] != "versions":
                raise ConfigError(f"unknown field {f[0]!r} in specific", f[2].line, f[2].col,
                                  source)
            v = _scalar(f, "int", source)
            if v < 1:
                raise ConfigError("versions must be positive", f[2].line, f[2].col, source)
            versions.append(v)
        if not versions:
            raise ConfigError("specific needs at least one 'versions'", tok.line, tok.col, source)
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    raise ConfigError(f"unknown version policy {name!r} (expected latest, all or specific)",
                      tok.line, tok.col, source)


# Fields of TF's ModelConfig that we accept and ignore (logging_config etc.).
_IGNORED_MODEL_FIELDS = {"model_type", "logging_config"}


def _model(fields: list[_Field], base_dir: Path | None, source: str, tok: _Tok) -> ModelConfig:
    _only_once(fields, {"name", "base_path", "model_platform", "model_version_policy"},
               "config", source)
    name: str | None = None
    base_path: str | None = None
    platform = "numbaserve"
    policy = VersionPolicy()
    labels: dict[str, int] = {}
    for f in fields:
        key, _, ftok = f
        if key == "name":
            name = _scalar(f, "string", source)
        elif key == "base_path":
            base_path = _scalar(f, "string", source)
        elif key == "model_platform":
            platform = _scalar(f, "string", source)
        elif key == "model_version_policy":
            policy = _policy(_message(f, source), source)
        elif key == "version_labels":
            entry = _message(f, source)
            _only_once(entry, {"key", "value"}, "version_labels", source)
            kv = {e[0]: e for e in entry}
            if set(kv) != {"key", "value"}:
                raise ConfigError("version_labels needs exactly 'key' and 'value'", ftok.line,
                                  ftok.col, source)
            label = _scalar(kv["key"], "string", source)
            value = _scalar(kv["value"], "int", source)
            if not label:
                raise ConfigError("version label must not be empty", ftok.line, ftok.col, source)
            if label in labels:
                raise ConfigError(f"version label {label!r} given twice", ftok.line, ftok.col,
                                  source)
            if value < 1:
                raise ConfigError("version label value must be positive", ftok.line, ftok.col,
                                  source)
            labels[label] = value
        elif key in _IGNORED_MODEL_FIELDS:
            continue
        else:
            raise ConfigError(f"unknown field {key!r} in config", ftok.line, ftok.col, source)
    if not name:
        raise ConfigError("config needs a non-empty 'name'", tok.line, tok.col, source)
    if not base_path:
        raise ConfigError(f"config {name!r} needs a 'base_path'", tok.line, tok.col, source)
    if base_dir is not None and not os.path.isabs(base_path) and "://" not in base_path:
        base_path = str((base_dir / base_path).resolve())
    return ModelConfig(name, base_path, platform, policy, labels)


def parse_model_config_list(
    text: str, *, base_dir: str | os.PathLike[str] | None = None, source: str = ""
) -> list[ModelConfig]:
    """TF Serving's text-format ``ModelServerConfig`` -> one ModelConfig per ``config``.

    Relative ``base_path``s resolve against ``base_dir`` (the config file's directory) when
    given. Raises ConfigError (a ValueError) naming the line and column of the problem.
    """
    parser = _Parser(text, source)
    top = parser.message(None)
    bdir = Path(base_dir) if base_dir is not None else None
    if not top:
        return []
    configs: list[ModelConfig] = []
    lists = [f for f in top if f[0] == "model_config_list"]
    for key, _, tok in top:
        if key != "model_config_list":
            raise ConfigError(
                f"unknown top-level field {key!r} (expected model_config_list)",
                tok.line, tok.col, source)
    if len(lists) > 1:
        tok = lists[1][2]
        raise ConfigError("model_config_list given twice", tok.line, tok.col, source)
    for f in _message(lists[0], source):
        key, _, tok = f
        if key != "config":
            raise ConfigError(f"unknown field {key!r} in model_config_list", tok.line, tok.col,
                              source)
        configs.append(_model(_message(f, source), bdir, source, tok))
    names: set[str] = set()
    for c, f in zip(configs, _message(lists[0], source), strict=True):
        if c.name in names:
            raise ConfigError(f"model {c.name!r} configured twice", f[2].line, f[2].col, source)
        names.add(c.name)
    return configs


def load_model_config_file(path: str | os.PathLike[str]) -> list[ModelConfig]:
    """Read and parse a model config file; relative base paths resolve next to it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model config file: {exc.strerror or exc}",
                          source=str(p)) from None
    return parse_model_config_list(text, base_dir=p.resolve().parent, source=str(p))


def config_from_settings(settings: Settings) -> list[ModelConfig]:
    """The models to serve: the config file if one is set, else --model_name/--model_base_path.

    Neither set -> no models (the server starts empty, as a management-only server).
    """
    if settings.model_config_file:
        if settings.model_base_path:
            raise ConfigError("give either --model_config_file or --model_base_path, not both")
        return load_model_config_file(settings.model_config_file)
    if settings.model_base_path:
        return [ModelConfig(settings.model_name, str(Path(settings.model_base_path).resolve()))]
    return []
