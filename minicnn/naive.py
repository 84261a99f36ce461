"""Naive loop twins of every op: the plainest version of each, and the tests' oracle.

Each function here has the *same* signature and semantics as its twins in
``minicnn.functional`` (the reference tier) and ``minicnn.kernels`` (the tuned tier);
it simply walks over the output positions ``(oh, ow)`` (and over the groups) with Python
loops, doing one small dot product over ``(N, C, KH, KW)`` at each position. This is the code
an assignment asks a student to write (CS231n's ``conv_forward_naive``), and the test oracle
both tiers are checked against (``tests/test_naive_vs_fast.py``, ``tests/test_tiers.py``).
Conv and pooling live here; ReLU/ReLU6, linear, global average pooling, dropout and batch norm
live in ``minicnn.naive_layers`` and are re-exported below (``minicnn.naive.relu_forward``).

Geometry (padding specs, output sizes, error messages) comes from ``im2col.py``;
the window extraction itself (``windows``/``col2im``) is deliberately *not*
shared, so a bug there cannot hide in both twins. Each backward consumes only
the ``NamedTuple`` cache made by its own forward.

Output size along one axis (PyTorch's formula, floor mode), for input size H,
kernel K, stride s, dilation d and padding p_lo/p_hi:

    OH = floor((H + p_lo + p_hi - d*(K-1) - 1) / s) + 1
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import get_xp
from .im2col import check_geometry, conv_padding, pad, pair
from .naive_layers import (batchnorm2d_backward, batchnorm2d_forward,  # noqa: F401 (re-exported)
                           dropout_backward, dropout_forward, global_avg_pool_backward,
                           global_avg_pool_forward, linear_backward, linear_forward,
                           relu_backward, relu_forward)


class NaiveConv2dCache(NamedTuple):
    """What ``conv2d_backward`` needs: the input (unpadded, not copied) and the geometry."""

    x: object  # (N, C, H, W)
    w: object  # (F, C//groups, KH, KW)
    has_bias: bool
    stride: tuple
    dilation: tuple
    pads: tuple  # (top, bottom, left, right)
    groups: int


class NaivePool2dCache(NamedTuple):
    """What the pooling backwards need: shapes, geometry and (max-pool only) the argmax."""

    x_shape: tuple  # (N, C, H, W)
    dtype: object
    kernel: tuple
    stride: tuple
    pads: tuple  # (top, bottom, left, right)
    argmax: object  # (N, C, OH, OW) flat index of the maximum in its window; None for avg-pool


def _float(x, name="x"):
    """Return ``x`` unchanged when it is a float array, else a float64 copy (ints truncate)."""
    xp = get_xp(x)
    x = xp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch), by loops over output positions.

    out[n, g*Fg + f, oh, ow] = b[g*Fg + f]
        + sum_{c,i,j} w[g*Fg + f, c, i, j] * x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]

    with Cg = C / groups input channels and Fg = F / groups filters per group, and
    x_pad the input zero-padded by (top, bottom, left, right).

    Parameters
    ----------
    x : (N, C, H, W) float array
    w : (F, C // groups, KH, KW)
    b : (F,) or None
    stride, dilation : int or (sh, sw) / (dh, dw)
    padding : int | (ph, pw) | (top, bottom, left, right) | "same" (TensorFlow's) | "valid"
    groups : int dividing both C and F (groups == C is a depthwise convolution)

    Returns
    -------
    out : (N, F, OH, OW), dtype of ``x``
    cache : NaiveConv2dCache for ``conv2d_backward``

    See Also
    --------
    minicnn.functional.conv2d_forward : the vectorised (im2col) twin.
    """
    x = _float(x)
    xp = get_xp(x, w, b)
    if w.ndim != 4:
        raise ValueError(f"conv2d: w must be 4-D (F, C//groups, KH, KW), got {tuple(w.shape)}")
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if C % groups or F % groups:
        raise ValueError(
            f"conv2d: channels C={C} and filters F={F} must both be divisible by groups={groups}"
        )
    if Cg != C // groups:
        raise ValueError(
            f"conv2d: w has {Cg} input channels but x has C={C} channels in {groups} group(s) "
            f"(expected C/groups={C // groups})"
        )
    if b is not None and tuple(b.shape) != (F,):
        raise ValueError(f"conv2d: b must have shape ({F},), got {tuple(b.shape)}")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pads = conv_padding(padding, (H, W), (KH, KW), stride, dilation)
    OH, OW = check_geometry(x.shape, (KH, KW), stride, dilation, pads, "conv2d")
    (sh, sw), (dh, dw) = stride, dilation
    Fg = F // groups

    x_pad = pad(x, pads)  # (N, C, H + top + bottom, W + left + right)
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for g in range(groups):
        xg = x_pad[:, g * Cg:(g + 1) * Cg]  # (N, Cg, Hp, Wp)
        wg = w[g * Fg:(g + 1) * Fg].reshape(Fg, Cg * KH * KW)  # (Fg, Cg*KH*KW)
        for oh in range(OH):
            for ow in range(OW):
                h0, w0 = oh * sh, ow * sw
                # the receptive field of (oh, ow): (N, Cg, KH, KW), rows/cols dilation apart
                win = xg[:, :, h0:h0 + dh * (KH - 1) + 1:dh, w0:w0 + dw * (KW - 1) + 1:dw]
                out[:, g * Fg:(g + 1) * Fg, oh, ow] = win.reshape(N, -1) @ wg.T  # (N, Fg)
    if b is not None:
        out += b.reshape(1, F, 1, 1).astype(x.dtype, copy=False)
    return out, NaiveConv2dCache(x, w, b is not None, stride, dilation, pads, groups)


def conv2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of ``conv2d_forward``, by the same loops run backwards.

    Each output position (oh, ow) used the window x_pad[n, group, oh*sh + i*dh, ow*sw + j*dw],
    so its upstream gradient flows back along the same connections:

        dw[f, c, i, j]                          += sum_n dout[n, f, oh, ow] * window[n, c, i, j]
        dx_pad[n, g*Cg + c, oh*sh + i*dh, ...]  += sum_f dout[n, f, oh, ow] * w[f, c, i, j]
        db[f] = sum_{n,oh,ow} dout[n, f, oh, ow]

    and dx is dx_pad with the padded border dropped.

    Parameters
    ----------
    dout : (N, F, OH, OW) upstream gradient
    cache : NaiveConv2dCache from ``naive.conv2d_forward``
    need_dx, need_dw : skip the gradients that are not needed (returned as None)

    Returns
    -------
    dx : (N, C, H, W) or None
    dw : (F, C // groups, KH, KW) or None
    db : (F,), or None when the forward had no bias or need_dw is False (db is a parameter grad)

    See Also
    --------
    minicnn.functional.conv2d_backward : the vectorised twin.
    """
    x, w, has_bias, (sh, sw), (dh, dw_), pads, groups = cache
    xp = get_xp(dout, x)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    OH, OW = check_geometry(x.shape, (KH, KW), (sh, sw), (dh, dw_), pads, "conv2d")
    _check_dout(dout, (N, F, OH, OW), "conv2d_backward")
    dout = dout.astype(x.dtype, copy=False)

    x_pad = pad(x, pads)
    dx_pad = xp.zeros(x_pad.shape, dtype=x.dtype) if need_dx else None
    dw = xp.zeros(w.shape, dtype=x.dtype) if need_dw else None
    for g in range(groups):
        cs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
        wg = w[fs].reshape(Fg, Cg * KH * KW).astype(x.dtype, copy=False)
        for oh in range(OH):
            for ow in range(OW):
                hs = slice(oh * sh, oh * sh + dh * (KH - 1) + 1, dh)
                ws = slice(ow * sw, ow * sw + dw_ * (KW - 1) + 1, dw_)
                d = dout[:, fs, oh, ow]  # (N, Fg)
                if need_dw:
                    win = x_pad[:, cs, hs, ws].reshape(N, -1)  # (N, Cg*KH*KW)
                    dw[fs] += (d.T @ win).reshape(Fg, Cg, KH, KW)
                if need_dx:
                    # NOTE: one window's KH*KW targets are distinct pixels: a slice += is exact.
                    dx_pad[:, cs, hs, ws] += (d @ wg).reshape(N, Cg, KH, KW)
    dx = None
    if need_dx:
        t, b_, l, r = pads
        dx = xp.ascontiguousarray(dx_pad[:, :, t:t + H, l:l + W])
    db = dout.sum(axis=(0, 2, 3)) if (need_dw and has_bias) else None
    return dx, dw, db


def _pool_geometry(x, kernel_size, stride, padding, what):
    """Shared argument checks of the two pools: (kernel, stride, pads, (OH, OW))."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    pads = conv_padding(padding, x.shape[2:], kernel, stride)  # (top, bottom, left, right)
    # NOTE: PyTorch's rule; it guarantees that every window holds at least one real pixel.
    if max(pads[:2]) > kernel[0] // 2 or max(pads[2:]) > kernel[1] // 2:
        raise ValueError(f"{what}: padding {pads} must be at most half the kernel {kernel}")
    out_hw = check_geometry(x.shape, kernel, stride, (1, 1), pads, what)
    return kernel, stride, pads, out_hw


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """2-D max pooling (floor mode, padding with -inf as PyTorch does), by loops.

    out[n, c, oh, ow] = max_{i,j} x_pad[n, c, oh*sh + i, ow*sw + j]

    The cache records, for each window, the flat index i*KW + j of the *first*
    maximum in row-major order (``np.argmax`` of the flattened window), so on
    ties the whole gradient goes to that one element, as in PyTorch.

    Parameters
    ----------
    x : (N, C, H, W) float array
    kernel_size : int or (KH, KW)
    stride : int, (sh, sw), or None (= kernel_size)
    padding : int | (ph, pw) | (top, bottom, left, right) | "same" | "valid";
        each side at most half the kernel (PyTorch's rule)

    Returns
    -------
    out : (N, C, OH, OW), dtype of ``x``
    cache : NaivePool2dCache (with argmax) for ``maxpool2d_backward``

    See Also
    --------
    minicnn.functional.maxpool2d_forward : the vectorised twin.
    """
    x = _float(x)
    xp = get_xp(x)
    N, C = x.shape[:2]
    geometry = _pool_geometry(x, kernel_size, stride, padding, "maxpool2d")
    (KH, KW), (sh, sw), pads, (OH, OW) = geometry
    x_pad = pad(x, pads, value=-np.inf)
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            win = x_pad[:, :, oh * sh:oh * sh + KH, ow * sw:ow * sw + KW].reshape(N, C, KH * KW)
            argmax[:, :, oh, ow] = win.argmax(axis=2)  # first maximum in row-major order
            out[:, :, oh, ow] = win.max(axis=2)
    return out, NaivePool2dCache(tuple(x.shape), x.dtype, (KH, KW), (sh, sw), pads, argmax)


def maxpool2d_backward(dout, cache):
    """Gradient of ``maxpool2d_forward``: each window's gradient goes to its (first) maximum.

    dx_pad[n, c, oh*sh + i*, ow*sw + j*] += dout[n, c, oh, ow],   (i*, j*) = the cached argmax

    Windows may overlap (stride < kernel), so contributions add up.

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : NaivePool2dCache from ``naive.maxpool2d_forward``

    Returns
    -------
    dx : (N, C, H, W)
    """
    (N, C, H, W), dtype, (KH, KW), (sh, sw), pads, argmax = cache
    if argmax is None:
        raise ValueError("maxpool2d_backward needs the cache of maxpool2d_forward")
    xp = get_xp(dout)
    _check_dout(dout, argmax.shape, "maxpool2d_backward")
    t, b, l, r = pads
    dx_pad = xp.zeros((N, C, H + t + b, W + l + r), dtype=dtype)
    flat = xp.arange(KH * KW).reshape(1, 1, KH * KW)
    for oh in range(argmax.shape[2]):
        for ow in range(argmax.shape[3]):
            # one-hot mask of the chosen maximum in each window: (N, C, KH, KW)
            mask = (flat == argmax[:, :, oh, ow, None]).reshape(N, C, KH, KW)
            hs, ws = slice(oh * sh, oh * sh + KH), slice(ow * sw, ow * sw + KW)
            dx_pad[:, :, hs, ws] += mask * dout[:, :, oh, ow, None, None]
    return xp.ascontiguousarray(dx_pad[:, :, t:t + H, l:l + W])


def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    """2-D average pooling (floor mode), zero padding counted in the mean, by loops.

    out[n, c, oh, ow] = 1/(KH*KW) * sum_{i,j} x_pad[n, c, oh*sh + i, ow*sw + j]

    (PyTorch's default ``count_include_pad=True``: the divisor is always KH*KW.)

    Parameters
    ----------
    x : (N, C, H, W) float array
    kernel_size : int or (KH, KW)
    stride : int, (sh, sw), or None (= kernel_size)
    padding : int | (ph, pw) | (top, bottom, left, right) | "same" | "valid";
        each side at most half the kernel (PyTorch's rule)

    Returns
    -------
    out : (N, C, OH, OW), dtype of ``x``
    cache : NaivePool2dCache (argmax None) for ``avgpool2d_backward``

    See Also
    --------
    minicnn.functional.avgpool2d_forward : the vectorised twin.
    """
    x = _float(x)
    xp = get_xp(x)
    N, C = x.shape[:2]
    geometry = _pool_geometry(x, kernel_size, stride, padding, "avgpool2d")
    (KH, KW), (sh, sw), pads, (OH, OW) = geometry
    x_pad = pad(x, pads, value=0.0)
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            win = x_pad[:, :, oh * sh:oh * sh + KH, ow * sw:ow * sw + KW]  # (N, C, KH, KW)
            out[:, :, oh, ow] = win.mean(axis=(2, 3))
    return out, NaivePool2dCache(tuple(x.shape), x.dtype, (KH, KW), (sh, sw), pads, None)


def avgpool2d_backward(dout, cache):
    """Gradient of ``avgpool2d_forward``: each window shares its gradient equally.

    dx_pad[n, c, oh*sh + i, ow*sw + j] += dout[n, c, oh, ow] / (KH*KW)   for every (i, j)

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : NaivePool2dCache from ``naive.avgpool2d_forward``

    Returns
    -------
    dx : (N, C, H, W)  (the share that fell on padding is dropped)
    """
    (N, C, H, W), dtype, (KH, KW), (sh, sw), pads, _ = cache
    xp = get_xp(dout)
    OH, OW = check_geometry((N, C, H, W), (KH, KW), (sh, sw), (1, 1), pads, "avgpool2d")
    _check_dout(dout, (N, C, OH, OW), "avgpool2d_backward")
    t, b, l, r = pads
    dx_pad = xp.zeros((N, C, H + t + b, W + l + r), dtype=dtype)
    share = (dout / (KH * KW)).astype(dtype, copy=False)
    for oh in range(OH):
        for ow in range(OW):
            hs, ws = slice(oh * sh, oh * sh + KH), slice(ow * sw, ow * sw + KW)
            dx_pad[:, :, hs, ws] += share[:, :, oh, ow, None, None]
    return xp.ascontiguousarray(dx_pad[:, :, t:t + H, l:l + W])


def _check_dout(dout, shape, what):
    """Raise a ValueError when ``dout`` is not shaped like the forward's output."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{what}: dout has shape {tuple(dout.shape)}, expected {tuple(shape)}")
