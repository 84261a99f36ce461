"""Metrics of explanation maps against known ground truth (masks, boxes): pure, vectorised
functions of (N, H, W) maps, used by ``gradcam.evaluate`` (which says what each one scores and
why) and importable from there.

Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1 (localisation); pointing game: Zhang et al.,
arXiv:1608.00507.

Maps, masks and boxes may live on the host or on a device (CuPy): each function copies its
inputs to the host once, at the boundary (``minicnn.backend.to_numpy``), because the measures
run on the host (connected components are a Python loop) and ``np.asarray`` of a device array
is an error.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import to_numpy

from ..resize import resize


def _host(a, dtype=None):
    """``a`` as a NumPy array (a device array is copied to the host), with ``dtype``."""
    return np.asarray(to_numpy(a), dtype=dtype)

def pixel_saliency(g):
    """(N, C, H, W) Guided Backprop / Guided Grad-CAM map -> (N, H, W) NumPy saliency >= 0.

    S[n, h, w] = max_c |g[n, c, h, w]|
    """
    return np.abs(to_numpy(g)).max(axis=1)


def pointing_game(maps, masks, tolerance=0.0):
    """Pointing game (Zhang et al., arXiv:1608.00507): is the map's peak on the object?

    p[n] = argmax_{h,w} maps[n]      (ties: the first maximum in row-major order)
    hit[n] = min_{q in masks[n]} ||p[n] - q||_2 <= tolerance

    A constant map (e.g. all zero) points nowhere: a miss. Zhang et al. allow 15 px at 224
    (``ZHANG_TOLERANCE``); the default 0 asks for the peak pixel itself to be on the object.

    Parameters
    ----------
    maps : (N, H, W) real; masks : (N, H, W) bool; tolerance : pixels, >= 0
    Returns
    -------
    hit : (N,) bool
    """
    maps, masks = _host(maps), _host(masks, dtype=bool)
    N, H, W = _check(maps, masks)
    flat = maps.reshape(N, -1)
    py, px = np.divmod(flat.argmax(axis=1), W)  # NumPy's argmax returns the first maximum
    Y, X = np.mgrid[0:H, 0:W]
    near = (Y - py[:, None, None]) ** 2 + (X - px[:, None, None]) ** 2 <= tolerance**2
    return (near & masks).any(axis=(1, 2)) & (flat.max(axis=1) > flat.min(axis=1))


def connected_components(binary, connectivity=8):
    """Label connected components of binary images (NumPy only): min-label propagation.

    lab(p) <- min(lab(q) : q = p or a neighbour of p in the set);  lab(p) <- lab(lab(p))

    until nothing changes (the second step, pointer jumping, cuts the number of sweeps). Labels
    are flat pixel indices, so at the fixed point each pixel holds the smallest index of its
    component; components are then numbered 1..k per image in row-major order of their first
    pixel (the order of a raster-scan flood fill).

    Parameters
    ----------
    binary : (N, H, W) bool
    connectivity : 4 (edge neighbours) or 8 (edges and corners; MATLAB bwlabel's default)
    Returns
    -------
    labels : (N, H, W) int64, 0 = background
    """
    b = _host(binary, dtype=bool)
    if b.ndim != 3 or connectivity not in (4, 8):
        raise ValueError(f"need (N, H, W) images, connectivity 4 or 8; got {b.shape}, "
                         f"{connectivity}")
    N, H, W = b.shape
    big = N * H * W  # larger than any index: the background never wins a minimum
    idx = np.arange(big).reshape(N, H, W)
    lab = np.where(b, idx, big)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else []
    while True:
        # NOTE: padding each image with `big` keeps neighbours from crossing image borders
        pad = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        new = lab.copy()
        for dy, dx in steps:
            np.minimum(new, pad[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W], out=new)
        new = np.where(b, new, big).ravel()
        fg = new < big
        new[fg] = new[new[fg]]  # a label is a pixel of the same component: take ITS label
        new = new.reshape(N, H, W)
        if np.array_equal(new, lab):
            break
        lab = new
    number = np.cumsum((b & (lab == idx)).reshape(N, -1), axis=1).ravel()  # roots, per image
    return np.where(b, number[np.minimum(lab, big - 1)], 0)


def box_iou(a, b):
    """IoU of boxes (x0, y0, x1, y1) with exclusive ends (pixel counts): |a & b| / |a | b|.

    Parameters
    ----------
    a, b : (N, 4)
    Returns
    -------
    iou : (N,) float64 in [0, 1] (0 when both boxes are empty)
    """
    a, b = _host(a, dtype=np.int64), _host(b, dtype=np.int64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = np.prod(a[:, 2:] - a[:, :2], axis=1) + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def localisation(maps, boxes, threshold=0.15, connectivity=8, min_iou=0.5):
    """Weakly-supervised localisation (Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1).

    segment[n] = largest connected component of {maps[n] >= threshold * max maps[n]}
    iou[n] = IoU(box(segment[n]), boxes[n]);   hit[n] = iou[n] >= min_iou

    ("binarize with a threshold of 15% of the max intensity ... draw a bounding box around the
    single largest segment".) Ties between equally large segments go to the first in row-major
    order; a map whose max is not positive has no segment (empty box, IoU 0).

    Parameters
    ----------
    maps : (N, H, W) >= 0; boxes : (N, 4) ground truth (x0, y0, x1, y1), exclusive ends
    threshold : share of each map's max; connectivity : 4 or 8; min_iou : hit criterion
    Returns
    -------
    iou : (N,) float64; hit : (N,) bool; pred : (N, 4) predicted boxes (zeros when empty)
    """
    maps = _host(maps, dtype=np.float64)
    N, H, W = _check(maps)
    peak = maps.max(axis=(1, 2), keepdims=True)
    lab = connected_components((maps >= threshold * peak) & (peak > 0), connectivity)
    # size of every (image, component): one bincount over labels offset per image
    sizes = np.bincount((lab + np.arange(N)[:, None, None] * (H * W + 1)).ravel(),
                        minlength=N * (H * W + 1)).reshape(N, H * W + 1)
    sizes[:, 0] = 0  # background
    best = sizes.argmax(axis=1)  # first largest; 0 (no segment) when the set is empty
    seg = (lab == best[:, None, None]) & (best > 0)[:, None, None]
    rows, cols = seg.any(axis=2), seg.any(axis=1)
    pred = np.stack([cols.argmax(1), rows.argmax(1), W - cols[:, ::-1].argmax(1),
                     H - rows[:, ::-1].argmax(1)], axis=1) * (best > 0)[:, None]
    iou = box_iou(pred, boxes)
    return iou, iou >= min_iou, pred


def mass_inside(maps, masks):
    """Share of a non-negative map's mass inside a mask: sum(map * mask) / sum(map).

    0 (not NaN) for an all-zero map; a negative value is a ValueError (rectify first).

    Parameters
    ----------
    maps : (N, H, W) >= 0; masks : bool, broadcastable to maps
    Returns
    -------
    share : (N,) float64 in [0, 1]
    """
    maps = _host(maps, dtype=np.float64)
    if (maps < 0).any():
        raise ValueError("mass_inside needs non-negative maps (take ReLU or |.| first)")
    total = maps.sum(axis=(-2, -1))
    inside = (maps * _host(masks, dtype=bool)).sum(axis=(-2, -1))
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0)


def object_share(maps, mask_a, mask_b):
    """Share on object A of the mass on either object: m_A / (m_A + m_B), m = mass_inside.

    Class discrimination: 1 = all of the map's object mass is on A. 0 where the map has no
    mass on either object (conservative: such a map points at neither).

    Parameters
    ----------
    maps : (N, H, W) >= 0; mask_a, mask_b : (N, H, W) bool, disjoint
    Returns
    -------
    share : (N,) float64 in [0, 1]
    """
    a, b = mass_inside(maps, mask_a), mass_inside(maps, mask_b)
    return np.where(a + b > 0, a / np.where(a + b > 0, a + b, 1), 0.0)


def map_correlation(maps_a, maps_b):
    """Pearson correlation, per image, of the maps for two classes (near 1: not discriminative).

    r[n] = sum_p (a[n,p] - mean a[n]) (b[n,p] - mean b[n]) / (||a[n] - mean|| ||b[n] - mean||)

    A constant map has no correlation: r = 1 if both maps are constant (the same flat picture),
    0 if only one is.

    Parameters
    ----------
    maps_a, maps_b : (N, H, W)
    Returns
    -------
    r : (N,) float64 in [-1, 1]
    """
    a = _host(maps_a, dtype=np.float64).reshape(len(maps_a), -1)
    b = _host(maps_b, dtype=np.float64).reshape(len(maps_b), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    same = np.all(a == b, axis=1).astype(np.float64)  # after centring: both constant
    return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1), same)


def _check(maps, masks=None):
    if maps.ndim != 3 or (masks is not None and masks.shape != maps.shape):
        extra = "" if masks is None else f" and masks {masks.shape}"
        raise ValueError(f"need (N, H, W) maps and masks of that shape, got {maps.shape}{extra}")
    return maps.shape



def mass_ceiling(masks, u, v):
    """The best mass share a u x v map can reach (see the module docstring): mean over images of
    mass_inside(resize(coverage), masks), coverage = the share of each cell inside the mask.
    None unless the cells tile the image (u divides H, v divides W)."""
    N, H, W = masks.shape
    if H % u or W % v:
        return None
    cover = masks.reshape(N, u, H // u, v, W // v).mean(axis=(2, 4))
    return float(mass_inside(resize(cover, (H, W)), masks).mean())


def weaker_instance(masks):
    """Which of two instances of one class is the weaker: the smaller one (fewer mask pixels;
    a tie goes to the first). Index 0 or 1 per image.

    weak[n] = argmin_j |masks[n, j]|

    NOTE: "weaker" is defined by the data, not by a model, so it is the same instance for every
    model and method: a smaller object has fewer pixels of evidence, and is the instance a map
    that follows only the strongest evidence (Grad-CAM's averaged gradients, as Chattopadhay et
    al., arXiv:1710.11063, argue) is expected to miss.

    Parameters
    ----------
    masks : (N, 2, H, W) bool, the two instances
    Returns
    -------
    weak : (N,) int64 in {0, 1}
    """
    masks = _host(masks, dtype=bool)
    if masks.ndim != 4 or masks.shape[1] != 2:
        raise ValueError(f"need (N, 2, H, W) masks of two instances, got {masks.shape}")
    area = masks.sum(axis=(2, 3))
    return (area[:, 1] < area[:, 0]).astype(np.int64)


def weaker_share(maps, masks):
    """Share of a map's mass on two instances of one class that lies on the weaker one.

    s[n] = m_weak / (m_weak + m_strong),   m = mass_inside, weak = weaker_instance(masks)

    0: the map found only the stronger instance; about the weaker one's share of the two
    instances' area (``area_share``) or above: it covers both. 0 where the map has no mass on
    either instance.

    Parameters
    ----------
    maps : (N, H, W) >= 0; masks : (N, 2, H, W) bool, disjoint
    Returns
    -------
    share : (N,) float64 in [0, 1]
    """
    masks = _host(masks, dtype=bool)
    weak = weaker_instance(masks)
    rows = np.arange(len(masks))
    return object_share(maps, masks[rows, weak], masks[rows, 1 - weak])


def area_share(masks):
    """The weaker (smaller) instance's share of the two instances' pixels, per image: (N,)."""
    area = _host(masks, dtype=bool).sum(axis=(2, 3)).astype(np.float64)
    return area.min(axis=1) / np.maximum(area.sum(axis=1), 1)
