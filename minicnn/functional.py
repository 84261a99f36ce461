"""Vectorised forward/backward pairs: the ops every layer is built from.

Each op is a pair ``<op>_forward(x, ...) -> (out, cache)`` and
``<op>_backward(dout, cache, ...) -> gradients`` (in the order of the forward's
array arguments). The cache is a NamedTuple holding only what backward needs.
Inputs are never mutated and dtypes are kept (float32 stays float32).

Convolution lives in ``minicnn.conv`` (re-exported here): blocked im2col + matrix products,
Winograd F(2x2, 3x3) for 3x3 stride-1 convs with many channels, and a backward that computes
only the gradients asked for. Pooling reduces over the window's taps, one strided view at a
time; backward scatters through ``im2col.col2im`` or writes each tap's share directly. The
plain-loop twins of conv and pooling, with identical signatures, live in ``minicnn.naive``;
tests/test_perf_paths.py checks every fast path against them on the shapes that trigger it.
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_xp
from .conv import Conv2dCache, conv2d_backward, conv2d_forward
from .im2col import check_geometry, col2im, conv_padding, max_taps, pad, pair, tap, unpad, windows

__all__ = [
    "RELU_RULES", "Conv2dCache", "conv2d_forward", "conv2d_backward",  # from .conv
    "PoolCache", "maxpool2d_forward", "maxpool2d_infer", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward", "global_avg_pool_forward", "global_avg_pool_backward",
    "relu_forward", "relu_backward", "linear_forward", "linear_backward",
    "dropout_forward", "dropout_backward", "BatchNormCache", "batchnorm2d_forward", "batchnorm2d_backward",
]

RELU_RULES = ("standard", "deconvnet", "guided")


# --------------------------------------------------------------------------- pooling
class PoolCache(NamedTuple):
    x_shape: tuple
    padded_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple
    argmax: object  # (N, C, OH, OW) index into the flattened window (max-pool only)


def _pool_geometry(x, kernel_size, stride, padding, what):
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    pads = conv_padding(padding, x.shape[2:], kernel, stride)
    if max(pads[0], pads[1]) > kernel[0] // 2 or max(pads[2], pads[3]) > kernel[1] // 2:
        raise ValueError(f"{what}: padding {pads} must be at most half the kernel {kernel} (as in PyTorch)")
    out_hw = check_geometry(x.shape, kernel, stride, (1, 1), pads, what)
    return kernel, stride, pads, out_hw


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling (floor mode; padding counts as -inf, as in PyTorch).

    out[n, c, oh, ow] = max_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]

    The cache keeps, per window, the index of the maximum: the FIRST one in
    row-major order of the window when several tie (``argmax``'s rule, and PyTorch's).
    The maximum is a running one over the KH*KW taps (elementwise ops on strided views),
    so no window is copied and the index costs one comparison per tap.

    Returns
    -------
    out : (N, C, OH, OW); cache : PoolCache
    """
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    xpad = pad(x, pads, value=-float("inf"))
    out, index = max_taps(xpad, kernel, stride, out_hw, need_index=True)
    return out, PoolCache(x.shape, xpad.shape, kernel, stride, pads, index)


def maxpool2d_infer(x, kernel_size, stride=None, padding=0):
    """``maxpool2d_forward`` without the cache (no index): for layers backward never reaches."""
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    return max_taps(pad(x, pads, value=-float("inf")), kernel, stride, out_hw, need_index=False)[0]


def maxpool2d_backward(dout, cache):
    """Route each window's gradient to its single (first) maximum.

    dx[n, c, oh*sh + i*, ow*sw + j*] += dout[n, c, oh, ow],  (i*, j*) = the window's argmax

    NOTE: after a ReLU whole windows are often 0 and tie. Sending the gradient to
    every tied position (a common ``x == max`` mask shortcut) multiplies it and
    visibly changes Grad-CAM maps; one position per window is what PyTorch does.
    """
    xp = get_xp(dout)
    KH, KW = cache.kernel
    out_hw = dout.shape[2:]
    dxp = xp.zeros(cache.padded_shape, dtype=dout.dtype)
    # NOTE: when kernel == stride the windows do not overlap, so each tap's pixels belong to one
    # window only and the product can be written straight into them (no += read-modify-write).
    disjoint = tuple(cache.kernel) == tuple(cache.stride)
    for t in range(KH * KW):
        dst = tap(dxp, t // KW, t % KW, cache.stride, out_hw)
        if disjoint:
            xp.multiply(dout, cache.argmax == t, out=dst)
        else:
            dst += dout * (cache.argmax == t)
    return xp.ascontiguousarray(unpad(dxp, cache.pads)) if any(cache.pads) else dxp


def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Average pooling; zero padding is counted in the mean (PyTorch's count_include_pad=True).

    out[n, c, oh, ow] = 1/(KH*KW) * sum_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]
    """
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "avg_pool2d")
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
def relu_forward(x, upper=None):
    """ReLU (``upper=None``) or ReLU6 (``upper=6``): out = min(max(x, 0), upper).

    The cache is the boolean mask of where the forward passed its input through.
    """
    xp = get_xp(x)
    mask = x > 0
    if upper is not None:
        mask &= x < upper
        out = xp.clip(x, 0, upper)
    else:
        out = xp.maximum(x, 0)
    return out.astype(x.dtype, copy=False), mask


def relu_backward(dout, mask, rule="standard"):
    """Backward of ReLU/ReLU6 under one of three rules (Springenberg et al., arXiv:1412.6806, Fig. 1):

    standard   (gradient):         dx = dout * [forward passed x]
    deconvnet  (Zeiler & Fergus):  dx = max(dout, 0)           -- ignores the forward
    guided     (guided backprop):  dx = dout * [forward passed x] * [dout > 0]

    NOTE: the derivative at x == 0 (and x == 6 for ReLU6) is taken as 0, as in PyTorch.
    """
    xp = get_xp(dout)
    if rule == "standard":
        return dout * mask
    if rule == "deconvnet":
        return xp.maximum(dout, 0)
    if rule == "guided":
        return dout * (mask & (dout > 0))
    raise ValueError(f"unknown ReLU backward rule {rule!r}; use one of {RELU_RULES}")


# --------------------------------------------------------------------------- dense, dropout, batchnorm
def linear_forward(x, w, b=None):
    """out = x @ w.T + b, with w (out, in) as in PyTorch. x (N, in) -> (N, out)."""
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear expects (N, {w.shape[1]}) input, got shape {x.shape}")
    out = x @ w.T
    if b is not None:
        out += b
    return out, (x, w, b is not None)


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


class BatchNormCache(NamedTuple):
    xhat: object  # (N, C, H, W) normalised input
    inv_std: object  # (C,)
    gamma: object
    training: bool
    mean: object  # batch mean (train) or running mean (eval), (C,)
    var: object  # biased batch variance (train) or running variance (eval), (C,)


def _channel_sum(a):
    """sum over (N, H, W) per channel: (N, C, H, W) -> (C,), each image's contiguous H*W first."""
    return a.reshape(a.shape[0], a.shape[1], -1).sum(axis=2).sum(axis=0)


def _channel_dot(a, b):
    """sum over (N, H, W) of a * b per channel, in one pass with no (N, C, H, W) temporary."""
    N, C = a.shape[:2]
    return get_xp(a).einsum("ncp,ncp->c", a.reshape(N, C, -1), b.reshape(N, C, -1))


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy, arXiv:1502.03167v3).

    train: mu, var = batch mean and biased variance;  eval: mu, var = running statistics
    xhat = (x - mu) / sqrt(var + eps);  out = gamma * xhat + beta

    The caller updates the running statistics from ``cache.mean``/``cache.var``
    (the batch statistics), so this function never mutates its inputs.

    NOTE: on a 64 x 16 x 64 x 64 batch every full pass over the array costs about a
    millisecond, so the steps run in place on two new arrays (xhat and out) and the
    per-channel sums use ``_channel_sum`` / ``_channel_dot`` (no squared temporary).
    """
    if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
        raise ValueError(f"batch norm expects (N, {gamma.shape[0]}, H, W), got shape {x.shape}")
    xp = get_xp(x)
    M = x.shape[0] * x.shape[2] * x.shape[3]
    if training:
        mean = (_channel_sum(x) / M).astype(x.dtype, copy=False)
        xhat = x - _per_channel(mean)  # x - mu for now; scaled to xhat in place below
        var = (_channel_dot(xhat, xhat) / M).astype(x.dtype, copy=False)
    else:
        mean, var = running_mean, running_var
        xhat = x - _per_channel(mean)
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    out = xhat * _per_channel(gamma * inv_std)  # gamma * (x - mu) * inv_std
    out += _per_channel(beta)
    xhat *= _per_channel(inv_std)
    return out, BatchNormCache(xhat, inv_std, gamma, training, mean, var)


def batchnorm2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of batch norm.

    dgamma = sum dout * xhat;  dbeta = sum dout  (over N, H, W)
    eval:  dx = dout * gamma * inv_std
    train: dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M),  M = N*H*W

    (The train rule is the usual inv_std / M * (M g - sum g - xhat sum(g xhat)) with g = dout *
    gamma: gamma is per channel, so sum g = gamma dbeta and sum g xhat = gamma dgamma.)
    """
    c = cache
    scale = _per_channel(c.gamma * c.inv_std)
    if not c.training:
        dx = dout * scale if need_dx else None
        if not need_dw:
            return dx, None, None
        return dx, _channel_dot(dout, c.xhat), _channel_sum(dout)
    dgamma, dbeta = _channel_dot(dout, c.xhat), _channel_sum(dout)
    dx = None
    if need_dx:
        M = dout.shape[0] * dout.shape[2] * dout.shape[3]
        dx = c.xhat * _per_channel(-dgamma / M)
        dx += dout
        dx -= _per_channel(dbeta / M)
        dx *= scale
    return dx, (dgamma if need_dw else None), (dbeta if need_dw else None)
