"""numbaserve's engine: load a saved model and run it on the CPU with numba kernels."""

from engine import _threads  # noqa: F401, I001  (must run before numpy and numba load)
from engine import dtypes, errors
from engine.ir import Graph, Node, TensorType
from engine.loader import compile_graph, load, save
from engine.model import DEFAULT_SIGNATURE, Model, Signature, TensorSpec
from engine.quantize import convert
from engine.warm import warm

__all__ = [
    "DEFAULT_SIGNATURE",
    "Graph",
    "Model",
    "Node",
    "Signature",
    "TensorSpec",
    "TensorType",
    "compile_graph",
    "convert",
    "dtypes",
    "errors",
    "load",
    "save",
    "warm",
]

__version__ = "0.1.0"
