"""The immutable IR: graph, op schemas and verification."""

from engine.ir import schemas as _schemas  # noqa: F401  (fills the schema table)
from engine.ir.graph import Dim, Graph, Node, Shape, TensorType, freeze_attrs
from engine.ir.schema import SCHEMAS, OpSchema, schema_for
from engine.ir.verify import infer_types, node_label, verify

__all__ = [
    "Dim",
    "Graph",
    "Node",
    "OpSchema",
    "SCHEMAS",
    "Shape",
    "TensorType",
    "freeze_attrs",
    "infer_types",
    "node_label",
    "schema_for",
    "verify",
]
