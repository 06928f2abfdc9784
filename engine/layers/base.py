"""The pieces every layer shares: symbolic tensors, ``Input``, the seeded weight RNG and
the builder that layers emit engine IR into.

A layer never computes anything itself. Calling it on symbolic tensors records the call and
infers the output type by emitting its nodes into a scratch ``Builder`` (so shapes always
agree with the IR's own shape inference); a ``Model`` later emits every recorded call into
one real graph.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from engine.dtypes import canonical
from engine.errors import EngineError
from engine.ir import Node, TensorType, schema_for

__all__ = [
    "Builder",
    "Input",
    "Layer",
    "SymbolicTensor",
    "glorot_uniform",
    "orthogonal",
    "set_random_seed",
    "uniform",
]

# --- deterministic weight initialization -------------------------------------------------

_RNG: list[np.random.Generator] = [np.random.default_rng(0)]


def set_random_seed(seed: int) -> None:
    """Reset the RNG that initializes new layers' weights (Keras' ``set_random_seed``)."""
    _RNG[0] = np.random.default_rng(int(seed))


def _rng() -> np.random.Generator:
    return _RNG[0]


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    # Keras' rule: the last two axes are (in, out); leading axes are the receptive field.
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape: Sequence[int]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return _rng().uniform(-limit, limit, size=tuple(shape)).astype(np.float32)


def uniform(shape: Sequence[int], low: float = -0.05, high: float = 0.05) -> np.ndarray:
    return _rng().uniform(low, high, size=tuple(shape)).astype(np.float32)


def orthogonal(shape: Sequence[int]) -> np.ndarray:
    """Keras' orthogonal initializer for a 2-D shape (rows or columns orthonormal)."""
    rows, cols = shape
    a = _rng().normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique, as Keras does
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q[:rows, :cols], dtype=np.float32)


# --- the builder -------------------------------------------------------------------------


class Builder:
    """Collects inputs, nodes and constants, inferring each node's output type at once.

    Layers emit inside a scope: ``begin(layer_name, call_name)``. Constants are named
    ``<layer>/<tag>`` (shared by every call of a layer), intermediate values
    ``<call>/<tag>``, and a call's final value is ``out`` (the call name itself).
    """

    def __init__(self) -> None:
        self.inputs: list[tuple[str, TensorType]] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self._layer = ""
        self.out = ""

    def begin(self, layer_name: str, call_name: str) -> None:
        self._layer = layer_name
        self.out = call_name

    def add_input(self, name: str, type_: TensorType) -> str:
        self.inputs.append((name, type_))
        self.types[name] = type_
        return name

    def _fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.types:
            name = f"{base}_{k}"
            k += 1
        return name

    def const(self, tag: str, value: np.ndarray) -> str:
        """A constant named ``<layer>/<tag>``; a second call of the layer reuses it."""
        name = f"{self._layer}/{tag}"
        if name not in self.constants:
            arr = np.ascontiguousarray(value)
            self.constants[name] = arr
            self.types[name] = TensorType(arr.dtype.name, tuple(arr.shape))
        return name

    def op(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        *,
        out: str | None = None,
        tag: str | None = None,
    ) -> str:
        """Append one node; its output is ``out`` or ``<call>/<tag>``. Returns that name."""
        name = out if out is not None else self._fresh(f"{self.out}/{tag or op.lower()}")
        if name in self.types:
            raise EngineError(f"value {name!r} is defined twice")
        schema = schema_for(op)
        attrs = dict(attrs or {})
        resolved = schema.resolve_attrs(attrs, f"{name} ({op})")
        try:
            (t,) = schema.infer([self.types[i] for i in inputs], resolved)
        except (KeyError, TypeError, IndexError) as exc:  # malformed attrs: our bug
            raise ValueError(f"{op} with attrs {attrs}: {exc}") from None
        self.nodes.append(Node.make(op, inputs, [name], attrs, name))
        self.types[name] = t
        return name


# --- symbolic tensors and Input ----------------------------------------------------------

_IDS = itertools.count()


class SymbolicTensor:
    """A placeholder flowing between layers while a model is described (Keras' KerasTensor).

    ``layer`` is None for a model input. ``id`` increases with creation, so sorting the calls
    a model reaches by ``id`` gives a topological order that follows the author's code.
    """

    def __init__(
        self,
        type_: TensorType,
        layer: Layer | None = None,
        inputs: Sequence[SymbolicTensor] = (),
        name: str | None = None,
    ) -> None:
        self.type = type_
        self.layer = layer
        self.inputs = tuple(inputs)
        self.name = name  # model inputs only; fixed by the first model that names it
        self.id = next(_IDS)

    @property
    def shape(self) -> tuple[int | None, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        src = self.layer.name if self.layer is not None else (self.name or "Input")
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype} from {src!r}>"


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"a name must be a non-empty string without '/', got {name!r}")
    return name


def _shape_tuple(shape: int | Sequence[int | None], what: str) -> tuple[int | None, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    for d in dims:
        if d is not None and (not isinstance(d, int | np.integer) or d <= 0):
            raise ValueError(f"{what} must hold positive ints or None, got {tuple(dims)}")
    return tuple(None if d is None else int(d) for d in dims)


def Input(  # noqa: N802  (Keras spells it as a class)
    shape: int | Sequence[int | None],
    batch_size: int | None = None,
    name: str | None = None,
    dtype: str = "float32",
) -> SymbolicTensor:
    """A model input of ``shape`` (without the batch dim, which is None unless given)."""
    dims = _shape_tuple(shape, "Input shape")
    if batch_size is not None:
        batch_size = _shape_tuple((batch_size,), "batch_size")[0]
    return SymbolicTensor(
        TensorType(canonical(dtype), (batch_size, *dims)), None, (), _check_name(name)
    )


# --- layers ------------------------------------------------------------------------------


def _snake(name: str) -> str:
    # Keras' to_snake_case: Conv2D -> conv2d, MultiHeadAttention -> multi_head_attention
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class Layer:
    """Base of every layer: naming, weights in Keras order, and symbolic calls.

    Subclasses implement ``build(in_types)`` (create weights with ``add_weight``) and
    ``emit(b, xs) -> value name``. ``input_shape``/``dtype`` describe the model input a
    ``Sequential`` creates when this layer comes first.
    """

    base_name: ClassVar[str] = ""
    input_dtype: ClassVar[str] = "float32"

    def __init__(
        self,
        name: str | None = None,
        input_shape: Sequence[int | None] | None = None,
        dtype: str | None = None,
    ) -> None:
        self._name = _check_name(name)
        self.input_shape = None if input_shape is None else _shape_tuple(input_shape, "input_shape")
        self.dtype = canonical(dtype) if dtype is not None else self.input_dtype
        self._weights: list[tuple[str, np.ndarray]] = []
        self.built = False
        self.version = 0  # bumped on set_weights, so models know to recompile

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "base_name" not in cls.__dict__:
            cls.base_name = _snake(cls.__name__)

    @property
    def name(self) -> str:
        return self._name or self.base_name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # weights -----------------------------------------------------------------------------

    def add_weight(self, tag: str, value: np.ndarray) -> None:
        self._weights.append((tag, np.asarray(value, dtype=np.float32)))

    def weight(self, tag: str) -> np.ndarray:
        for t, arr in self._weights:
            if t == tag:
                return arr
        raise KeyError(f"layer {self.name!r} has no weight {tag!r}")

    @property
    def weight_names(self) -> list[str]:
        return [f"{self.name}/{t}" for t, _ in self._weights]

    def get_weights(self) -> list[np.ndarray]:
        return [arr.copy() for _, arr in self._weights]

    def check_weights(self, weights: Sequence[Any]) -> list[np.ndarray]:
        """``weights`` as float32 arrays, or ValueError naming this layer and the mismatch."""
        if len(weights) != len(self._weights):
            have = [t for t, _ in self._weights]
            raise ValueError(
                f"layer {self.name!r} expects {len(self._weights)} weight array(s) {have}, "
                f"got {len(weights)}"
            )
        out = []
        for i, ((tag, old), new) in enumerate(zip(self._weights, weights, strict=True)):
            arr = np.asarray(new)
            if arr.shape != old.shape:
                raise ValueError(
                    f"layer {self.name!r} weight {i} ({tag!r}) expects shape {old.shape}, "
                    f"got {arr.shape}"
                )
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"layer {self.name!r} weight {i} ({tag!r}) is not numeric")
            out.append(np.array(arr, dtype=np.float32))
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        arrays = self.check_weights(weights)
        self._weights = [(t, a) for (t, _), a in zip(self._weights, arrays, strict=True)]
        self.version += 1

    def count_params(self) -> int:
        return sum(int(a.size) for _, a in self._weights)

    # subclass hooks ----------------------------------------------------------------------

    def build(self, in_types: Sequence[TensorType]) -> None:
        """Create the weights for inputs of these types (called on the first call)."""

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        raise NotImplementedError

    def call_inputs(self, *args: Any, **kwargs: Any) -> list[Any]:
        """The call's arguments as a flat list of inputs (one tensor, or a list of them)."""
        kwargs.pop("training", None)
        kwargs.pop("mask", None)
        if kwargs or len(args) != 1:
            raise TypeError(f"layer {self.name!r} takes one input (a tensor or a list)")
        (x,) = args
        return list(x) if isinstance(x, list | tuple) else [x]

    def check_arity(self, n: int) -> None:
        if n != 1:
            raise ValueError(f"layer {self.name!r} takes one input, got {n}")

    # calling -----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> SymbolicTensor:
        xs = self.call_inputs(*args, **kwargs)
        for x in xs:
            if not isinstance(x, SymbolicTensor):
                raise TypeError(
                    f"layer {self.name!r} must be called on Input() or another layer's output, "
                    f"got {type(x).__name__}"
                )
        self.check_arity(len(xs))
        types = [x.type for x in xs]
        try:
            if not self.built:
                self.build(types)
                self.built = True
            out_type = self.infer(types)
        except EngineError as exc:
            raise ValueError(f"layer {self.name!r} on inputs {[t.shape for t in types]}: "
                             f"{exc}") from None
        return SymbolicTensor(out_type, self, xs)

    def infer(self, types: Sequence[TensorType]) -> TensorType:
        """The output type, by emitting this layer into a scratch builder."""
        b = Builder()
        names = [b.add_input(f"in{i}", t) for i, t in enumerate(types)]
        b.begin(self.name, "out")
        return b.types[self.emit(b, names)]
