"""The reference tier: every op as a plain, vectorised forward/backward pair.

Each op is a pair ``<op>_forward(x, ...) -> (out, cache)`` and
``<op>_backward(dout, cache, ...) -> gradients`` (in the order of the forward's array
arguments), each backward right under its forward. The cache is a NamedTuple holding only what
backward needs. Inputs are never mutated and dtypes are kept (float32 stays float32).

This is the code to read: convolution is one im2col and one matrix product, ReLU is a maximum
with a mask, batch norm is the paper's formula. The tuned tier ``minicnn.kernels`` has the same
signatures and takes the SAME caches (defined here), so either tier's backward consumes either
tier's cache; layers run the kernels unless ``minicnn.use_tier("reference")`` says otherwise.
The plain-loop twins are in ``minicnn.naive``; tests/test_tiers.py checks all three agree.
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_xp
from .im2col import col2im, conv_geometry, pad, pool_geometry, unpad, windows

__all__ = [
    "RELU_RULES", "Conv2dCache", "conv2d_forward", "conv2d_backward",
    "PoolCache", "maxpool2d_forward", "maxpool2d_infer", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward", "global_avg_pool_forward", "global_avg_pool_backward",
    "relu_forward", "relu_backward", "LinearCache", "linear_forward", "linear_backward",
    "dropout_forward", "dropout_backward", "BatchNormCache", "batchnorm2d_forward", "batchnorm2d_backward",
]

RELU_RULES = ("standard", "deconvnet", "guided")


# --------------------------------------------------------------------------- convolution
class Conv2dCache(NamedTuple):
    x: object  # the input itself (a reference, no copy): backward rebuilds the im2col matrix
    w: object
    has_bias: bool
    stride: tuple
    dilation: tuple
    pads: tuple  # (top, bottom, left, right)
    groups: int
    out_hw: tuple
    U: object = None  # the kernels' Winograd-transformed w (their memo's array) if that path ran


def _im2col(x, kernel, c):
    """The im2col matrix of x for cache ``c``'s geometry, one per group: (N, G, Cg*KH*KW, OH*OW).

    cols[n, g, (c, i, j), (oh, ow)] = x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]
    """
    N, C = x.shape[:2]
    view = windows(pad(x, c.pads), kernel, c.stride, c.dilation, c.out_hw)  # (N, C, KH, KW, OH, OW)
    return view.reshape(N, c.groups, C // c.groups * kernel[0] * kernel[1], -1)  # a copy


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation (PyTorch's Conv2d): one im2col and one matrix product.

    out[n, g*Fg+f, oh, ow] = b[g*Fg+f]
        + sum_{c<Cg, i<KH, j<KW} w[g*Fg+f, c, i, j] * x_pad[n, g*Cg+c, oh*sh + i*dh, ow*sw + j*dw]

    As matrices, per image n and group g: out[n, g] = W[g] (Fg, Cg*KH*KW) @ cols[n, g].

    Parameters
    ----------
    x : (N, C, H, W)
    w : (F, C // groups, KH, KW)
    b : (F,) or None
    stride, dilation : int or (h, w)
    padding : int, (ph, pw), (top, bottom, left, right), "same" (TensorFlow's) or "valid"
    groups : int; ``groups == C`` with one filter per channel is a depthwise conv
    Returns
    -------
    out : (N, F, OH, OW); cache : Conv2dCache

    See Also
    --------
    minicnn.naive.conv2d_forward : the plain-loop twin.
    """
    stride, dilation, pads, (OH, OW) = conv_geometry(x, w, stride, padding, dilation, groups)
    cache = Conv2dCache(x, w, b is not None, stride, dilation, pads, groups, (OH, OW))
    N, F, G = x.shape[0], w.shape[0], groups
    cols = _im2col(x, w.shape[2:], cache)  # (N, G, K, OH*OW)
    out = (w.reshape(G, F // G, -1) @ cols).reshape(N, F, OH, OW)  # (G, Fg, K) @ (N, G, K, P)
    if b is not None:
        out += b.reshape(1, F, 1, 1)
    return out, cache


def conv2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of ``conv2d_forward``.

    dw[g] = sum_n dout[n, g] @ cols[n, g]^T        db[f] = sum_{n, oh, ow} dout[n, f, oh, ow]
    dx    = col2im(W[g]^T @ dout[n, g])            (each column back onto its window)

    Parameters
    ----------
    dout : (N, F, OH, OW)
    cache : Conv2dCache from either tier's forward
    need_dx, need_dw : skip the input gradient / the weight and bias gradients when not wanted
    Returns
    -------
    dx : (N, C, H, W) or None; dw : like w, or None; db : (F,) or None
    """
    c = cache
    N, F, OH, OW = dout.shape
    _, Cg, KH, KW = c.w.shape
    G = c.groups
    d = dout.reshape(N, G, F // G, OH * OW)
    dx = dw = db = None
    if need_dw:
        cols = _im2col(c.x, (KH, KW), c)  # rebuilt from x: the cache keeps no copy
        dw = (d @ cols.swapaxes(2, 3)).sum(axis=0).reshape(c.w.shape)
        db = dout.sum(axis=(0, 2, 3)) if c.has_bias else None
    if need_dx:
        dcols = c.w.reshape(G, F // G, -1).swapaxes(1, 2) @ d  # (G, K, Fg) @ (N, G, Fg, P)
        N, C, H, W = c.x.shape
        t, b, l, r = c.pads
        dxp = col2im(dcols.reshape(N, C, KH, KW, OH, OW), (N, C, H + t + b, W + l + r),
                     c.stride, c.dilation)
        dx = get_xp(dxp).ascontiguousarray(unpad(dxp, c.pads))
    return dx, dw, db


# --------------------------------------------------------------------------- pooling
class PoolCache(NamedTuple):
    x_shape: tuple
    padded_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple
    argmax: object  # (N, C, OH, OW) index into the flattened window (max-pool only)


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling (floor mode; padding counts as -inf, as in PyTorch).

    out[n, c, oh, ow] = max_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]

    The cache keeps, per window, the flat index i*KW + j of the maximum: the FIRST one in
    row-major order when several tie (``argmax``'s rule, and PyTorch's).

    Returns
    -------
    out : (N, C, OH, OW); cache : PoolCache
    """
    kernel, stride, pads, (OH, OW) = pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    xpad = pad(x, pads, value=-float("inf"))
    win = windows(xpad, kernel, stride, (1, 1), (OH, OW))  # (N, C, KH, KW, OH, OW)
    win = win.reshape(x.shape[0], x.shape[1], -1, OH, OW)  # one axis of KH*KW taps (a copy)
    argmax = win.argmax(axis=2)
    return win.max(axis=2), PoolCache(x.shape, xpad.shape, kernel, stride, pads, argmax)


def maxpool2d_infer(x, kernel_size, stride=None, padding=0):
    """``maxpool2d_forward`` without the cache: for layers backward never reaches."""
    return maxpool2d_forward(x, kernel_size, stride, padding)[0]


def maxpool2d_backward(dout, cache):
    """Route each window's gradient to its single (first) maximum.

    dx[n, c, oh*sh + i*, ow*sw + j*] += dout[n, c, oh, ow],  (i*, j*) = the window's argmax

    NOTE: after a ReLU whole windows are often 0 and tie. Sending the gradient to
    every tied position (a common ``x == max`` mask shortcut) multiplies it and
    visibly changes Grad-CAM maps; one position per window is what PyTorch does.
    """
    xp = get_xp(dout)
    N, C, OH, OW = dout.shape
    KH, KW = cache.kernel
    taps = xp.arange(KH * KW).reshape(1, 1, KH * KW, 1, 1)
    dcols = (taps == cache.argmax[:, :, None]) * dout[:, :, None]  # dout at each argmax, else 0
    dxp = col2im(dcols.reshape(N, C, KH, KW, OH, OW), cache.padded_shape, cache.stride, (1, 1))
    return xp.ascontiguousarray(unpad(dxp, cache.pads))


def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Average pooling; zero padding is counted in the mean (PyTorch's count_include_pad=True).

    out[n, c, oh, ow] = 1/(KH*KW) * sum_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]
    """
    kernel, stride, pads, out_hw = pool_geometry(x, kernel_size, stride, padding, "avg_pool2d")
    xpad = pad(x, pads)
    out = windows(xpad, kernel, stride, (1, 1), out_hw).mean(axis=(2, 3))
    return out.astype(x.dtype, copy=False), PoolCache(x.shape, xpad.shape, kernel, stride, pads, None)


def avgpool2d_backward(dout, cache):
    """dx_pad[n, c, oh*sh + i, ow*sw + j] += dout[n, c, oh, ow] / (KH*KW)."""
    xp = get_xp(dout)
    KH, KW = cache.kernel
    N, C, OH, OW = dout.shape
    share = (dout / (KH * KW)).astype(dout.dtype, copy=False)
    dcols = xp.broadcast_to(share[:, :, None, None], (N, C, KH, KW, OH, OW))
    dxp = col2im(dcols, cache.padded_shape, cache.stride, (1, 1))
    return xp.ascontiguousarray(unpad(dxp, cache.pads)) if any(cache.pads) else dxp


def global_avg_pool_forward(x):
    """GAP: out[n, k] = 1/Z sum_{i,j} x[n, k, i, j], Z = H*W (CAM's pooling). (N,C,H,W) -> (N,C)."""
    if x.ndim != 4:
        raise ValueError(f"global average pooling expects (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool_backward(dout, x_shape):
    """dx[n, k, i, j] = dout[n, k] / Z: every position gets an equal share."""
    xp = get_xp(dout)
    N, C, H, W = x_shape
    return xp.broadcast_to((dout / (H * W))[:, :, None, None], x_shape).astype(dout.dtype, copy=True)


# --------------------------------------------------------------------------- activations
def relu_forward(x, upper=None, need_mask=True):
    """ReLU (``upper=None``) or ReLU6 (``upper=6``): out = min(max(x, 0), upper).

    The cache is the boolean mask of where the forward passed its input through (None when
    ``need_mask`` is False: a forward no backward will follow).
    """
    xp = get_xp(x)
    out = xp.maximum(x, 0)
    mask = x > 0
    if upper is not None:
        # NOTE: a host scalar of x's dtype (integer inputs stay integer), not a device copy
        out = xp.minimum(out, x.dtype.type(upper))
        mask &= x < upper
    return out, (mask if need_mask else None)


def relu_backward(dout, mask, rule="standard"):
    """Backward of ReLU/ReLU6 under one of three rules (Springenberg et al., arXiv:1412.6806, Fig. 1):

    standard   (gradient):         dx = dout * [forward passed x]
    deconvnet  (Zeiler & Fergus):  dx = max(dout, 0)           -- ignores the forward
    guided     (guided backprop):  dx = dout * [forward passed x] * [dout > 0]

    NOTE: the derivative at x == 0 (and x == 6 for ReLU6) is taken as 0, as in PyTorch.
    """
    if rule == "standard":
        return dout * mask
    if rule == "deconvnet":
        return get_xp(dout).maximum(dout, 0)
    if rule == "guided":
        return dout * (mask & (dout > 0))
    raise ValueError(f"unknown ReLU backward rule {rule!r}; use one of {RELU_RULES}")


# --------------------------------------------------------------------------- dense, dropout
class LinearCache(NamedTuple):
    x: object  # (N, in)
    w: object  # (out, in)
    has_bias: bool


def linear_forward(x, w, b=None):
    """out = x @ w.T + b, with w (out, in) as in PyTorch. x (N, in) -> (N, out)."""
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear expects (N, {w.shape[1]}) input, got shape {x.shape}")
    out = x @ w.T
    if b is not None:
        out += b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache, need_dx=True, need_dw=True):
    """dx = dout @ w;  dw = dout.T @ x;  db = sum_n dout."""
    x, w, has_bias = cache
    dx = dout @ w if need_dx else None
    dw = dout.T @ x if need_dw else None
    db = dout.sum(axis=0) if (need_dw and has_bias) else None
    return dx, dw, db


def dropout_forward(x, p, keep_mask):
    """Inverted dropout: out = x * keep_mask / (1 - p), so eval needs no rescaling.

    ``keep_mask`` is a boolean array drawn by the caller (the layer owns the RNG).
    """
    scale = x.dtype.type(1.0 / (1.0 - p))
    mask = keep_mask * scale
    return x * mask, mask


def dropout_backward(dout, mask):
    """dx = dout * keep_mask / (1 - p)."""
    return dout * mask


# --------------------------------------------------------------------------- batch norm
class BatchNormCache(NamedTuple):
    xc: object  # (N, C, H, W) the centred input x - mu (xhat = xc * inv_std)
    inv_std: object  # (C,) 1 / sqrt(var + eps)
    gamma: object
    training: bool
    mean: object  # batch mean (train) or running mean (eval), (C,)
    var: object  # biased batch variance (train) or running variance (eval), (C,)


def _per_channel(v):
    """(C,) -> (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy, arXiv:1502.03167v3, Alg. 1).

    train: mu, var = batch mean and biased variance;  eval: mu, var = running statistics
    xhat = (x - mu) / sqrt(var + eps);  out = gamma * xhat + beta

    The caller updates the running statistics from ``cache.mean``/``cache.var``
    (the batch statistics), so this function never mutates its inputs.
    """
    if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
        raise ValueError(f"batch norm expects (N, {gamma.shape[0]}, H, W), got shape {x.shape}")
    xp = get_xp(x)
    if training:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = running_mean, running_var
    xc = x - _per_channel(mean)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = xc * _per_channel(inv_std)
    out = _per_channel(gamma) * xhat + _per_channel(beta)
    return out, BatchNormCache(xc, inv_std, gamma, training, mean, var)


def batchnorm2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of batch norm: the chain rule through Alg. 1 (arXiv:1502.03167v3, Sec. 3).

    dgamma = sum dout * xhat;  dbeta = sum dout  (sums over N, H, W;  M = N*H*W)
    eval:  dx = dout * gamma * inv_std  (mu and var are constants)
    train: dxhat = dout * gamma
           dvar  = sum dxhat * (x - mu) * (-1/2) * inv_std^3
           dmu   = sum -dxhat * inv_std + dvar * sum -2 (x - mu) / M
           dx    = dxhat * inv_std + dvar * 2 (x - mu) / M + dmu / M
    (dmu's second term is zero, sum (x - mu) = 0, and is kept as the paper writes it.)
    """
    c = cache
    M = dout.shape[0] * dout.shape[2] * dout.shape[3]
    inv_std = _per_channel(c.inv_std)
    dx = dgamma = dbeta = None
    if need_dw:
        dgamma = (dout * c.xc * inv_std).sum(axis=(0, 2, 3))
        dbeta = dout.sum(axis=(0, 2, 3))
    if need_dx and not c.training:
        dx = dout * _per_channel(c.gamma) * inv_std
    elif need_dx:
        dxhat = dout * _per_channel(c.gamma)
        dvar = (dxhat * c.xc).sum(axis=(0, 2, 3), keepdims=True) * -0.5 * inv_std**3
        dmu = (-dxhat * inv_std).sum(axis=(0, 2, 3), keepdims=True) \
            + dvar * (-2.0 * c.xc).sum(axis=(0, 2, 3), keepdims=True) / M
        dx = dxhat * inv_std + dvar * 2.0 * c.xc / M + dmu / M
    return dx, dgamma, dbeta
