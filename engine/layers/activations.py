"""Activation names: Keras spellings -> the IR's fused codes or standalone nodes."""

from __future__ import annotations

from engine.layers.base import Builder

__all__ = ["ACTIVATIONS", "emit_activation", "fused_activation", "normalize_activation"]

# Activations the IR fuses into Conv2D/Dense via the ``activation`` attribute.
_FUSABLE = ("linear", "relu", "relu6", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")
# Everything else becomes separate nodes after the layer's main op.
_SEPARATE = ("softmax", "silu")
_ALIASES = {"swish": "silu", "leakyrelu": "leaky_relu"}
ACTIVATIONS = _FUSABLE + _SEPARATE + tuple(_ALIASES)


def normalize_activation(activation: str | None) -> str:
    """Keras activation name (None = linear) -> the canonical name; ValueError if unknown."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str):
        raise ValueError(f"activation must be a name (str), got {activation!r}")
    name = activation.lower()
    name = _ALIASES.get(name, name)
    if name not in _FUSABLE + _SEPARATE:
        raise ValueError(f"unknown activation {activation!r}; supported: {sorted(ACTIVATIONS)}")
    return name


def fused_activation(name: str) -> tuple[str, str]:
    """(what to put in the op's ``activation`` attr, what to emit after it)."""
    return (name, "linear") if name in _FUSABLE else ("linear", name)


_UNARY_OPS = {"relu": "Relu", "relu6": "Relu6", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def emit_activation(b: Builder, x: str, name: str, out: str | None = None) -> str:
    """Emit ``name`` applied to value ``x`` as standalone node(s); returns the result's name."""
    if name == "linear":
        return x
    if name in _UNARY_OPS:
        return b.op(_UNARY_OPS[name], [x], out=out)
    if name == "softmax":
        return b.op("Softmax", [x], {"axis": -1}, out=out)
    if name == "leaky_relu":
        return b.op("LeakyRelu", [x], out=out)
    if name in ("gelu", "gelu_tanh"):
        approx = "tanh" if name == "gelu_tanh" else "none"
        return b.op("Gelu", [x], {"approximate": approx}, out=out)
    if name == "silu":
        s = b.op("Sigmoid", [x], tag="sigmoid")
        return b.op("Mul", [x, s], out=out)
    raise ValueError(f"unknown activation {name!r}")
