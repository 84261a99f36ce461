"""Loop twins of the remaining ops: ReLU/ReLU6, linear, global average pooling, dropout, batch norm.

Same signatures and semantics as in ``minicnn.functional`` (and ``minicnn.kernels``), written
as plain Python loops over elements, channels and sums, one scalar at a time: the version a
student writes first, and the third voice in tests/test_tiers.py. Each backward consumes only
the cache made by its own forward. ``minicnn.naive`` re-exports every function here, so
``minicnn.naive.relu_forward`` is the name to use.

Slow by design: meant for the small arrays of tests and lessons.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

RELU_RULES = ("standard", "deconvnet", "guided")


# --------------------------------------------------------------------------- ReLU / ReLU6
def relu_forward(x, upper=None, need_mask=True):
    """out = min(max(x, 0), upper) element by element; mask = [0 < x < upper].

    The mask is None unless ``need_mask``. Any shape and dtype (integers stay integers).
    """
    x = np.asarray(x)
    out = np.empty_like(x)
    mask = np.empty(x.shape, dtype=bool)
    for i in np.ndindex(x.shape):
        v = x[i]
        passed = v > 0 and (upper is None or v < upper)  # the derivative at 0 and 6 is 0
        mask[i] = passed
        out[i] = v if passed else (0 if v <= 0 else upper)
    return out, (mask if need_mask else None)


def relu_backward(dout, mask, rule="standard"):
    """dx element by element: standard dout*[passed], deconvnet max(dout, 0), guided
    dout*[passed]*[dout > 0] (Springenberg et al., arXiv:1412.6806, Fig. 1)."""
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; use one of {RELU_RULES}")
    dout = np.asarray(dout)
    dx = np.zeros_like(dout)
    for i in np.ndindex(dout.shape):
        d = dout[i]
        if rule == "standard" and mask[i]:
            dx[i] = d
        elif rule == "deconvnet" and d > 0:
            dx[i] = d
        elif rule == "guided" and mask[i] and d > 0:
            dx[i] = d
    return dx


# --------------------------------------------------------------------------- linear
class NaiveLinearCache(NamedTuple):
    x: object  # (N, in)
    w: object  # (out, in)
    has_bias: bool


def linear_forward(x, w, b=None):
    """out[n, o] = b[o] + sum_i x[n, i] * w[o, i], one multiply-add at a time."""
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear expects (N, {w.shape[1]}) input, got shape {x.shape}")
    N, D = x.shape
    O = w.shape[0]
    out = np.zeros((N, O), dtype=np.result_type(x, w))
    for n in range(N):
        for o in range(O):
            acc = 0.0 if b is None else b[o]
            for i in range(D):
                acc += x[n, i] * w[o, i]
            out[n, o] = acc
    return out, NaiveLinearCache(x, w, b is not None)


def linear_backward(dout, cache, need_dx=True, need_dw=True):
    """dx[n, i] = sum_o dout[n, o] w[o, i];  dw[o, i] = sum_n dout[n, o] x[n, i];
    db[o] = sum_n dout[n, o]: one multiply-add at a time."""
    x, w, has_bias = cache
    N, O = dout.shape
    D = x.shape[1]
    dx = np.zeros(x.shape, dtype=dout.dtype) if need_dx else None
    dw = np.zeros(w.shape, dtype=dout.dtype) if need_dw else None
    db = np.zeros(O, dtype=dout.dtype) if (need_dw and has_bias) else None
    for n in range(N):
        for o in range(O):
            d = dout[n, o]
            if db is not None:
                db[o] += d
            for i in range(D):
                if need_dx:
                    dx[n, i] += d * w[o, i]
                if need_dw:
                    dw[o, i] += d * x[n, i]
    return dx, dw, db


# --------------------------------------------------------------------------- global average pooling
def global_avg_pool_forward(x):
    """out[n, k] = 1/(H*W) sum_{i, j} x[n, k, i, j], summed pixel by pixel. Cache: x's shape."""
    if x.ndim != 4:
        raise ValueError(f"global average pooling expects (N, C, H, W), got shape {x.shape}")
    N, C, H, W = x.shape
    out = np.zeros((N, C), dtype=x.dtype)
    for n, k in np.ndindex(N, C):
        acc = 0.0
        for i, j in np.ndindex(H, W):
            acc += x[n, k, i, j]
        out[n, k] = acc / (H * W)
    return out, x.shape


def global_avg_pool_backward(dout, x_shape):
    """dx[n, k, i, j] = dout[n, k] / (H*W) for every pixel (i, j)."""
    N, C, H, W = x_shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n, k, i, j in np.ndindex(N, C, H, W):
        dx[n, k, i, j] = dout[n, k] / (H * W)
    return dx


# --------------------------------------------------------------------------- dropout
def dropout_forward(x, p, keep_mask):
    """Inverted dropout, element by element: out = x / (1 - p) where kept, 0 where dropped.

    The cache is the mask of factors, 1/(1 - p) where kept and 0 where dropped.
    """
    scale = x.dtype.type(1.0 / (1.0 - p))
    out = np.zeros_like(x)
    mask = np.zeros(x.shape, dtype=x.dtype)
    for i in np.ndindex(x.shape):
        if keep_mask[i]:
            mask[i] = scale
            out[i] = x[i] * scale
    return out, mask


def dropout_backward(dout, mask):
    """dx = dout * mask element by element: the gradient flows where the forward kept, scaled."""
    dx = np.zeros_like(dout)
    for i in np.ndindex(dout.shape):
        dx[i] = dout[i] * mask[i]
    return dx


# --------------------------------------------------------------------------- batch norm
class NaiveBatchNormCache(NamedTuple):
    x: object  # (N, C, H, W)
    gamma: object
    training: bool
    mean: object  # batch mean (train) or running mean (eval), (C,)
    var: object  # biased batch variance (train) or running variance (eval), (C,)
    eps: float


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, eps=1e-5):
    """Batch norm one channel at a time, with explicit sums (Ioffe & Szegedy, arXiv:1502.03167v3).

    mu_c = 1/M sum x;  var_c = 1/M sum (x - mu_c)^2  (train; eval uses the running values)
    out = gamma_c * (x - mu_c) / sqrt(var_c + eps) + beta_c,   M = N*H*W
    """
    if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
        raise ValueError(f"batch norm expects (N, {gamma.shape[0]}, H, W), got shape {x.shape}")
    N, C, H, W = x.shape
    M = N * H * W
    out = np.empty_like(x)
    mean, var = np.empty(C, dtype=x.dtype), np.empty(C, dtype=x.dtype)
    for c in range(C):
        pixels = list(np.ndindex(N, H, W))
        if training:
            mu = sum(x[n, c, i, j] for n, i, j in pixels) / M
            v = sum((x[n, c, i, j] - mu) ** 2 for n, i, j in pixels) / M
        else:
            mu, v = running_mean[c], running_var[c]
        mean[c], var[c] = mu, v
        for n, i, j in pixels:
            out[n, c, i, j] = gamma[c] * (x[n, c, i, j] - mu) / np.sqrt(v + eps) + beta[c]
    return out, NaiveBatchNormCache(x, gamma, training, mean, var, eps)


def batchnorm2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients one channel at a time, in the compact form of the chain rule:

    dgamma_c = sum dout * xhat;  dbeta_c = sum dout;  xhat = (x - mu_c) / sqrt(var_c + eps)
    train: dx = gamma_c / sqrt(var_c + eps) / M * (M dout - dbeta_c - xhat * dgamma_c)
    eval:  dx = gamma_c / sqrt(var_c + eps) * dout
    """
    x, gamma, training, mean, var, eps = cache
    N, C, H, W = x.shape
    M = N * H * W
    dx = np.empty_like(dout) if need_dx else None
    dgamma, dbeta = np.empty(C, dtype=dout.dtype), np.empty(C, dtype=dout.dtype)
    for c in range(C):
        pixels = list(np.ndindex(N, H, W))
        inv_std = 1.0 / np.sqrt(var[c] + eps)
        xhat = {p: (x[p[0], c, p[1], p[2]] - mean[c]) * inv_std for p in pixels}
        dgamma[c] = sum(dout[n, c, i, j] * xhat[n, i, j] for n, i, j in pixels)
        dbeta[c] = sum(dout[n, c, i, j] for n, i, j in pixels)
        if not need_dx:
            continue
        for n, i, j in pixels:
            d = dout[n, c, i, j]
            if training:
                dx[n, c, i, j] = (gamma[c] * inv_std / M
                                  * (M * d - dbeta[c] - xhat[n, i, j] * dgamma[c]))
            else:
                dx[n, c, i, j] = gamma[c] * inv_std * d
    return dx, (dgamma if need_dw else None), (dbeta if need_dw else None)
