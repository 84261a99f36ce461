"""Sliding windows (im2col) and their adjoint (col2im), plus the geometry both need.

Shared by every tier: the reference ops (``minicnn.functional``), the tuned kernels
(``minicnn.kernels``) and the loop twins (``minicnn.naive``, which take only the geometry).

A convolution or a pooling layer looks at every KH x KW window of its (padded)
input. ``windows`` returns all of them at once as a *strided view*: no copy, no
Python loop over pixels. ``col2im`` is the adjoint: it adds window-shaped
gradients back onto the input, looping only over the KH*KW kernel offsets (each
offset touches a set of distinct pixels, so a strided ``+=`` is exact there).

Geometry (PyTorch's, for input size H, kernel K, stride s, dilation d, padding p_lo/p_hi):

    OH = floor((H + p_lo + p_hi - d*(K-1) - 1) / s) + 1

``"same"`` padding follows TensorFlow: OH = ceil(H / s), and the total padding
max((OH-1)*s + d*(K-1) + 1 - H, 0) is split with the extra pixel at the bottom/right.
"""

from __future__ import annotations

import math
import numbers

from .backend import get_xp


def pair(v, name="value"):
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``. Rejects anything that is not a positive int or a
    pair of them: bools, and floats too (2.5 is refused, not silently taken as 2)."""
    pr = (v, v) if isinstance(v, numbers.Integral) else v
    try:
        a, b = pr
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in (a, b)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, got {v!r}")
    return int(a), int(b)


def conv_padding(padding, in_hw, kernel, stride=(1, 1), dilation=(1, 1)):
    """Normalise a padding spec to ``(top, bottom, left, right)``.

    Parameters
    ----------
    padding : int | (ph, pw) | (top, bottom, left, right) | "same" | "valid"
    in_hw : (H, W) input size (used only by "same")
    kernel, stride, dilation : (h, w) pairs
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode != "same":
            raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        pads = []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = math.ceil(size / s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # NOTE: TF puts the odd pixel after
        return tuple(pads)
    if isinstance(padding, int) and not isinstance(padding, bool):
        padding = (padding, padding)
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = (padding[0], padding[0], padding[1], padding[1])
    if len(padding) != 4 or min(padding) < 0:
        raise ValueError(f"padding must be non-negative: int, (ph, pw) or (t, b, l, r); got {padding!r}")
    return padding


def out_size(size, k, s, d, lo, hi):
    """Output length along one axis (PyTorch's formula, floor mode)."""
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def check_geometry(x_shape, kernel, stride, dilation, pads, what="conv2d"):
    """Return ``(OH, OW)`` or raise a ValueError that says which size is too small."""
    if len(x_shape) != 4:
        raise ValueError(f"{what} expects an (N, C, H, W) input, got shape {tuple(x_shape)}")
    H, W = x_shape[2:]
    OH = out_size(H, kernel[0], stride[0], dilation[0], pads[0], pads[1])
    OW = out_size(W, kernel[1], stride[1], dilation[1], pads[2], pads[3])
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{what}: input {H}x{W} with padding {pads} is smaller than the "
            f"{kernel[0]}x{kernel[1]} kernel (dilation {dilation})"
        )
    return OH, OW


def conv_geometry(x, w, stride, padding, dilation, groups):
    """Validate conv2d's shapes and normalise its hyper-parameters.

    Returns ``(stride, dilation, pads, (OH, OW))`` with pairs for stride and dilation and
    ``pads = (top, bottom, left, right)``; x is (N, C, H, W), w is (F, C // groups, KH, KW).
    """
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


def pool_geometry(x, kernel_size, stride, padding, what):
    """Validate a pooling layer's arguments: ``(kernel, stride, pads, (OH, OW))``.

    ``stride=None`` means the kernel size; each side's padding is at most half the kernel
    (PyTorch's rule: every window then holds at least one real pixel).
    """
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    pads = conv_padding(padding, x.shape[2:], kernel, stride)
    if max(pads[0], pads[1]) > kernel[0] // 2 or max(pads[2], pads[3]) > kernel[1] // 2:
        raise ValueError(f"{what}: padding {pads} must be at most half the kernel {kernel} (as in PyTorch)")
    out_hw = check_geometry(x.shape, kernel, stride, (1, 1), pads, what)
    return kernel, stride, pads, out_hw

def pad(x, pads, value=0.0):
    """Pad the last two axes of ``x`` by ``(top, bottom, left, right)``; no copy when all zero."""
    if not any(pads):
        return x
    xp = get_xp(x)
    t, b, l, r = pads
    N, C, H, W = x.shape
    out = xp.full((N, C, H + t + b, W + l + r), value, dtype=x.dtype)
    out[:, :, t:t + H, l:l + W] = x
    return out


def windows(xp_, kernel, stride, dilation, out_hw):
    """All KH x KW windows of a padded input, as a read-only strided view.

    (N, C, Hp, Wp) -> (N, C, KH, KW, OH, OW), where
    view[n, c, i, j, oh, ow] = xp_[n, c, oh*sh + i*dh, ow*sw + j*dw].

    NOTE: the kernel axes come before the output axes so that a reshape to
    (N, C*KH*KW, OH*OW) is the im2col matrix that one matrix product consumes.
    """
    xp = get_xp(xp_)
    N, C = xp_.shape[:2]
    sN, sC, sH, sW = xp_.strides
    (KH, KW), (sh, sw), (dh, dw), (OH, OW) = kernel, stride, dilation, out_hw
    view = xp.lib.stride_tricks.as_strided(
        xp_,
        shape=(N, C, KH, KW, OH, OW),
        strides=(sN, sC, sH * dh, sW * dw, sH * sh, sW * sw),
    )
    return view


def col2im(dcols, padded_shape, stride, dilation, out=None):
    """Adjoint of ``windows``: sum window gradients back onto the padded input.

    (N, C, KH, KW, OH, OW) -> (N, C, Hp, Wp), with
    dx[n, c, oh*sh + i*dh, ow*sw + j*dw] += dcols[n, c, i, j, oh, ow].

    The loop runs over the KH*KW kernel offsets only: for a fixed (i, j) the
    targets are distinct pixels, so a strided slice ``+=`` adds each exactly once.
    With ``out`` (an array of ``padded_shape``, or a view into a larger one) the sums are
    added into it, which lets a caller scatter one chunk of output rows at a time.
    """
    xp = get_xp(dcols)
    N, C, KH, KW, OH, OW = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx = xp.zeros(padded_shape, dtype=dcols.dtype) if out is None else out
    for i in range(KH):
        for j in range(KW):
            h0, w0 = i * dh, j * dw
            dx[:, :, h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw] += dcols[:, :, i, j]
    return dx


def unpad(x, pads):
    """Inverse of ``pad`` for gradients: drop the padded border (a view)."""
    t, b, l, r = pads
    H, W = x.shape[2:]
    return x[:, :, t:H - b, l:W - r]
