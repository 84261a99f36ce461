"""Containers: ``Sequential`` (named layers in order) and ``Residual`` (y = x + body(x)).

Names nest with dots, as in PyTorch: a ``Sequential`` called ``features`` holding a
layer ``0`` gives ``features.0``; its weight is ``features.0.weight`` in the state dict.

What Grad-CAM needs from a model, and where it is:

    y = model.forward(x, keep=("conv3",), stop_at="conv3")   # model.activations["conv3"] is A
    dA = model.backward(dy, stop_at="conv3", need_dw=False)   # dy/dA, nothing below conv3

(``stop_at`` is optional: the layers up to conv3 then keep no cache, since this backward
never reaches them.)

``backward`` walks the layers in reverse and returns as soon as it holds the gradient
at the output of ``stop_at``; ``need_dw=False`` skips every weight gradient and
``relu_rule`` ("standard", "deconvnet", "guided") changes only how ReLUs pass
gradients back, for this call, without touching the model.
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from .backend import device_of, get_xp, normalize_device, to_numpy
from .functional import RELU_RULES


class _Record:
    """What one forward pass remembers: the outputs asked for, and every output's shape."""

    def __init__(self, keep, stop_at=None):
        self.keep = set(keep)
        self.activations, self.shapes = {}, {}
        # NOTE: until ``stop_at``'s output is recorded, no backward will reach the layers
        # that run, so they use the cache-free ``Layer.infer``; after it, the normal forward.
        self.caching = stop_at is None
        self.stop_at = stop_at

    def add(self, name, out):
        self.shapes[name] = tuple(out.shape)
        if name in self.keep:
            self.activations[name] = out
        if name == self.stop_at:
            self.caching = True


class _Container(L.Layer):
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
            if not isinstance(layer, L.Layer):
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
            if isinstance(layer, _Container):
                out += layer.named_layers(full + ".")
        return out

    def __getitem__(self, name):
        for full, layer in self.named_layers():
            if full == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names())}")

    def layer_names(self):
        return [n for n, _ in self.named_layers()]

    def _leaves(self):
        return [(n, lay) for n, lay in self.named_layers() if not isinstance(lay, _Container)]

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

        Raises KeyError for missing or unexpected keys and ValueError for a wrong shape or a
        non-floating dtype, naming the layer; floating arrays are cast to the model's dtype
        and moved to its device. Nothing is changed unless every entry is valid.
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
        self.training = mode
        for _, lay in self.named_layers():
            lay.training = mode
        return self

    def eval(self):
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
        from .backend import asarray

        dev = normalize_device(device)
        self._map_arrays(lambda a: asarray(a, dev))
        return self

    @property
    def dtype(self):
        arrays = list(self.state_dict().values())
        return arrays[0].dtype if arrays else np.dtype("float32")

    @property
    def device(self):
        arrays = list(self.state_dict().values())
        return device_of(arrays[0]) if arrays else "numpy"

    def config(self):
        return {"type": type(self).__name__,
                "layers": [[name, lay.config()] for name, lay in self.layers]}

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, lay in self.layers:
            body = repr(lay).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines + [")"])


class Sequential(_Container):
    """Named layers applied in order. See the module docstring for forward/backward options."""

    def __init__(self, layers, class_names=None):
        super().__init__(layers)
        self.class_names = list(class_names) if class_names is not None else None
        self.activations, self.shapes = {}, {}

    # ----------------------------------------------------------------- forward
    def forward(self, x, keep=(), stop_at=None):
        """Run the network. Outputs of the layers named in ``keep`` go to ``self.activations``;
        every layer's output shape goes to ``self.shapes`` (cheap, and tells which are spatial).

        ``stop_at``: the name of the layer a following backward will stop at (the same
        ``stop_at`` as ``backward``'s). The layers that run up to and including it keep no cache (nothing
        below it is differentiated), which saves their memory and, for ReLU and max-pool,
        some work. ``None`` (the default) caches every layer.
        """
        keep = (keep,) if isinstance(keep, str) else tuple(keep)
        names = set(self.layer_names())
        unknown = [k for k in keep + ((stop_at,) if stop_at is not None else ()) if k not in names]
        if unknown:
            raise KeyError(f"unknown layer {unknown[0]!r}; layers are: {', '.join(self.layer_names())}")
        x = self._check_input(x)
        rec = _Record(keep, stop_at)
        out = self._forward(x, "", rec)
        self.activations, self.shapes = rec.activations, rec.shapes
        return out

    def _check_input(self, x):
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            x = np.asarray(x)
        if np.dtype(x.dtype).kind not in "fiu" or np.dtype(x.dtype).kind == "b":
            raise TypeError(f"input must be a numeric array, got dtype {x.dtype}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"input must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
        params = list(self.state_dict().values())
        if params:
            if device_of(x) != device_of(params[0]):
                raise ValueError(f"input is on {device_of(x)!r} but the model is on "
                                 f"{device_of(params[0])!r}; move it with minicnn.asarray(x, device)")
            if x.dtype != params[0].dtype:
                x = x.astype(params[0].dtype)
        return x

    def _forward(self, x, prefix, rec):
        for name, layer in self.layers:
            full = prefix + name
            if isinstance(layer, _Container):
                x = layer._forward(x, full + ".", rec)
            else:
                try:
                    x = layer.forward(x) if rec.caching else layer.infer(x)
                except ValueError as e:
                    raise ValueError(f"layer {full!r}: {e}") from None
            rec.add(full, x)
        return x

    def __call__(self, x, keep=(), stop_at=None):
        return self.forward(x, keep, stop_at)

    # ----------------------------------------------------------------- backward
    def backward(self, dout, stop_at=None, need_dw=True, relu_rule="standard", need_dx=True):
        """Backpropagate ``dout`` (the gradient at the output, e.g. dL/dlogits).

        Parameters
        ----------
        dout : (N, classes) or whatever the last layer outputs
        stop_at : name of a layer; return the gradient at ITS OUTPUT and go no further
        need_dw : compute parameter gradients (False: skip every dw product)
        relu_rule : "standard", "deconvnet" or "guided", for every ReLU/ReLU6 in this call
        need_dx : compute the gradient at the input (False saves the first layer's dx)
        Returns
        -------
        the gradient at the input (or at ``stop_at``'s output); None if need_dx=False
        """
        if relu_rule not in RELU_RULES:
            raise ValueError(f"unknown relu_rule {relu_rule!r}; use one of {RELU_RULES}")
        if stop_at is not None and stop_at not in self.layer_names():
            raise KeyError(f"unknown layer {stop_at!r}; layers are: {', '.join(self.layer_names())}")
        opts = dict(stop_at=stop_at, need_dw=need_dw, relu_rule=relu_rule)
        if need_dw:
            # NOTE: clear every layer first, so layers below ``stop_at`` hold no stale gradients
            # that an optimiser could apply; need_dw=False (explanations) leaves them alone.
            for _, lay in self._leaves():
                lay.grads = {}
        grad, _ = self._backward(dout, "", opts, skip_dx=not need_dx)
        return grad

    def _backward(self, dout, prefix, opts, skip_dx=False):
        """Returns (gradient, stopped). ``skip_dx``: this container's first layer needs no dx."""
        for idx in range(len(self.layers) - 1, -1, -1):
            name, layer = self.layers[idx]
            full = prefix + name
            if full == opts["stop_at"]:
                return dout, True
            first = skip_dx and idx == 0
            if isinstance(layer, _Container):
                dout, stopped = layer._backward(dout, full + ".", opts, skip_dx=first)
                if stopped:
                    return dout, True
            else:
                dout = layer.backward(dout, need_dw=opts["need_dw"],
                                      relu_rule=opts["relu_rule"], need_dx=not first)
        return dout, False

    # ----------------------------------------------------------------- files
    def save(self, path):
        """Write weights + architecture to ``path`` (.npz, atomic); see ``minicnn.load``."""
        from . import io

        io.save(self, path)

    def config(self):
        cfg = super().config()
        return cfg


class Residual(Sequential):
    """Residual block: y = x + body(x). Backward sums the two paths: dx = dy + d body/dx^T dy.

    The body's layers are named directly under the block (``blocks.3.expand``), and the
    body must keep the input's shape.
    """

    def __init__(self, layers):
        super().__init__(layers)

    def _forward(self, x, prefix, rec):
        out = super()._forward(x, prefix, rec)
        if out.shape != x.shape:
            raise ValueError(f"residual block {prefix[:-1]!r}: body maps {x.shape} to {out.shape}; "
                             "a residual needs equal shapes")
        return x + out

    def _backward(self, dout, prefix, opts, skip_dx=False):
        dbody, stopped = super()._backward(dout, prefix, opts, skip_dx=skip_dx)
        if stopped:
            return dbody, True
        if skip_dx:
            return None, False
        return dout + dbody, False


CONTAINER_TYPES = {"Sequential": Sequential, "Residual": Residual}


def from_config(cfg):
    """Build a model (fresh weights) from ``model.config()``'s dict."""
    kind = cfg.get("type")
    if kind in CONTAINER_TYPES:
        layers = [(name, from_config(sub)) for name, sub in cfg["layers"]]
        return CONTAINER_TYPES[kind](layers)
    if kind not in L.LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r} in architecture")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}
    return L.LAYER_TYPES[kind](**kwargs)
