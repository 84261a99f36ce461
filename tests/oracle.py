"""An independent forward pass in ``autograd.numpy``: the gradient oracle for the tests.

HIPS autograd (https://github.com/HIPS/autograd) differentiates this code, so
``autograd.grad`` gives the gradient of a whole network to compare against
minicnn's hand-written backward passes. Nothing here imports minicnn: the
convolution is written as *shift-and-sum* (one einsum per kernel offset) rather
than im2col, and the padding, output sizes and pools are recomputed locally, so
a bug shared with ``functional``/``naive``/``im2col`` cannot pass unnoticed.

Every function takes plain NumPy arrays (or autograd's boxes) in NCHW layout
with PyTorch's weight layouts: conv w (F, C//groups, KH, KW), linear w (out, in).
Padding is always the resolved 4-tuple ``pads = (top, bottom, left, right)``.

NOTE: autograd's gradients at kinks differ from minicnn's rules (np.max splits
a tie between the maxima; np.maximum at 0 too), so tests feed distinct values
to max-pools and keep ReLU inputs away from 0.

Network description for ``forward_spec``
----------------------------------------
``spec`` is a list of ``(name, kind, cfg)`` triples run in order; parameters are
looked up in ``params`` (a dict) under PyTorch-style keys ``"<prefix><name>.<param>"``:

- ``"conv"``: cfg ``dict(stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1)`` (all optional);
  params ``.weight`` (F, C//groups, KH, KW) and ``.bias`` (F,) (bias optional: absent = none).
- ``"relu"``, ``"relu6"``: cfg ``{}``.
- ``"maxpool"``: cfg ``dict(k=(2, 2), s=k, pads=(0, 0, 0, 0))``; -inf padding.
- ``"avgpool"``: same cfg; zero padding counted in the mean (count_include_pad=True).
- ``"gap"``: ``{}``; (N, C, H, W) -> (N, C).   ``"flatten"``: ``{}``; (N, ...) -> (N, -1).
- ``"linear"``: ``{}``; params ``.weight`` (out, in) and ``.bias`` (out,) (bias optional).
- ``"batchnorm"``: cfg ``dict(train=True, eps=1e-5)``; params ``.weight`` (gamma), ``.bias``
  (beta), and with train=False also ``.running_mean`` and ``.running_var``.
- ``"dropout"``: ``{}``; the identity (evaluation mode).
- ``"residual"``: cfg is a nested spec list; out = x + forward_spec(inner, x); the inner
  layers' keys are ``"<name>.<inner name>.<param>"`` (nesting repeats the rule).

Ints are accepted wherever a pair is (stride=2 means (2, 2)); ``pads`` may be an int p, a pair
(ph, pw) or (top, bottom, left, right). Example::

    spec = [("conv1", "conv", dict(stride=1, pads=(1, 1, 1, 1))), ("relu1", "relu", {}),
            ("pool1", "maxpool", dict(k=(2, 2), s=(2, 2))),
            ("res", "residual", [("conv", "conv", dict(pads=1)), ("relu", "relu", {})]),
            ("gap", "gap", {}), ("fc", "linear", {})]
    params = {"conv1.weight": ..., "conv1.bias": ..., "res.conv.weight": ..., "res.conv.bias": ...,
              "fc.weight": ..., "fc.bias": ...}
    logits = forward_spec(spec, params, x)
    grads = autograd.grad(lambda p: softmax_cross_entropy(forward_spec(spec, p, x), y))(params)

The same network in minicnn is ``Sequential`` with the same layer names (a residual block
is whatever minicnn provides for one). For the gradient with respect to an intermediate
activation A (Grad-CAM's dy/dA), split the list: A = forward_spec(spec[:k], params, x), then
differentiate ``lambda A: forward_spec(spec[k:], params, A)``.
"""

from __future__ import annotations

import autograd.numpy as np
import numpy as onp


def _pair(v):
    """``3 -> (3, 3)``; pairs pass through."""
    return (int(v), int(v)) if onp.isscalar(v) else (int(v[0]), int(v[1]))


def _pads4(p):
    """int | (ph, pw) | (top, bottom, left, right) -> (top, bottom, left, right)."""
    if onp.isscalar(p):
        return (int(p),) * 4
    p = tuple(int(t) for t in p)
    return (p[0], p[0], p[1], p[1]) if len(p) == 2 else p


def _pad(x, pads4, value=0.0):
    """Pad the last two axes of (N, C, H, W) by concatenating constant blocks (differentiable)."""
    t, b, l, r = pads4
    N, C, H, W = x.shape
    dt = _value(x).dtype

    def block(h, w):
        return onp.full((N, C, h, w), value, dtype=dt)

    if l or r:
        x = np.concatenate([block(H, l), x, block(H, r)], axis=3)
    if t or b:
        x = np.concatenate([block(t, W + l + r), x, block(b, W + l + r)], axis=2)
    return x


def _shifts(x_pad, k, s, d):
    """Yield ((i, j), slice) for each kernel offset: x_pad[..., i*dh + sh*oh, j*dw + sw*ow]."""
    (KH, KW), (sh, sw), (dh, dw) = k, s, d
    Hp, Wp = x_pad.shape[-2:]
    OH = (Hp - dh * (KH - 1) - 1) // sh + 1
    OW = (Wp - dw * (KW - 1) - 1) // sw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"oracle: padded input {Hp}x{Wp} is smaller than the kernel")
    for i in range(KH):
        for j in range(KW):
            h0, w0 = i * dh, j * dw
            yield (i, j), x_pad[..., h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw]


def conv2d(x, w, b=None, stride=1, pads4=(0, 0, 0, 0), dilation=1, groups=1):
    """Grouped, strided, dilated conv as shift-and-sum over the kernel offsets (i, j).

    out = b + sum_{i,j} einsum('ngchw,gfc->ngfhw', x_pad[:, g, :, i*dh::sh, j*dw::sw][:OH, :OW],
                               w[g, f, :, i, j])

    with x_pad viewed as (N, G, Cg, Hp, Wp) and w as (G, F/G, Cg, KH, KW).
    """
    N, C = x.shape[:2]
    F, Cg, KH, KW = w.shape
    G = groups
    x_pad = _pad(x, _pads4(pads4))
    xg = np.reshape(x_pad, (N, G, Cg) + x_pad.shape[2:])  # (N, G, Cg, Hp, Wp)
    wg = np.reshape(w, (G, F // G, Cg, KH, KW))
    out = 0.0
    for (i, j), xs in _shifts(xg, (KH, KW), _pair(stride), _pair(dilation)):
        out = out + np.einsum("ngchw,gfc->ngfhw", xs, wg[:, :, :, i, j])
    out = np.reshape(out, (N, F) + out.shape[3:])
    return out if b is None else out + np.reshape(b, (1, F, 1, 1))


def maxpool2d(x, k, s=None, pads=(0, 0, 0, 0)):
    """Max over the KH*KW shifted slices of the (-inf padded) input, stacked on a new axis."""
    k = _pair(k)
    s = k if s is None else _pair(s)
    shifted = [xs for _, xs in _shifts(_pad(x, _pads4(pads), -onp.inf), k, s, (1, 1))]
    return np.max(np.stack(shifted), axis=0)


def avgpool2d(x, k, s=None, pads=(0, 0, 0, 0)):
    """Mean over the KH*KW shifted slices of the zero padded input (count_include_pad=True)."""
    k = _pair(k)
    s = k if s is None else _pair(s)
    total = 0.0
    for _, xs in _shifts(_pad(x, _pads4(pads), 0.0), k, s, (1, 1)):
        total = total + xs
    return total / (k[0] * k[1])


def global_avg_pool(x):
    """(N, C, H, W) -> (N, C): mean over the spatial axes."""
    return np.mean(x, axis=(2, 3))


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0.0)


def relu6(x):
    """min(max(x, 0), 6)."""
    return np.minimum(np.maximum(x, 0.0), 6.0)


def linear(x, w, b=None):
    """x @ w.T + b, with w (out, in)."""
    out = np.dot(x, w.T)
    return out if b is None else out + b


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    return np.reshape(x, (x.shape[0], -1))


def batchnorm2d_train(x, gamma, beta, eps=1e-5):
    """Batch statistics over (N, H, W); biased variance, as PyTorch normalises with."""
    mu = np.mean(x, axis=(0, 2, 3), keepdims=True)
    var = np.mean((x - mu) ** 2, axis=(0, 2, 3), keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return np.reshape(gamma, (1, -1, 1, 1)) * xhat + np.reshape(beta, (1, -1, 1, 1))


def batchnorm2d_eval(x, gamma, beta, mean, var, eps=1e-5):
    """gamma * (x - mean) / sqrt(var + eps) + beta with the given (running) statistics."""
    def c(v):
        return np.reshape(v, (1, -1, 1, 1))

    return c(gamma) * (x - c(mean)) / np.sqrt(c(var) + eps) + c(beta)


def dropout_eval(x):
    """Dropout in evaluation mode: the identity."""
    return x


def softmax_cross_entropy(logits, y):
    """mean_n [ logsumexp(logits[n]) - logits[n, y[n]] ]  for integer labels y (N,)."""
    N, K = logits.shape
    m = onp.max(_value(logits), axis=1, keepdims=True)  # a constant shift, for stability only
    lse = np.log(np.sum(np.exp(logits - m), axis=1)) + m[:, 0]
    onehot = onp.eye(K)[onp.asarray(y)]
    return np.mean(lse - np.sum(logits * onehot, axis=1))


def _value(a):
    """The plain array inside an autograd box (or ``a`` itself)."""
    while hasattr(a, "_value"):
        a = a._value
    return a


def forward_spec(spec, params, x, prefix="", acts=None):
    """Run the list-based network ``spec`` (see the module docstring) on ``x``.

    ``prefix`` is prepended to parameter keys (used for nested residual blocks);
    when ``acts`` is a dict, each layer's output is stored there under its full name.
    """
    for name, kind, cfg in spec:
        key = prefix + name

        def p(param, required=True, key=key):
            if required or key + "." + param in params:
                return params[key + "." + param]
            return None

        if kind == "conv":
            x = conv2d(x, p("weight"), p("bias", False), cfg.get("stride", 1),
                       _pads4(cfg.get("pads", 0)), cfg.get("dilation", 1), cfg.get("groups", 1))
        elif kind == "relu":
            x = relu(x)
        elif kind == "relu6":
            x = relu6(x)
        elif kind in ("maxpool", "avgpool"):
            k = cfg.get("k", 2)
            pool = maxpool2d if kind == "maxpool" else avgpool2d
            x = pool(x, k, cfg.get("s", k), cfg.get("pads", 0))
        elif kind == "gap":
            x = global_avg_pool(x)
        elif kind == "flatten":
            x = flatten(x)
        elif kind == "linear":
            x = linear(x, p("weight"), p("bias", False))
        elif kind == "batchnorm":
            eps = cfg.get("eps", 1e-5)
            if cfg.get("train", True):
                x = batchnorm2d_train(x, p("weight"), p("bias"), eps)
            else:
                x = batchnorm2d_eval(x, p("weight"), p("bias"), p("running_mean"),
                                     p("running_var"), eps)
        elif kind == "dropout":
            x = dropout_eval(x)
        elif kind == "residual":
            x = x + forward_spec(cfg, params, x, prefix=key + ".", acts=acts)
        else:
            raise ValueError(f"forward_spec: unknown layer kind {kind!r} for {key!r}")
        if acts is not None:
            acts[key] = x
    return x
