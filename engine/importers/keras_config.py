"""Reading one Keras layer config: typed option access that reports what it cannot honour.

Every option a converter (``keras_layers``) cannot honour goes to a shared ``Problems`` list
instead of raising, so one load names every unsupported layer and option at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.layers.activations import normalize_activation

__all__ = ["ACTIVATIONS", "Opts", "Problems", "activation_name", "dtype_policy"]

# Keras activation names the engine computes (Keras' leaky_relu slope, 0.2, is the engine's)
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "gelu", "silu", "swish",
               "leaky_relu")


class Problems:
    """Every unsupported layer/option found in one model, reported together."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, layer: str, class_name: str, what: str) -> None:
        self.items.append(f"layer {layer!r} ({class_name}): {what}")

    def __bool__(self) -> bool:
        return bool(self.items)


class Opts:
    """A layer's config with problem reporting bound to that layer."""

    def __init__(self, name: str, class_name: str, config: Mapping[str, Any],
                 problems: Problems, parent: Opts | None = None, what: str = "") -> None:
        self.name, self.class_name, self.config = name, class_name, config
        self._problems = problems
        self._parent, self._what = parent, what
        self.ok = True

    def child(self, config: Mapping[str, Any], what: str) -> Opts:
        """A nested layer's config (a Bidirectional's wrapped LSTM): its problems are this
        layer's, prefixed with ``what``."""
        return Opts(self.name, self.class_name, config, self._problems, self, what)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key, default)
        return default if value is None and default is not None else value

    def bad(self, what: str) -> None:
        self.ok = False
        if self._parent is not None:
            self._parent.bad(f"{self._what}: {what}")
        else:
            self._problems.add(self.name, self.class_name, what)

    def only(self, key: str, allowed: Sequence[Any], default: Any = None) -> Any:
        value = self.get(key, default)
        if value not in allowed:
            self.bad(f"{key}={value!r} is not supported (supported: "
                     f"{', '.join(repr(a) for a in allowed)})")
        return value

    def falsy(self, *keys: str) -> None:
        for key in keys:
            if self.config.get(key):
                self.bad(f"{key}={self.config[key]!r} is not supported")

    def channels_last(self) -> None:
        self.only("data_format", ("channels_last",), "channels_last")

    def activation(self, key: str = "activation") -> str:
        name = activation_name(self.config.get(key))
        if name not in ACTIVATIONS:
            self.bad(f"{key}={name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
            return "linear"
        return normalize_activation(name)


def activation_name(value: Any) -> str:
    """A Keras activation as saved (None, a name, or a serialized function) -> its name."""
    if value is None:
        return "linear"
    if isinstance(value, Mapping):  # Keras 3: {"class_name": "function", "config": "relu"}
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name", "?")
    return str(value).lower()


def dtype_policy(value: Any) -> str | None:
    """The dtype a layer computes in: a name, or a Keras 2/3 policy dict; None if unset."""
    if isinstance(value, Mapping):
        cfg = value.get("config")
        return str(cfg.get("name")) if isinstance(cfg, Mapping) else None
    return None if value is None else str(value)
