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
from .im2col import (check_geometry, col2im, conv_padding, disjoint_windows, max_pool_taps,
                     over_channels, pad, pair, pools_by_rows, tap, unpad, windows)

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
    out, index = max_pool_taps(xpad, kernel, stride, out_hw, need_index=True)
    return out, PoolCache(x.shape, xpad.shape, kernel, stride, pads, index)


def maxpool2d_infer(x, kernel_size, stride=None, padding=0):
    """``maxpool2d_forward`` without the cache (no index): for layers backward never reaches."""
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    xpad = pad(x, pads, value=-float("inf"))
    return max_pool_taps(xpad, kernel, stride, out_hw, need_index=False)[0]


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
    by_rows = pools_by_rows(cache.kernel, cache.stride)  # as the forward reduced

    def block(cs):  # channels are independent: blocks of them run on the worker threads
        d, index = dout[:, cs], cache.argmax[:, cs]
        if by_rows:  # one row of KH*KW zeros per window, dout at its argmax, rows to pixels
            rows = xp.zeros(d.shape + (KH * KW,), dtype=d.dtype)
            xp.put_along_axis(rows, index[..., None].astype(xp.intp), d[..., None], axis=-1)
            dst = disjoint_windows(dxp[:, cs], cache.kernel, out_hw)
            dst[...] = rows.reshape(d.shape + (KH, KW))
            return
        for t in range(KH * KW):
            dst = tap(dxp[:, cs], t // KW, t % KW, cache.stride, out_hw)
            if disjoint:
                xp.multiply(d, index == t, out=dst)
            else:
                dst += d * (index == t)

    over_channels(block, dxp)
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
def relu_forward(x, upper=None, need_mask=True):
    """ReLU (``upper=None``) or ReLU6 (``upper=6``): out = min(max(x, 0), upper).

    The cache is the boolean mask of where the forward passed its input through (None when
    ``need_mask`` is False: a forward no backward will follow).
    """
    xp = get_xp(x)
    out, mask = xp.empty_like(x), xp.empty(x.shape, dtype=bool) if need_mask else None
    x2, out2 = (a if a.ndim >= 2 else a.reshape(1, -1) for a in (x, out))
    mask2 = None if mask is None else mask.reshape(x2.shape)

    hi = None if upper is None else xp.asarray(upper).astype(x.dtype)  # integer inputs stay integer

    def block(cs):  # elementwise: blocks of channels run on the worker threads
        xs, o = x2[:, cs], out2[:, cs]
        if upper is None:
            xp.maximum(xs, 0, out=o)
        else:
            xp.clip(xs, 0, hi, out=o)
        if need_mask:
            m = mask2[:, cs]
            xp.greater(xs, 0, out=m)
            if upper is not None:
                m &= xs < upper

    over_channels(block, x2)
    return out, mask


def relu_backward(dout, mask, rule="standard"):
    """Backward of ReLU/ReLU6 under one of three rules (Springenberg et al., arXiv:1412.6806, Fig. 1):

    standard   (gradient):         dx = dout * [forward passed x]
    deconvnet  (Zeiler & Fergus):  dx = max(dout, 0)           -- ignores the forward
    guided     (guided backprop):  dx = dout * [forward passed x] * [dout > 0]

    NOTE: the derivative at x == 0 (and x == 6 for ReLU6) is taken as 0, as in PyTorch.
    """
    xp = get_xp(dout)
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; use one of {RELU_RULES}")
    dx = xp.empty_like(dout)
    d2, m2, dx2 = (a if a.ndim >= 2 else a.reshape(1, -1) for a in (dout, mask, dx))

    def block(cs):  # elementwise: blocks of channels run on the worker threads
        d, m, o = d2[:, cs], m2[:, cs], dx2[:, cs]
        if rule == "standard":
            xp.multiply(d, m, out=o)
        elif rule == "deconvnet":
            xp.maximum(d, 0, out=o)
        else:  # guided
            xp.multiply(d, m & (d > 0), out=o)

    over_channels(block, d2)
    return dx


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
    xc: object  # (N, C, H, W) the centred input x - mu (xhat = xc * inv_std)
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
    millisecond, so the steps run in place on two new arrays (x - mu and out), the cache keeps
    x - mu rather than xhat (backward folds inv_std into its per-channel factors: one pass
    fewer), the per-channel sums use ``_channel_sum`` / ``_channel_dot`` (no squared
    temporary), and it all runs per block of channels (``over_channels``) on every core.
    """
    if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
        raise ValueError(f"batch norm expects (N, {gamma.shape[0]}, H, W), got shape {x.shape}")
    xp = get_xp(x)
    M = x.shape[0] * x.shape[2] * x.shape[3]
    xc, out, inv_std = xp.empty_like(x), xp.empty_like(x), xp.empty(x.shape[1], dtype=x.dtype)
    if training:
        mean, var = xp.empty_like(inv_std), xp.empty_like(inv_std)
    else:
        mean, var = running_mean, running_var

    def block(cs):  # channels are independent: blocks of them run on the worker threads
        xs, xcs = x[:, cs], xc[:, cs]
        if training:
            mean[cs] = _channel_sum(xs) / M
        xp.subtract(xs, _per_channel(mean[cs]), out=xcs)  # x - mu
        if training:
            var[cs] = _channel_dot(xcs, xcs) / M
        inv_std[cs] = 1.0 / xp.sqrt(var[cs] + eps)
        o = out[:, cs]
        xp.multiply(xcs, _per_channel(gamma[cs] * inv_std[cs]), out=o)  # gamma * (x - mu) * inv_std
        o += _per_channel(beta[cs])

    over_channels(block, x)
    return out, BatchNormCache(xc, inv_std, gamma, training, mean, var)


def batchnorm2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of batch norm.

    dgamma = sum dout * xhat;  dbeta = sum dout  (over N, H, W)
    eval:  dx = dout * gamma * inv_std
    train: dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M),  M = N*H*W

    (The train rule is the usual inv_std / M * (M g - sum g - xhat sum(g xhat)) with g = dout *
    gamma: gamma is per channel, so sum g = gamma dbeta and sum g xhat = gamma dgamma.)
    The cache holds xc = x - mu, so xhat = xc * inv_std with inv_std folded into the per-channel
    factors: dgamma = inv_std * sum dout * xc, and xhat * dgamma = xc * (inv_std * dgamma).
    """
    c = cache
    xp = get_xp(dout)
    M = dout.shape[0] * dout.shape[2] * dout.shape[3]
    sums = c.training or need_dw  # the train rule needs dgamma and dbeta for dx too
    dgamma, dbeta = (xp.empty_like(c.inv_std), xp.empty_like(c.inv_std)) if sums else (None, None)
    dx = xp.empty_like(dout) if need_dx else None

    def block(cs):  # channels are independent: blocks of them run on the worker threads
        d, xcs, inv_std = dout[:, cs], c.xc[:, cs], c.inv_std[cs]
        if sums:
            dgamma[cs], dbeta[cs] = _channel_dot(d, xcs) * inv_std, _channel_sum(d)
        if need_dx:
            o, scale = dx[:, cs], _per_channel(c.gamma[cs] * inv_std)
            if c.training:
                xp.multiply(xcs, _per_channel(-dgamma[cs] * inv_std / M), out=o)
                o += d
                o -= _per_channel(dbeta[cs] / M)
                o *= scale
            else:
                xp.multiply(d, scale, out=o)

    over_channels(block, dout)
    return dx, (dgamma if need_dw else None), (dbeta if need_dw else None)
