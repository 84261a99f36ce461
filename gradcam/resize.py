"""Resizing coarse maps to the image, and per-image normalisation to [0, 1].

Grad-CAM's coarse map (u x v, e.g. 14 x 14) is brought to the input's resolution by bilinear
interpolation (Selvaraju et al., arXiv:1610.02391v4, Sec. 3 and Fig. 2). The interpolation is
separable and linear, so a resize is two small matrix products:

    out = R_h @ m @ R_w^T          R_h: (H, h), R_w: (W, w), m: (N, h, w) -> (N, H, W)

where row o of R holds the interpolation weights of output position o. The source coordinate
of an output position ``dst`` along an axis of length ``n_in`` resized to ``n_out`` is

    align_corners=False (half-pixel centres; PyTorch's default, OpenCV's INTER_LINEAR):
        src = (dst + 0.5) * n_in / n_out - 0.5, clamped to [0, n_in - 1]
    align_corners=True (corner pixels map onto corner pixels):
        src = dst * (n_in - 1) / (n_out - 1)          (src = 0 when n_out == 1)
    mode="nearest" (PyTorch's "nearest", which is not OpenCV's INTER_NEAREST_EXACT):
        src = floor(dst * n_in / n_out)               (exact integer arithmetic here)

and bilinear weights split between i0 = floor(src) and i1 = min(i0 + 1, n_in - 1) as
(1 - t, t) with t = src - i0. For upsampling, half-pixel bilinear also equals Pillow's float
bilinear resize; for downsampling Pillow (and torch's antialias=True) low-pass filter first,
this module (like torch's default) does not.
"""

from __future__ import annotations

from minicnn.backend import get_xp
from minicnn.im2col import pair

MODES = ("bilinear", "nearest")


def interp_matrix(n_in, n_out, mode="bilinear", align_corners=False, xp=None, dtype="float64"):
    """The (n_out, n_in) matrix R with out = R @ m along one axis.

    Parameters
    ----------
    n_in, n_out : int, axis lengths (>= 1)
    mode : "bilinear" or "nearest"
    align_corners : bool, bilinear only (see the module docstring)
    xp : array module of the result (NumPy by default); dtype : its dtype
    Returns
    -------
    R : (n_out, n_in); every row sums to 1
    """
    if xp is None:
        xp = get_xp()
    dst = xp.arange(n_out, dtype="float64")
    if mode == "nearest":
        # floor(dst * n_in / n_out) in integers: no float rounding at exact multiples
        i0 = xp.minimum((xp.arange(n_out) * n_in) // n_out, n_in - 1)
        i1, t = i0, xp.zeros(n_out, dtype="float64")
    else:
        if align_corners:
            src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else xp.zeros_like(dst)
        else:
            src = (dst + 0.5) * (n_in / n_out) - 0.5
        src = xp.clip(src, 0.0, n_in - 1)
        i0 = xp.floor(src).astype("int64")
        i1 = xp.minimum(i0 + 1, n_in - 1)
        t = src - i0
    # (n_out, n_in) by comparison with the column index: no scatter, same code on NumPy and CuPy;
    # where i0 == i1 (clamped edge, nearest) the two terms add up to weight 1
    cols = xp.arange(n_in).reshape(1, n_in)
    R = (1.0 - t)[:, None] * (cols == i0[:, None]) + t[:, None] * (cols == i1[:, None])
    return R.astype(dtype)


def resize(maps, size, mode="bilinear", align_corners=False):
    """Resize 2-D maps, one per image, to ``size`` (separable interpolation).

    out[n] = R_h @ maps[n] @ R_w^T     (see the module docstring for R)

    Parameters
    ----------
    maps : (N, h, w) or (h, w) array (NumPy or CuPy); integer maps are resized as float64
    size : (H, W) or int (square)
    mode : "bilinear" (default) or "nearest"
    align_corners : bool; False = half-pixel centres (PyTorch's default); bilinear only
    Returns
    -------
    out : (N, H, W) or (H, W), same array module; floating dtype kept

    Examples
    --------
    >>> import numpy as np
    >>> resize(np.array([[1.0, 2.0], [3.0, 4.0]]), 4)[0]
    array([1.  , 1.25, 1.75, 2.  ])
    """
    xp = get_xp(maps)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    if mode == "nearest" and align_corners:
        raise ValueError("align_corners applies to bilinear interpolation only (as in PyTorch)")
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (N, h, w) or (h, w), got shape {tuple(maps.shape)}")
    H, W = pair(size, "size")
    h, w = maps.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"cannot resize an empty map of shape {tuple(maps.shape)}")
    dtype = maps.dtype if maps.dtype.kind == "f" else "float64"
    R_h = interp_matrix(h, H, mode, align_corners, xp, dtype)
    R_w = interp_matrix(w, W, mode, align_corners, xp, dtype)
    # (H, h) @ (..., h, w) @ (w, W) -> (..., H, W); matmul broadcasts over the batch axis
    return R_h @ maps.astype(dtype, copy=False) @ R_w.T


def normalize(maps):
    """Divide each map by its own maximum, so a non-negative map lands in [0, 1] with max 1.

    out[n] = maps[n] / max_{i,j} maps[n, i, j]

    A map whose maximum is not positive (an all-zero Grad-CAM map: ReLU removed everything)
    is returned unchanged, so zeros stay zeros: no NaN and no division warning.

    Parameters
    ----------
    maps : (N, H, W) or (H, W), meant to be non-negative (after a ReLU)
    Returns
    -------
    out : same shape, module and dtype
    """
    xp = get_xp(maps)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (N, H, W) or (H, W), got shape {tuple(maps.shape)}")
    peak = maps.max(axis=(-2, -1), keepdims=True)
    # NOTE: replace non-positive peaks by 1 before dividing, rather than dividing and masking,
    # so no 0/0 is ever evaluated
    return maps / xp.where(peak > 0, peak, xp.ones_like(peak))
