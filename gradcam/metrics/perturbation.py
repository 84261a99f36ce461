"""What the perturbation metrics share: checked inputs, class scores of batches of perturbed
inputs, the salience order of a map's pixels, and the baselines a removed pixel takes.

Used by ``faithfulness`` (deletion, insertion, Average Drop, Increase in Confidence) and
``road`` (remove and debias). Every array keeps its module (``xp = get_xp(x)``): NumPy or CuPy.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp, to_numpy

from ..engine import as_batch, eval_mode, model_class_names
from ..progress import progress
from ..targets import resolve_target

SCORES = ("softmax", "logits")
BASELINES = ("zeros", "blur", "mean")
VARIANTS = (None, "torchcam", "pytorch-grad-cam")
BATCH_SIZE = None  # perturbed inputs per forward: None = sized to the input (auto_batch_size)
MAX_BATCH = 32  # torchcam's default for DeletionInsertionMetric
# NOTE: a batch's activations grow with batch x input size (EfficientNet-Lite0 at 224: about
# 150 MB for one expanded activation of 32 inputs); sizing the batch to the input keeps them small.
# On the shared 2-core machine, ours/torchcam for deletion + insertion at 224 measured 1.1x with
# 2-4 inputs per forward and 1.5-1.7x with 8-32 in one series, 1.7x with 4 in a busier later
# run (benchmarks/README.md): the effect is within the machine's noise
AUTO_ELEMENTS = 4 * 3 * 224 * 224
# RISE's insertion canvas: gkern(klen=11, nsig=5) in eclique/RISE evaluation.py, a delta blurred
# by scipy.ndimage.gaussian_filter (reflect mode, truncate 4), applied with zero padding
BLUR_TAPS, BLUR_SIGMA = 11, 5.0


def check_variant(variant):
    """``variant`` if it is one of ``VARIANTS`` (None: the paper), else a ValueError naming them."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    return variant


def check_scores(scores):
    """``scores`` if it is "softmax" or "logits" (``SCORES``), else a ValueError naming them."""
    if scores not in SCORES:
        raise ValueError(f"unknown scores {scores!r}; use one of {SCORES}")
    return scores


def check_batch_size(batch_size, x=None):
    """A positive int, or None: ``auto_batch_size(x)`` (None while x is not known yet)."""
    if batch_size is None:
        return auto_batch_size(x) if x is not None else None
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return int(batch_size)


def auto_batch_size(x):
    """Perturbed inputs per forward: AUTO_ELEMENTS input values, between 1 and MAX_BATCH
    (4 at 3 x 224 x 224, 32 at 3 x 64 x 64)."""
    return int(max(1, min(MAX_BATCH, AUTO_ELEMENTS // max(1, int(np.prod(x.shape[1:]))))))


def prepare(model, x, maps, target):
    """Checked (x (N, C, H, W), maps (N, H, W), target (N,) host ints, logits (N, classes)).

    ``target``: an int array (N,), one int for all, class names, or None (the top-1 class of
    each image). ``maps`` must be finite and at the input's size.
    """
    x = as_batch(x)
    xp = get_xp(x)
    maps = xp.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] != x.shape[0] or maps.shape[1:] != x.shape[2:]:
        raise ValueError(f"maps must be (N, H, W) = {(x.shape[0],) + tuple(x.shape[2:])} "
                         f"(heatmaps at the input's size), got shape {tuple(maps.shape)}")
    if maps.dtype.kind not in "fiub" or not bool(xp.isfinite(maps).all()):
        raise ValueError("maps must be finite real numbers")
    logits = forward_fn(model)(x)
    c = resolve_target(target, logits, model_class_names(model))
    return x, maps, np.asarray(to_numpy(c), dtype=np.int64).reshape(-1), logits


def forward_fn(model):
    """Logits of a batch, in eval mode, caching nothing (no backward follows)."""
    last = model.layers[-1][0]

    def forward(batch):
        with eval_mode(model):
            return model.forward(batch, stop_at=last)

    return forward


def class_scores(logits, target, scores):
    """f^c(x) per row: the softmax probability of class c_n ("softmax") or its logit ("logits").

    softmax: exp(y_c) / sum_j exp(y_j)        logits: y_c
    """
    xp = get_xp(logits)
    rows, t = xp.arange(logits.shape[0]), xp.asarray(target)
    if check_scores(scores) == "logits":
        return logits[rows, t]
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))  # stable: exp(<= 0)
    return e[rows, t] / e.sum(axis=1)


def scores_of(model, count, make_batch, target, scores, batch_size, desc, show=None):
    """Class scores of ``count`` perturbed inputs, ``batch_size`` per forward: (count,).

    make_batch(s, e) -> (images (e - s, C, H, W), n (e - s,)) for inputs s ... e - 1, where n
    is the image index of each input (its target is target[n]); n and target (N,) in the
    images' module. NOTE: indices made or sliced on the device, so a batch moves nothing
    between host and device and reads nothing back (no per-batch sync or transfer).
    """
    forward, out = forward_fn(model), []
    starts = range(0, count, batch_size)
    bar = progress(total=len(starts), desc=desc, enabled=show)
    try:
        for s in starts:
            batch, n = make_batch(s, min(s + batch_size, count))
            out.append(class_scores(forward(batch), target[n], scores))
            bar.update(1)
    finally:
        bar.close()
    return get_xp(out[0]).concatenate(out) if out else None


def salience_order(maps):
    """Pixel indices of each map, most salient first; ties keep raster order (stable sort).

    order[n] = argsort(-maps[n].ravel()), stable;  rank[n, order[n, i]] = i

    Returns
    -------
    order, rank : (N, H*W) int, the maps' module
    """
    xp = get_xp(maps)
    flat = maps.reshape(maps.shape[0], -1)
    # NOTE: -m sorted ascending and stably keeps tied pixels in raster order, as torch's
    # argsort(descending=True, stable=True) does in torchcam
    order = xp.argsort(-flat, axis=1, kind="stable") if xp is np else xp.argsort(-flat, axis=1)
    rank = xp.empty_like(order)
    rows = xp.arange(flat.shape[0])[:, None]
    rank[rows, order] = xp.arange(flat.shape[1])[None, :]
    return order, rank


def blur_taps(taps=BLUR_TAPS, sigma=BLUR_SIGMA):
    """RISE's 1-D blur kernel: a delta of length ``taps`` smoothed by a Gaussian of ``sigma``
    with reflected boundaries (scipy.ndimage.gaussian_filter1d, mode "reflect", truncate 4).

    k[i] = sum_j g_j [reflect(i + j) == taps // 2],  g_j ∝ exp(-j^2 / (2 sigma^2)), |j| <= 4 sigma
    """
    r = int(4.0 * sigma + 0.5)
    j = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (j / sigma) ** 2)
    g /= g.sum()
    k = np.zeros(taps)
    for i in range(taps):
        m = np.mod(i + j, 2 * taps)  # "reflect": d c b a | a b c d | d c b a, period 2 * taps
        m = np.where(m >= taps, 2 * taps - 1 - m, m)
        k[i] = g[m == taps // 2].sum()
    return k


def blur(x, taps=BLUR_TAPS, sigma=BLUR_SIGMA):
    """Each channel convolved with RISE's separable kernel outer(k, k), zero padding (same size).

    b[c, i, j] = sum_{a, b} k[a] k[b] x[c, i + a - taps//2, j + b - taps//2]  (0 outside)
    """
    xp = get_xp(x)
    k = xp.asarray(blur_taps(taps, sigma), dtype=x.dtype)
    h = taps // 2
    H, W = x.shape[-2:]
    p = xp.pad(x, [(0, 0)] * (x.ndim - 2) + [(h, h), (0, 0)])
    rows = sum(k[a] * p[..., a:a + H, :] for a in range(taps))
    p = xp.pad(rows, [(0, 0)] * (x.ndim - 2) + [(0, 0), (h, h)])
    return sum(k[b] * p[..., :, b:b + W] for b in range(taps))


def baseline_image(x, baseline):
    """The values a removed pixel takes, (N, C, H, W).

    "zeros": 0; "blur": RISE's blurred copy of x; "mean": each image's mean colour (per channel);
    an array: broadcast to x's shape (e.g. (C, 1, 1) for a dataset mean).
    """
    xp = get_xp(x)
    if isinstance(baseline, str):
        if baseline == "zeros":
            return xp.zeros_like(x)
        if baseline == "blur":
            return blur(x)
        if baseline == "mean":
            return xp.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape)
        raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES} or an array")
    b = xp.asarray(baseline, dtype=x.dtype)
    try:
        return xp.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to the input's "
                         f"{tuple(x.shape)}") from None
