"""Where a Keras file keeps each layer's weights, in the order the layer created them.

Keras 3 (``model.weights.h5`` inside a ``.keras`` zip) files a model's layers under
``layers/<snake_case class name>[_<k>]`` in the order of the model's layer list, never under
their names; each layer's own variables are ``vars/0, 1, ...`` and a sub-object's (an LSTM's
cell) sit in a child group. Legacy ``.h5`` files list each layer's weights by path in the
``weight_names`` attribute of ``model_weights/<layer name>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["LegacyWeights", "V3Weights", "Weights"]

LayerList = Sequence[tuple[str, str]]  # (class name, layer name) of every layer of a model


class Weights(Protocol):
    def arrays(self, layers: LayerList, index: int) -> list[np.ndarray]:
        """The weights of ``layers[index]``, in Keras' order."""

    def nested(self, layers: LayerList, index: int) -> Weights:
        """The weights of the model nested as ``layers[index]``."""


def _snake(name: str) -> str:
    # keras.src.utils.naming.to_snake_case
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class V3Weights:
    def __init__(self, group: Any) -> None:
        self.group = group

    def _layer_group(self, layers: LayerList, index: int) -> Any:
        used: dict[str, int] = {}
        key = ""
        for class_name, _ in layers[: index + 1]:
            base = _snake(class_name)
            if base in used:
                used[base] += 1
                key = f"{base}_{used[base]}"
            else:
                used[base] = 0
                key = base
        return self.group.get(f"layers/{key}")

    def arrays(self, layers: LayerList, index: int) -> list[np.ndarray]:
        group = self._layer_group(layers, index)
        return [] if group is None else _collect(group)

    def nested(self, layers: LayerList, index: int) -> Weights:
        group = self._layer_group(layers, index)
        return V3Weights(group if group is not None else {})


# MultiHeadAttention's and Bidirectional's sub-layers, in the order the layer lists its weights
_CHILD_ORDER = {"query_dense": 0, "key_dense": 1, "value_dense": 2, "output_dense": 3,
                "forward_layer": 0, "backward_layer": 1}


def _collect(group: Any) -> list[np.ndarray]:
    """A layer's own ``vars/<i>`` in index order, then its sub-objects' (an LSTM's ``cell``)."""
    out = []
    own = group.get("vars")
    if own is not None:
        out += [np.asarray(own[k]) for k in sorted(own.keys(), key=int)]
    children = sorted((k for k in group.keys() if k not in ("vars", "layers")),
                      key=lambda k: (_CHILD_ORDER.get(k, len(_CHILD_ORDER)), k))
    for child in children:
        if hasattr(group[child], "keys"):
            out += _collect(group[child])
    return out


def _names(group: Any) -> list[str]:
    raw = group.attrs.get("weight_names", [])
    return [n.decode() if isinstance(n, bytes) else str(n) for n in raw]


class LegacyWeights:
    """``model_weights``; in a nested model, the weights whose path names the sub-layer."""

    def __init__(self, group: Any, within: tuple[Any, list[str]] | None = None) -> None:
        self.group = group
        self.within = within  # (the nested model's group, its weight names)

    def _named(self, name: str) -> list[np.ndarray]:
        if self.within is None:
            if name not in self.group:
                return []
            group = self.group[name]
            return [np.asarray(group[n]) for n in _names(group)]
        group, names = self.within
        return [np.asarray(group[n]) for n in names if name in n.split("/")[:-1]]

    def arrays(self, layers: LayerList, index: int) -> list[np.ndarray]:
        return self._named(layers[index][1])

    def nested(self, layers: LayerList, index: int) -> Weights:
        name = layers[index][1]
        if self.within is None:
            group = self.group[name] if name in self.group else self.group
            return LegacyWeights(self.group, (group, _names(group)))
        group, names = self.within
        return LegacyWeights(self.group, (group, [n for n in names if name in n.split("/")]))
