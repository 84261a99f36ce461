"""Pillow's bicubic resize (``Image.resize(size, Resampling.BICUBIC)``) as two matrix products:
the resize torchcam's ``overlay_mask`` applies to its map (torchcam/utils.py:49).

Pillow (libImaging/Resample.c, ``precompute_coeffs``) weights the input pixels of output
position o along an axis of length n_in resized to n_out with

    scale = n_in / n_out;  fs = max(scale, 1);  support = 2 fs;  centre = (o + 0.5) scale
    taps x = max(int(centre - support + 0.5), 0) .. min(int(centre + support + 0.5), n_in) - 1
    w_x = cubic((x - centre + 0.5) / fs) / sum of those w       (renormalised at the borders)
    cubic(t) = (a + 2)|t|^3 - (a + 3)|t|^2 + 1 for |t| < 1, a(|t|^3 - 5|t|^2 + 8|t| - 4) for
               |t| < 2, else 0,  with a = -0.5

NOTE: Pillow renormalises the taps that fall inside the image, where torch's bicubic clamps
the index; the two differ near the border.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.backend import get_xp
from minicnn.im2col import pair

A = -0.5  # Pillow's bicubic parameter (Resample.c bicubic_filter)


def cubic(t):
    """Keys' cubic convolution kernel with a = -0.5, on a NumPy array."""
    t = np.abs(t)
    inner = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    outer = (((t - 5.0) * t + 8.0) * t - 4.0) * A
    return np.where(t < 1.0, inner, np.where(t < 2.0, outer, 0.0))


def bicubic_matrix(n_in, n_out):
    """The (n_out, n_in) matrix of Pillow's bicubic resize along one axis (float64, NumPy)."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = 2.0 * fs
    R = np.zeros((n_out, n_in))
    for o in range(n_out):
        centre = (o + 0.5) * scale
        lo = max(math.trunc(centre - support + 0.5), 0)
        hi = min(math.trunc(centre + support + 0.5), n_in)
        w = cubic((np.arange(lo, hi) - centre + 0.5) / fs)
        R[o, lo:hi] = w / w.sum() if w.sum() != 0 else w
    return R


def resize_bicubic(maps, size):
    """Resize (N, h, w) maps to ``size`` (H, W) as Pillow's bicubic does for a float ("F") image.

    out[n] = R_h @ maps[n] @ R_w^T      R from ``bicubic_matrix``
    """
    xp = get_xp(maps)
    H, W = pair(size, "size")
    Rh = xp.asarray(bicubic_matrix(maps.shape[-2], H), dtype=maps.dtype)
    Rw = xp.asarray(bicubic_matrix(maps.shape[-1], W), dtype=maps.dtype)
    return Rh @ maps @ Rw.T
