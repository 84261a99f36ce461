"""Layers: thin stateful wrappers around the forward/backward pairs of the active tier.

Every layer has ``params`` and ``grads`` (dicts with the same keys, PyTorch's names
``weight``/``bias``), ``buffers`` (state that is saved but not trained, e.g. batch
norm's running statistics), ``training`` and ``cache`` (``None`` until ``forward``).

    out = layer.forward(x)            # stores the cache
    dx  = layer.backward(dout, ...)   # returns dL/dx and OVERWRITES layer.grads

``backward`` takes three keyword options, shared by all layers so a model can pass
them down uniformly: ``need_dw`` (compute parameter gradients or skip them),
``relu_rule`` (only ReLU/ReLU6 read it) and ``need_dx`` (skip the input gradient).
The containers ``Sequential`` and ``Residual`` live in ``minicnn.model``.
"""

from __future__ import annotations

import math

import numpy as np

from .tiers import active as tier
from .backend import get_xp
from .im2col import pair
from .parameters import ParameterProperty


def _rng(rng):
    """An ``np.random.Generator`` from a seed, a Generator or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _uniform(rng, bound, shape, dtype):
    """U(-bound, bound) drawn directly in ``dtype`` (VGG16's 138 M weights: no float64 detour)."""
    dtype = np.dtype(dtype)
    draw_dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    u = _rng(rng).random(shape, dtype=draw_dtype)
    # NOTE: in place, the same ops in the same order: (u * 2 - 1) * bound with temporaries
    # peaked at 3x the largest weight (VGG16's classifier.0 is 411 MB) while building the model.
    u *= 2.0
    u -= 1.0
    u *= bound
    return u.astype(dtype, copy=False)


class Layer:
    """Base class: parameter dicts, train/eval flag, cache check, repr from config.

    ``weight`` and ``bias`` are read/write properties on the layers that own them (Conv2d,
    Linear, BatchNorm2d); see ``ParameterProperty`` for what a write checks, casts and copies.
    """

    weight = ParameterProperty("weight")
    bias = ParameterProperty("bias")

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}
        self.training = True
        self.cache = None

    def forward(self, x):  # pragma: no cover - every subclass overrides
        """The layer's output; keeps in ``cache`` what ``backward`` needs."""
        raise NotImplementedError

    def infer(self, x):
        """The forward's output without a cache, for a layer that no backward will reach
        (``Sequential.forward(x, stop_at=...)``). ``cache`` becomes None, so a backward
        through this layer raises "call forward first" instead of using stale state.

        The default runs ``forward`` and drops the cache; layers override it where skipping
        the cache also skips work (ReLU's mask, max-pool's argmax).
        """
        out = self.forward(x)
        self.cache = None
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        """dL/dx from dL/dout; weight gradients go to ``grads`` (skipped with need_dw=False)."""
        raise NotImplementedError  # pragma: no cover

    def __call__(self, x):
        return self.forward(x)

    def _weighted_backward(self, backward_fn, dout, need_dw, need_dx):
        """Shared by the layers with a weight and an optional bias (Conv2d, Linear):
        ``backward_fn(dout, cache, need_dx, need_dw) -> (dx, dw, db)``, then store dw, db."""
        dx, dw, db = backward_fn(dout, self._cached(), need_dx=need_dx, need_dw=need_dw)
        if need_dw:
            self.grads["weight"] = dw
            if db is not None:
                self.grads["bias"] = db
        return dx

    def _cached(self):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        return self.cache

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict, with the class name under "type"."""
        return {"type": type(self).__name__}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Conv2d(Layer):
    """2-D convolution, PyTorch layout: weight (out, in/groups, kh, kw), bias (out,).

    Initialised He-uniform (bound sqrt(6 / fan_in), fan_in = in/groups*kh*kw; He et al.,
    arXiv:1502.01852) with zero bias, which trains ReLU networks from scratch reliably.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, rng=None, dtype="float32"):
        super().__init__()
        kh, kw = pair(kernel_size, "kernel_size")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in={in_channels} and out={out_channels} must be divisible "
                             f"by groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = (kh, kw), pair(stride), pair(dilation)
        self.padding = padding if isinstance(padding, (str, int)) else tuple(padding)
        self.groups = groups
        fan_in = in_channels // groups * kh * kw
        bound = math.sqrt(6.0 / fan_in)
        shape = (out_channels, in_channels // groups, kh, kw)
        self.params["weight"] = _uniform(rng, bound, shape, dtype)
        if bias:
            self.params["bias"] = np.zeros(out_channels, dtype=dtype)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects (N, {self.in_channels}, H, W) input, got {x.shape}")
        out, self.cache = tier().conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                                                self.stride, self.padding, self.dilation,
                                                self.groups)
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        """dL/dx; with ``need_dw`` it overwrites grads["weight"] (and grads["bias"])."""
        return self._weighted_backward(tier().conv2d_backward, dout, need_dw, need_dx)

    def config(self):
        return {"type": "Conv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, (str, int)) else list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": "bias" in self.params}


class Linear(Layer):
    """Fully connected layer: y = x W^T + b, weight (out, in) as in PyTorch.

    Initialised as PyTorch's default, U(-1/sqrt(in), 1/sqrt(in)), with zero bias. NOTE: He init
    (sqrt(6/in)) made the first logits of the shapes nets so large that the cheapest way down the
    loss was to switch every hidden ReLU off and predict uniformly; this scale avoids that.
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype="float32"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.params["weight"] = _uniform(rng, bound, (out_features, in_features), dtype)
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)

    def forward(self, x):
        out, self.cache = tier().linear_forward(x, self.params["weight"], self.params.get("bias"))
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        """dL/dx; with ``need_dw`` it overwrites grads["weight"] (and grads["bias"])."""
        return self._weighted_backward(tier().linear_backward, dout, need_dw, need_dx)

    def config(self):
        return {"type": "Linear", "in_features": self.in_features,
                "out_features": self.out_features, "bias": "bias" in self.params}


class ReLU(Layer):
    """max(x, 0). Its backward rule is chosen per call: standard, deconvnet or guided."""

    upper = None

    def forward(self, x):
        out, self.cache = tier().relu_forward(x, self.upper)
        return out

    def infer(self, x):
        self.cache = None
        return tier().relu_forward(x, self.upper, need_mask=False)[0]

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        return tier().relu_backward(dout, self._cached(), relu_rule) if need_dx else None


class ReLU6(ReLU):
    """min(max(x, 0), 6) (MobileNet/EfficientNet-Lite); same three backward rules as ReLU."""

    upper = 6.0


class MaxPool2d(Layer):
    """Max pooling (kernel, stride=kernel, padding); gradient to the first maximum per window."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = padding if isinstance(padding, int) else tuple(padding)

    _op = "maxpool2d"  # the tier's <op>_forward / <op>_backward, looked up at call time

    def forward(self, x):
        forward = getattr(tier(), self._op + "_forward")
        out, self.cache = forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def infer(self, x):
        self.cache = None
        return tier().maxpool2d_infer(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        return getattr(tier(), self._op + "_backward")(dout, self._cached()) if need_dx else None

    def config(self):
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, int) else list(self.padding)}


class AvgPool2d(MaxPool2d):
    """Average pooling (kernel, stride=kernel, padding; zero padding counted in the mean)."""

    _op = "avgpool2d"
    infer = Layer.infer  # NOTE: MaxPool2d's cache-free shortcut is a max; the mean has none


class GlobalAvgPool2d(Layer):
    """Global average pooling (N, C, H, W) -> (N, C): F_k = 1/Z sum_ij A^k_ij (CAM, Zhou et al.)."""

    def forward(self, x):
        out, self.cache = tier().global_avg_pool_forward(x)
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        return tier().global_avg_pool_backward(dout, self._cached()) if need_dx else None


class AdaptiveAvgPool2d(Layer):
    """Average over PyTorch's adaptive bins, to a fixed (OH, OW) whatever the input size.

    Bin i along an axis of length H covers [floor(i*H/OH), ceil((i+1)*H/OH)); the pooling is
    linear and separable, so out = P_h @ x @ P_w^T with averaging matrices P (OH, H), and
    backward is dx = P_h^T @ dout @ P_w. VGG uses it as ``avgpool`` (identity at 224x224).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size, "output_size")

    @staticmethod
    def _bins(size, out, xp, dtype):
        P = xp.zeros((out, size), dtype=dtype)
        for i in range(out):
            lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
            P[i, lo:hi] = 1.0 / (hi - lo)
        return P

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"AdaptiveAvgPool2d expects (N, C, H, W), got shape {x.shape}")
        xp = get_xp(x)
        Ph = self._bins(x.shape[2], self.output_size[0], xp, x.dtype)
        Pw = self._bins(x.shape[3], self.output_size[1], xp, x.dtype)
        self.cache = (Ph, Pw)
        if (x.shape[2], x.shape[3]) == self.output_size:
            return x  # NOTE: identity bins; skip two matrix products
        return Ph @ x @ Pw.T

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        Ph, Pw = self._cached()
        if not need_dx:
            return None
        if Ph.shape[0] == Ph.shape[1] and Pw.shape[0] == Pw.shape[1]:
            return dout
        return Ph.T @ dout @ Pw

    def config(self):
        return {"type": "AdaptiveAvgPool2d", "output_size": list(self.output_size)}


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C order (PyTorch's flatten order), and back."""

    def forward(self, x):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        return dout.reshape(self._cached()) if need_dx else None


class Dropout(Layer):
    """Inverted dropout: in training zero each unit with probability p and scale by 1/(1-p);
    the identity in eval mode. The mask comes from the layer's own seeded generator.

    keep_i = [u_i >= p],   u = rng.random(x.shape)   (host arrays)

    On a device the mask is drawn there: the layer's generator draws one 63-bit seed per
    forward, and ``xp.random.default_rng(seed).random(x.shape)`` gives u on the device. So no
    mask crosses from the host, the generator's state (saved in training checkpoints) still
    decides every mask, and a resumed run draws what an uninterrupted one would; the device's
    masks differ from the host's (another generator), as any two backends' random streams do.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.seed = float(p), seed
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.cache = None
            return x
        xp = get_xp(x)
        if xp is np:
            keep = self.rng.random(x.shape) >= self.p
        else:  # NOTE: drawn on the device from a host-drawn seed; see the class docstring
            seed = int(self.rng.integers(2 ** 63))
            keep = xp.random.default_rng(seed).random(x.shape, dtype=np.float32) >= self.p
        out, self.cache = tier().dropout_forward(x, self.p, keep)
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        if not need_dx:
            return None
        return dout if self.cache is None else tier().dropout_backward(dout, self.cache)

    def config(self):
        return {"type": "Dropout", "p": self.p, "seed": self.seed}


class BatchNorm2d(Layer):
    """Batch norm over (N, H, W) per channel; running averages with PyTorch's momentum rule:

    running = (1 - momentum) * running + momentum * batch_stat   (unbiased variance, as PyTorch)
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype="float32"):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.params["weight"] = np.ones(num_features, dtype=dtype)
        self.params["bias"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)

    def forward(self, x):
        b = self.buffers
        out, self.cache = tier().batchnorm2d_forward(x, self.params["weight"], self.params["bias"],
                                                     b["running_mean"], b["running_var"],
                                                     self.training, self.eps)
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            unbiased = self.cache.var * (m / max(m - 1, 1))
            mom = self.momentum
            b["running_mean"] = ((1 - mom) * b["running_mean"] + mom * self.cache.mean).astype(x.dtype)
            b["running_var"] = ((1 - mom) * b["running_var"] + mom * unbiased).astype(x.dtype)
        return out

    def backward(self, dout, *, need_dw=True, relu_rule="standard", need_dx=True):
        dx, dg, db = tier().batchnorm2d_backward(dout, self._cached(), need_dx=need_dx,
                                                 need_dw=need_dw)
        if need_dw:
            self.grads["weight"], self.grads["bias"] = dg, db
        return dx

    def config(self):
        return {"type": "BatchNorm2d", "num_features": self.num_features, "eps": self.eps,
                "momentum": self.momentum}


LAYER_TYPES = {cls.__name__: cls for cls in
               (Conv2d, Linear, ReLU, ReLU6, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, Flatten,
                Dropout, BatchNorm2d)}

