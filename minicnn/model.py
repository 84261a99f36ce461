"""Models: ``Sequential`` (named layers in order) and ``Residual`` (y = x + body(x)).

Names nest with dots, as in PyTorch: a ``Sequential`` called ``features`` holding a
layer ``0`` gives ``features.0``; its weight is ``features.0.weight`` in the state dict.
(Children, parameters, state dicts, modes, dtype and device: ``minicnn.container``.)

What Grad-CAM needs from a model, and where it is:

    y = model.forward(x, keep=("conv3",), stop_at="conv3")   # model.activations["conv3"] is A
    dA = model.backward(dy, stop_at="conv3", need_dw=False)   # dy/dA, nothing below conv3
    y2 = model.forward_from("conv3", A2)                      # the logits for another A
    model.backward(dy, keep=("bn1",))    # model.output_gradients["bn1"]: dy/d(bn1's output)

(``stop_at`` is optional: the layers up to conv3 then keep no cache, since this backward
never reaches them.)

``backward`` walks the layers in reverse and returns as soon as it holds the gradient
at the output of ``stop_at``; ``need_dw=False`` skips every weight gradient and
``relu_rule`` ("standard", "deconvnet", "guided") changes only how ReLUs pass
gradients back, for this call, without touching the model.

A model carries what it takes to feed it a photo and to read its output: ``class_names``,
``input_size`` ((H, W) or None) and ``preprocess`` (a ``minicnn.preprocess.Preprocess`` or
None). ``save`` writes them into the weight file's metadata; ``minicnn.load`` reads them back.
"""

from __future__ import annotations

import numpy as np

from . import io, kernels, tiers
from . import layers as L
from .backend import device_of
from .container import Container
from .functional import RELU_RULES
from .im2col import pair
from .kernels.elementwise import batchnorm2d_eval_
from .preprocess import Preprocess


class _Record:
    """What one forward pass remembers: the outputs asked for, every output's shape, and the
    inputs of the residual blocks named in ``residual_blocks`` (for ``forward_from``)."""

    def __init__(self, keep, stop_at=None, residual_blocks=()):
        self.keep = set(keep)
        self.activations, self.shapes = {}, {}
        self.residual_blocks, self.residual_inputs = set(residual_blocks), {}
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


def _eval_tail(layers, i, prefix, rec):
    """How many layers after ``layers[i]`` a cache-free forward runs fused with it, in place on
    its output (``kernels.batchnorm2d_eval_``): 1 (an eval-mode BatchNorm2d after a Conv2d),
    2 (and a ReLU/ReLU6 after that), or 0.

    NOTE: only on the kernel tier, only while no cache is kept, and only where the outputs it
    overwrites are asked for by no one (``keep``, ``stop_at``): the conv's output, and the batch
    norm's when a ReLU follows. The values are bitwise those of the separate layers.
    """
    if rec.caching or tiers.active() is not kernels or i + 1 >= len(layers):
        return 0
    (conv_name, conv), (bn_name, bn) = layers[i], layers[i + 1]
    if type(conv) is not L.Conv2d or type(bn) is not L.BatchNorm2d or bn.training:
        return 0
    asked = rec.keep | {rec.stop_at}
    if prefix + conv_name in asked:
        return 0
    if prefix + bn_name in asked or i + 2 >= len(layers):
        return 1
    return 2 if type(layers[i + 2][1]) in (L.ReLU, L.ReLU6) else 1


def _run_eval_tail(layers, i, tail, z, prefix, rec):
    """Record the conv ``layers[i]``'s output z, then run its ``tail`` (``_eval_tail``) on z in
    place, recording each layer's output as its own forward would; returns the last one."""
    rec.add(prefix + layers[i][0], z)
    (bn_name, bn), act = layers[i + 1], (layers[i + 2][1] if tail == 2 else None)
    b = bn.buffers
    batchnorm2d_eval_(
        z, bn.params["weight"], bn.params["bias"], b["running_mean"], b["running_var"], bn.eps,
        upper=getattr(act, "upper", None), relu=act is not None)
    for name, layer in layers[i + 1:i + 1 + tail]:
        layer.cache = None  # as ``infer`` leaves it
        rec.add(prefix + name, z)
    return z


class Sequential(Container):
    """Named layers applied in order. See the module docstring for forward/backward options."""

    def __init__(self, layers, class_names=None, input_size=None, preprocess=None):
        super().__init__(layers)
        self.class_names, self.input_size, self.preprocess = class_names, input_size, preprocess
        self.activations, self.shapes, self.residual_inputs = {}, {}, {}
        self.output_gradients = {}

    # ----------------------------------------------------------------- metadata
    @property
    def class_names(self):
        """The name of each output class (a list of str), or None."""
        return self._class_names

    @class_names.setter
    def class_names(self, names):
        if names is not None:
            if isinstance(names, (str, bytes, dict)) or \
                    not all(isinstance(n, str) for n in names):
                raise TypeError(f"class_names must be a list of str or None, got {names!r:.80}")
            names = list(names)
        self._class_names = names

    @property
    def input_size(self):
        """(H, W) of the input the model was trained at, or None (unknown)."""
        return self._input_size

    @input_size.setter
    def input_size(self, size):
        self._input_size = None if size is None else pair(size, "input_size")

    @property
    def preprocess(self):
        """The ``Preprocess`` that turns a photo into this model's input, or None (unknown)."""
        return self._preprocess

    @preprocess.setter
    def preprocess(self, prep):
        if prep is not None and not isinstance(prep, Preprocess):
            raise TypeError(f"preprocess must be a minicnn.preprocess.Preprocess or None, "
                            f"got {type(prep).__name__}")
        self._preprocess = prep

    # ----------------------------------------------------------------- forward
    def forward(self, x, keep=(), stop_at=None):
        """Run the network. Outputs of the layers named in ``keep`` go to ``self.activations``;
        every layer's output shape goes to ``self.shapes`` (cheap, and tells which are spatial).

        ``stop_at``: the name of the layer a following backward will stop at (the same
        ``stop_at`` as ``backward``'s). The layers that run up to and including it keep no
        cache (nothing below it is differentiated), which saves their memory and, for ReLU
        and max-pool, some work. ``None`` (the default) caches every layer.

        ``self.residual_inputs`` gets the input of every ``Residual`` block that encloses a
        layer named in ``keep`` or ``stop_at`` (what ``forward_from`` needs there), and no other.
        """
        keep = (keep,) if isinstance(keep, str) else tuple(keep)
        asked = keep + ((stop_at,) if stop_at is not None else ())
        kinds = dict(self.named_layers())
        unknown = [k for k in asked if k not in kinds]
        if unknown:
            raise KeyError(f"unknown layer {unknown[0]!r}; layers are: {', '.join(kinds)}")
        x = self._check_input(x)
        rec = _Record(keep, stop_at, {b for n in asked for b in _enclosing_residuals(n, kinds)})
        out = self._forward(x, "", rec)
        self.activations, self.shapes = rec.activations, rec.shapes
        self.residual_inputs = rec.residual_inputs
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

    def _forward(self, x, prefix, rec, start=0):
        """Run the layers from index ``start`` on; ``prefix`` names this container ("a.b.")."""
        layers, i = self.layers[start:], 0
        while i < len(layers):
            name, layer = layers[i]
            full = prefix + name
            if isinstance(layer, Container):
                x = layer._forward(x, full + ".", rec)
            else:
                tail = _eval_tail(layers, i, prefix, rec)
                try:
                    x = layer.forward(x) if rec.caching else layer.infer(x)
                    if tail and x.ndim == 4 and x.dtype.kind == "f" \
                            and x.shape[1] == layers[i + 1][1].num_features:
                        x, i = _run_eval_tail(layers, i, tail, x, prefix, rec), i + tail + 1
                        continue
                except ValueError as e:
                    raise ValueError(f"layer {full!r}: {e}") from None
            rec.add(full, x)
            i += 1
        return x

    def __call__(self, x, keep=(), stop_at=None):
        return self.forward(x, keep, stop_at)

    def forward_from(self, layer, A, skips=None):
        """The model's output computed from ``A``, the output of ``layer``: run what follows it.

        y = f_after(A), where for a layer inside a residual block the block's output is
        skip + body(...), skip being the block's input: ``skips[block]``, or when ``skips``
        is None the input recorded by the last ``forward(x, keep=[layer])``.

        The layers after ``layer`` run their normal, caching forward in the model's current
        mode (eval/train), so ``backward(dy, stop_at=layer)`` can follow. NOTE: the layers
        before ``layer`` keep their caches from the last forward, which this A did not come
        from; a backward past ``layer`` is meaningless after this call. ``activations``,
        ``shapes`` and ``residual_inputs`` keep what the last ``forward`` recorded.

        Parameters
        ----------
        layer : a name ``named_layers()`` lists (a layer, a container, a layer nested in blocks)
        A : (N, ...) array shaped like ``layer``'s output (cast to the model's dtype)
        skips : dict residual-block name -> that block's input (N or 1, ...); a batch of 1
            broadcasts against N (many altered copies of one image's A). None: the inputs
            recorded by the last forward (``self.residual_inputs``).
        Returns
        -------
        y : what ``forward`` returns (the logits); ``A`` itself when ``layer`` is the last layer
        """
        kinds = dict(self.named_layers())
        if layer not in kinds:
            raise KeyError(f"unknown layer {layer!r}; layers are: {', '.join(kinds)}")
        if skips is not None:
            blocks = [n for n, m in kinds.items() if isinstance(m, Residual)]
            strange = [k for k in skips if k not in blocks]
            if strange:
                raise KeyError(f"skips names {strange[0]!r}, which is not a residual block; "
                               f"residual blocks are: {', '.join(blocks)}")
        x = self._check_input(A)
        parts = layer.split(".")
        chain, node = [], self  # (container, its dotted name, index of the next name in it)
        for i, part in enumerate(parts):
            idx = [n for n, _ in node.layers].index(part)
            chain.append((node, ".".join(parts[:i]), idx))
            node = node.layers[idx][1]
        rec = _Record(())
        for container, name, idx in reversed(chain):  # innermost container first
            # NOTE: Sequential._forward, not a Residual's own: its skip is added here, from skips
            x = Sequential._forward(container, x, name + "." if name else "", rec, start=idx + 1)
            if isinstance(container, Residual):
                x = _skip(name, layer, self.residual_inputs if skips is None else skips, x) + x
        return x

    # ----------------------------------------------------------------- backward
    def backward(self, dout, stop_at=None, need_dw=True, relu_rule="standard", need_dx=True,
                 keep=()):
        """Backpropagate ``dout`` (the gradient at the output, e.g. dL/dlogits).

        Parameters
        ----------
        dout : (N, classes) or whatever the last layer outputs
        stop_at : name of a layer; return the gradient at ITS OUTPUT and go no further
        need_dw : compute parameter gradients (False: skip every dw product)
        relu_rule : "standard", "deconvnet" or "guided", for every ReLU/ReLU6 in this call
        need_dx : compute the gradient at the input (False saves the first layer's dx)
        keep : names of layers whose OUTPUT gradient goes to ``self.output_gradients``
            (name -> array; FullGrad's bias-gradients), as ``forward``'s keep fills activations
        Returns
        -------
        the gradient at the input (or at ``stop_at``'s output); None if need_dx=False
        """
        if relu_rule not in RELU_RULES:
            raise ValueError(f"unknown relu_rule {relu_rule!r}; use one of {RELU_RULES}")
        keep = (keep,) if isinstance(keep, str) else tuple(keep)
        for name in ((stop_at,) if stop_at is not None else ()) + keep:
            if name not in self.layer_names():
                raise KeyError(f"unknown layer {name!r}; layers are: "
                               f"{', '.join(self.layer_names())}")
        self.output_gradients = {}
        opts = dict(stop_at=stop_at, need_dw=need_dw, relu_rule=relu_rule, keep=set(keep),
                    kept=self.output_gradients)
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
            if full in opts["keep"]:
                opts["kept"][full] = dout  # dout is the gradient at this layer's output
            if full == opts["stop_at"]:
                return dout, True
            first = skip_dx and idx == 0
            if isinstance(layer, Container):
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
        io.save_arrays(path, self.state_dict(), self.file_meta())

    def file_meta(self):
        """The JSON ``save`` writes beside the arrays, which ``minicnn.load`` reads back:

        {"format": "minicnn", "version": 1, "architecture": model.config(),
         "class_names": [...] | None, "dtype": "float32" | "float64" | None,
         "input_size": [H, W] | None, "preprocess": Preprocess.to_json() | None}
        """
        return {"format": io.FORMAT, "version": io.VERSION, "architecture": self.config(),
                "class_names": self.class_names,
                "dtype": str(self.dtype) if self.state_dict() else None,
                "input_size": None if self.input_size is None else list(self.input_size),
                "preprocess": None if self.preprocess is None else self.preprocess.to_json()}




class Residual(Sequential):
    """Residual block: y = x + body(x). Backward sums the two paths: dx = dy + d body/dx^T dy.

    The body's layers are named directly under the block (``blocks.3.expand``), and the
    body must keep the input's shape.
    """

    def __init__(self, layers):
        super().__init__(layers)

    def _forward(self, x, prefix, rec, start=0):
        if prefix[:-1] in rec.residual_blocks:
            rec.residual_inputs[prefix[:-1]] = x
        out = super()._forward(x, prefix, rec, start)
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


def _enclosing_residuals(name, kinds):
    """Names of the Residual blocks that strictly enclose layer ``name`` ("a.b" for "a.b.c")."""
    parts = name.split(".")
    prefixes = (".".join(parts[:i]) for i in range(1, len(parts)))
    return [p for p in prefixes if isinstance(kinds[p], Residual)]


def _skip(block, layer, skips, x):
    """The input of residual ``block`` from ``skips``, checked against the body's output x."""
    if block not in skips:
        raise ValueError(f"forward_from({layer!r}) needs the input of the residual block "
                         f"{block!r} that encloses it: run forward(x, keep=[{layer!r}]) first, "
                         f"or pass skips={{{block!r}: that input}}")
    skip = skips[block]
    if skip.ndim != x.ndim or skip.shape[1:] != x.shape[1:] or skip.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"skip of residual block {block!r} has shape {tuple(skip.shape)}; "
                         f"its body gives {tuple(x.shape)} (a batch of 1 broadcasts)")
    return skip.astype(x.dtype, copy=False)


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
