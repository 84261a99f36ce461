"""``layer.weight`` and ``layer.bias``: parameters as read/write properties, as in PyTorch.

    W = model["fc"].weight            # the live array: model["fc"].weight[...] = 0 edits it
    model["fc"].weight = W2           # checked, cast to the layer's dtype, copied, on its device

Without them, ``model["fc"].weight = W2`` would quietly create an unused attribute and the
forward would keep the old weights.
"""

from __future__ import annotations

import numpy as np

from .backend import get_xp, to_numpy


class ParameterProperty:
    """``layer.weight`` / ``layer.bias``: read and write ``layer.params[name]`` (PyTorch habits).

    Reading gives the live array (``layer.weight[...] = 0`` edits the layer in place). Writing
    checks the value and stores a COPY of it, cast to the layer's dtype (a float64 array set
    on a float32 layer becomes float32) and moved to the layer's device; the layer never
    aliases the caller's array. Refused: a non-array (TypeError), a wrong shape or a
    non-floating dtype (ValueError), a layer without that parameter (AttributeError).
    A layer with a weight but no bias (``bias=False``) reads its bias as None, as PyTorch.
    """

    def __init__(self, name):
        self.name = name

    def _missing(self, layer):
        kind = type(layer).__name__
        if self.name == "bias" and "weight" in layer.params:
            return AttributeError(f"{kind} was built with bias=False: it has no bias to set")
        return AttributeError(f"{kind} has no {self.name}")

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        value = layer.params.get(self.name)
        if value is None and not (self.name == "bias" and "weight" in layer.params):
            raise self._missing(layer)
        return value

    def __set__(self, layer, value):
        old = layer.params.get(self.name)
        kind = type(layer).__name__
        if old is None:
            raise self._missing(layer)
        if not isinstance(value, (np.ndarray, get_xp(old).ndarray, get_xp(value).ndarray)):
            raise TypeError(f"{kind}.{self.name} must be an array, got {type(value).__name__}")
        if tuple(value.shape) != tuple(old.shape):
            raise ValueError(f"{kind}.{self.name} has shape {tuple(old.shape)}; "
                             f"got an array of shape {tuple(value.shape)}")
        if np.dtype(value.dtype).kind != "f":
            raise ValueError(f"{kind}.{self.name} must be floating point, got dtype {value.dtype}")
        xp = get_xp(old)
        host = value if xp is not np else to_numpy(value)  # NOTE: to the layer's device
        layer.params[self.name] = xp.array(host, dtype=old.dtype, copy=True)
