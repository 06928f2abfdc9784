"""Helpers shared by the schema modules."""

from __future__ import annotations

from engine.errors import ShapeError, UnsupportedOpError

ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise UnsupportedOpError(f"activation {name!r} is not supported; supported: {ACTIVATIONS}")


def expect_rank(what: str, shape: tuple[int | None, ...], rank: int) -> None:
    if len(shape) != rank:
        raise ShapeError(f"{what} must have rank {rank}, got shape {shape}")


def same_dim(what: str, a: int | None, b: int | None) -> None:
    if a is not None and b is not None and a != b:
        raise ShapeError(f"{what}: {a} != {b}")
