"""Vectorised forward/backward pairs: the ops every layer is built from.

Each op is a pair ``<op>_forward(x, ...) -> (out, cache)`` and
``<op>_backward(dout, cache, ...) -> gradients`` (in the order of the forward's
array arguments). The cache is a NamedTuple holding only what backward needs.
Inputs are never mutated and dtypes are kept (float32 stays float32).

Convolution and pooling see their input through ``im2col.windows`` (a strided
view, no Python loop over pixels) and reduce it with one matrix product or one
reduction; backward scatters through ``im2col.col2im``. The plain-loop twins of
conv and pooling, with identical signatures, live in ``minicnn.naive``.
"""

from __future__ import annotations

from typing import NamedTuple

from .backend import get_xp
from .im2col import check_geometry, col2im, conv_padding, pad, pair, unpad, windows

RELU_RULES = ("standard", "deconvnet", "guided")


# --------------------------------------------------------------------------- convolution
class Conv2dCache(NamedTuple):
    x_shape: tuple
    padded_shape: tuple
    cols: object  # (G, Cg*KH*KW, N*OH*OW) im2col matrix
    w: object
    has_bias: bool
    stride: tuple
    dilation: tuple
    pads: tuple
    groups: int
    out_hw: tuple


def _conv_geometry(x, w, stride, padding, dilation, groups):
    """Validate shapes and normalise the conv hyper-parameters (shared with ``naive``)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d expects x (N,C,H,W) and w (F,C/groups,KH,KW); got {x.shape}, {w.shape}")
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    if groups < 1 or C % groups or F % groups:
        raise ValueError(f"conv2d: channels in={C} and out={F} must both be divisible by groups={groups}")
    if Cg * groups != C:
        raise ValueError(f"conv2d: input has {C} channels but the weight expects {Cg * groups} "
                         f"({Cg} per group x {groups} groups)")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pads = conv_padding(padding, (H, W), (KH, KW), stride, dilation)
    out_hw = check_geometry(x.shape, (KH, KW), stride, dilation, pads, "conv2d")
    return stride, dilation, pads, out_hw


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation (PyTorch's Conv2d), as im2col + one batched matrix product.

    out[n, g*Fg+f, oh, ow] = b[g*Fg+f]
        + sum_{c<Cg, i<KH, j<KW} w[g*Fg+f, c, i, j] * x_pad[n, g*Cg+c, oh*sh + i*dh, ow*sw + j*dw]

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
    xp = get_xp(x, w)
    stride, dilation, pads, (OH, OW) = _conv_geometry(x, w, stride, padding, dilation, groups)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    G, K, P = groups, Cg * KH * KW, N * OH * OW
    if (KH, KW) == (1, 1) and stride == (1, 1) and not any(pads):
        # NOTE: a 1x1 stride-1 conv is a plain matrix product over channels: no window view.
        cols = xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(G, K, P)
    else:
        view = windows(pad(x, pads), (KH, KW), stride, dilation, (OH, OW))  # (N,C,KH,KW,OH,OW)
        # im2col: one copy into (C, KH, KW, N, OH, OW) -> (G, Cg*KH*KW, N*OH*OW), so the whole
        # batch is ONE matrix product per group (not N small ones) in forward and in backward
        cols = xp.ascontiguousarray(view.transpose(1, 2, 3, 0, 4, 5)).reshape(G, K, P)
    out = xp.matmul(w.reshape(G, F // G, K), cols)  # (G, Fg, K) @ (G, K, P) -> (G, Fg, P)
    out = out.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)  # -> (N, F, OH, OW)
    out = xp.ascontiguousarray(out)
    if b is not None:
        out += b.reshape(1, F, 1, 1)
    padded = (N, C, H + pads[0] + pads[1], W + pads[2] + pads[3])
    cache = Conv2dCache(x.shape, padded, cols, w, b is not None, stride, dilation, pads, G, (OH, OW))
    return out, cache


def conv2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of ``conv2d_forward``.

    dw[f, c, i, j] = sum_{n, oh, ow} dout[n, f, oh, ow] * x_pad[n, c', oh*sh + i*dh, ow*sw + j*dw]
    dx = col2im(w^T @ dout)        db[f] = sum_{n, oh, ow} dout[n, f, oh, ow]

    Parameters
    ----------
    dout : (N, F, OH, OW)
    cache : Conv2dCache from the forward
    need_dx, need_dw : skip the input-gradient / weight-gradient product when not wanted
        (Grad-CAM needs neither below its layer; pixel-space maps need no dw).
    Returns
    -------
    dx : (N, C, H, W) or None; dw : like w, or None; db : (F,) or None
    """
    xp = get_xp(dout)
    N, F, OH, OW = dout.shape
    G = cache.groups
    F_, Cg, KH, KW = cache.w.shape
    # (N, F, OH, OW) -> (G, Fg, N*OH*OW), matching the columns of cache.cols
    d = xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(G, F // G, N * OH * OW)
    db = dout.sum(axis=(0, 2, 3)) if (need_dw and cache.has_bias) else None
    dw = None
    if need_dw:
        # (G, Fg, P) @ (G, P, K) -> (G, Fg, K): dw summed over the batch inside the product
        dw = xp.matmul(d, cache.cols.transpose(0, 2, 1)).reshape(cache.w.shape)
    dx = None
    if need_dx:
        wmat = cache.w.reshape(G, F // G, Cg * KH * KW)
        dcols = xp.matmul(wmat.transpose(0, 2, 1), d)  # (G, K, Fg) @ (G, Fg, P) -> (G, K, P)
        N_, C, H, W = cache.x_shape
        if (KH, KW) == (1, 1) and cache.stride == (1, 1) and not any(cache.pads):
            dx = xp.ascontiguousarray(dcols.reshape(C, N, H, W).transpose(1, 0, 2, 3))
        else:
            # NOTE: col2im runs with C and N swapped, (C, N, KH, KW, OH, OW), so it reads the
            # columns and writes the padded gradient contiguously; one transpose at the end.
            dcols = dcols.reshape(C, KH, KW, N, OH, OW).transpose(0, 3, 1, 2, 4, 5)
            Hp, Wp = cache.padded_shape[2:]
            dxp_t = col2im(dcols, (C, N, Hp, Wp), cache.stride, cache.dilation)  # (C, N, Hp, Wp)
            dx = xp.ascontiguousarray(unpad(dxp_t, cache.pads).transpose(1, 0, 2, 3))
    return dx, dw, db


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

    Returns
    -------
    out : (N, C, OH, OW); cache : PoolCache
    """
    xp = get_xp(x)
    kernel, stride, pads, (OH, OW) = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    N, C = x.shape[:2]
    xpad = pad(x, pads, value=-float("inf"))
    # (N, C, KH, KW, OH, OW) view -> (N, C, KH*KW, OH, OW): the window as one axis
    win = windows(xpad, kernel, stride, (1, 1), (OH, OW)).reshape(N, C, kernel[0] * kernel[1], OH, OW)
    argmax = win.argmax(axis=2)
    out = xp.take_along_axis(win, argmax[:, :, None], axis=2)[:, :, 0]
    # NOTE: keep the index small: KH*KW < 256 for any pooling window in practice.
    idx_dtype = xp.uint8 if kernel[0] * kernel[1] < 256 else xp.int64
    cache = PoolCache(x.shape, xpad.shape, kernel, stride, pads, argmax.astype(idx_dtype))
    return out, cache


def maxpool2d_backward(dout, cache):
    """Route each window's gradient to its single (first) maximum.

    dx[n, c, oh*sh + i*, ow*sw + j*] += dout[n, c, oh, ow],  (i*, j*) = the window's argmax

    NOTE: after a ReLU whole windows are often 0 and tie. Sending the gradient to
    every tied position (a common ``x == max`` mask shortcut) multiplies it and
    visibly changes Grad-CAM maps; one position per window is what PyTorch does.
    """
    xp = get_xp(dout)
    KH, KW = cache.kernel
    N, C, OH, OW = dout.shape
    taps = xp.arange(KH * KW, dtype=cache.argmax.dtype).reshape(1, 1, KH * KW, 1, 1)
    onehot = cache.argmax[:, :, None] == taps  # (N, C, KH*KW, OH, OW)
    dcols = (onehot * dout[:, :, None]).astype(dout.dtype, copy=False)
    dxp = col2im(dcols.reshape(N, C, KH, KW, OH, OW), cache.padded_shape, cache.stride, (1, 1))
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


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy, arXiv:1502.03167v3).

    train: mu, var = batch mean and biased variance;  eval: mu, var = running statistics
    xhat = (x - mu) / sqrt(var + eps);  out = gamma * xhat + beta

    The caller updates the running statistics from ``cache.mean``/``cache.var``
    (the batch statistics), so this function never mutates its inputs.
    """
    if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
        raise ValueError(f"batch norm expects (N, {gamma.shape[0]}, H, W), got shape {x.shape}")
    xp = get_xp(x)
    if training:
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = (x - mean.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1)
    out = xhat * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)
    return out, BatchNormCache(xhat, inv_std, gamma, training, mean, var)


def batchnorm2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of batch norm.

    dgamma = sum dout * xhat;  dbeta = sum dout  (over N, H, W)
    eval:  dx = dout * gamma * inv_std
    train: dx = inv_std / M * (M * g - sum(g) - xhat * sum(g * xhat)),  g = dout * gamma, M = N*H*W
    """
    axes = (0, 2, 3)
    dgamma = (dout * cache.xhat).sum(axis=axes) if need_dw else None
    dbeta = dout.sum(axis=axes) if need_dw else None
    dx = None
    if need_dx:
        g = dout * cache.gamma.reshape(1, -1, 1, 1)
        inv = cache.inv_std.reshape(1, -1, 1, 1)
        if cache.training:
            M = dout.shape[0] * dout.shape[2] * dout.shape[3]
            gsum = g.sum(axis=axes, keepdims=True)
            gxsum = (g * cache.xhat).sum(axis=axes, keepdims=True)
            dx = (inv / M) * (M * g - gsum - cache.xhat * gxsum)
        else:
            dx = g * inv
    return dx, dgamma, dbeta
