"""The engine's error hierarchy: one base class, one subclass per kind of failure."""

from __future__ import annotations

__all__ = [
    "EngineError",
    "ModelFormatError",
    "ChecksumError",
    "UnsupportedOpError",
    "GraphError",
    "ShapeError",
    "DTypeError",
    "InputError",
]


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ModelFormatError(EngineError):
    """A saved model on disk is missing, unreadable or malformed."""


class ChecksumError(ModelFormatError):
    """The weights file does not match the sha256 recorded in model.json."""


class UnsupportedOpError(EngineError):
    """The graph names an op (or an attribute value) the engine does not implement."""


class GraphError(EngineError):
    """The graph is structurally invalid: undefined values, cycles, bad arity."""


class ShapeError(EngineError):
    """A tensor's shape does not fit what an op or signature expects."""


class DTypeError(EngineError):
    """A tensor's dtype does not fit what an op or signature expects."""


class InputError(EngineError):
    """A request's feeds do not match the signature (missing or unknown input)."""
