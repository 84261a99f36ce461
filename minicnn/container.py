"""What every container of layers has: named children, parameters, state dicts, modes, dtype
and device. ``minicnn.model`` builds ``Sequential`` and ``Residual`` on it (how they run).

Names nest with dots, as in PyTorch: a container called ``features`` holding a layer ``0``
gives ``features.0``; its weight is ``features.0.weight`` in the state dict.
"""

from __future__ import annotations

import numpy as np

from .backend import asarray, device_of, get_xp, normalize_device, to_numpy
from .layers import Layer


class Container(Layer):
    """Shared machinery of Sequential and Residual: children, names, parameters, modes."""

    def __init__(self, layers):
        super().__init__()
        if isinstance(layers, dict):
            layers = list(layers.items())
        self.layers = []
        seen = set()
        for item in layers:
            try:
                name, layer = item
            except (TypeError, ValueError):
                raise TypeError("layers must be (name, layer) pairs") from None
            name = str(name)
            if not name or "." in name or name in seen:
                raise ValueError(f"layer names must be unique, non-empty and dot-free: {name!r}")
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} is a {type(layer).__name__}, not a minicnn layer")
            seen.add(name)
            self.layers.append((name, layer))

    # ----------------------------------------------------------------- naming
    def named_layers(self, prefix=""):
        """All layers, depth first, as (dotted name, layer); a container comes before its children."""
        out = []
        for name, layer in self.layers:
            full = prefix + name
            out.append((full, layer))
            if isinstance(layer, Container):
                out += layer.named_layers(full + ".")
        return out

    def __getitem__(self, name):
        for full, layer in self.named_layers():
            if full == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names())}")

    def layer_names(self):
        """The dotted names of every layer, containers included, in ``named_layers`` order."""
        return [n for n, _ in self.named_layers()]

    def _leaves(self):
        return [(n, lay) for n, lay in self.named_layers() if not isinstance(lay, Container)]

    # ----------------------------------------------------------------- parameters and state
    def named_parameters(self):
        """(key, live parameter array, its gradient from the last backward or None)."""
        return [(f"{n}.{k}", p, lay.grads.get(k))
                for n, lay in self._leaves() for k, p in lay.params.items()]

    def state_dict(self):
        """Parameters and buffers by PyTorch-style key ("conv1.weight", "bn1.running_mean").

        The arrays are the model's own (no copy), as PyTorch's state_dict is.
        """
        d = {}
        for n, lay in self._leaves():
            for k, v in list(lay.params.items()) + list(lay.buffers.items()):
                d[f"{n}.{k}"] = v
        return d

    def grad_dict(self):
        """Parameter gradients of the last backward, keyed like ``state_dict``."""
        return {key: g for key, _, g in self.named_parameters() if g is not None}

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the model, checking every key, shape and dtype first.

        Raises KeyError for missing or unexpected keys, TypeError for a value that is not an
        array (NumPy or CuPy; a list is refused, not guessed at) and ValueError for a wrong
        shape or a non-floating dtype, naming the layer; floating arrays are cast to the
        model's dtype and moved to its device. Nothing is changed unless every entry is valid.
        """
        slots = {}
        for n, lay in self._leaves():
            for store in (lay.params, lay.buffers):
                for k, v in store.items():
                    slots[f"{n}.{k}"] = (store, k, v, n)
        missing = sorted(set(slots) - set(state))
        unexpected = sorted(set(state) - set(slots))
        if strict and (missing or unexpected):
            raise KeyError(f"state dict does not match the model: missing {missing[:8]}"
                           f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                           f"{'...' if len(unexpected) > 8 else ''}")
        staged = []
        for key, (store, k, old, lname) in slots.items():
            if key not in state:
                continue
            new = state[key]
            if not isinstance(new, np.ndarray) and get_xp(new) is np:
                raise TypeError(f"layer {lname!r}: {key} is a {type(new).__name__}, not an "
                                "array; load_state_dict takes NumPy or CuPy arrays")
            if tuple(new.shape) != tuple(old.shape):
                raise ValueError(f"layer {lname!r}: {key} has shape {tuple(new.shape)}, "
                                 f"the model expects {tuple(old.shape)}")
            if np.dtype(new.dtype).kind != "f":
                raise ValueError(f"layer {lname!r}: {key} has dtype {new.dtype}, expected floating point")
            staged.append((store, k, new, old))
        for store, k, new, old in staged:
            xp = get_xp(old)
            store[k] = xp.array(to_numpy(new) if xp is np else new, dtype=old.dtype, copy=True)
        return self

    # ----------------------------------------------------------------- modes, dtype, device
    def train(self, mode=True):
        """Training mode on every layer (dropout on, batch norm on batch statistics); False: eval."""
        self.training = mode
        for _, lay in self.named_layers():
            lay.training = mode
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def _map_arrays(self, fn):
        for _, lay in self._leaves():
            for store in (lay.params, lay.buffers):
                for k in store:
                    store[k] = fn(store[k])
            lay.grads, lay.cache = {}, None

    def astype(self, dtype):
        """Cast every parameter and buffer (e.g. "float64" for gradient checks)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"model dtype must be floating point, got {dtype}")
        self._map_arrays(lambda a: a.astype(dtype))
        return self

    def to(self, device):
        """Move parameters and buffers to "numpy" (host) or "cupy" (GPU)."""
        dev = normalize_device(device)
        self._map_arrays(lambda a: asarray(a, dev))
        return self

    @property
    def dtype(self):
        """The dtype of the model's arrays (the first in ``state_dict``; float32 if none)."""
        arrays = list(self.state_dict().values())
        return arrays[0].dtype if arrays else np.dtype("float32")

    @property
    def device(self):
        """Where the model's arrays live: "numpy" or "cupy" ("numpy" if it has none)."""
        arrays = list(self.state_dict().values())
        return device_of(arrays[0]) if arrays else "numpy"

    def config(self):
        """The architecture as JSON-able data, what ``minicnn.load`` rebuilds the model from."""
        return {"type": type(self).__name__,
                "layers": [[name, lay.config()] for name, lay in self.layers]}

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, lay in self.layers:
            body = repr(lay).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines + [")"])
