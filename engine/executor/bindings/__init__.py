"""Every op's kernel binding, one module per family; ``load_all()`` fills ``BINDINGS``."""

from __future__ import annotations

import importlib

__all__ = ["FAMILIES", "load_all"]

FAMILIES = ("conv", "elementwise", "linalg", "normalization", "recurrent", "reduce", "shape",
            "quant",
            "quant_hybrid",
            "quant_hybrid_conv",
            "elementwise_binary",
            "shape_dynamic",
            "tensor")


def load_all() -> None:
    for family in FAMILIES:
        importlib.import_module(f"engine.executor.bindings.{family}")
