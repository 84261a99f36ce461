"""Occlusion sensitivity: how much the class score drops when a square of the input is hidden.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
arXiv:1311.2901v3, Sec. 4.2 and Fig. 7: a grey square slides over the image and the
classifier's probability of the true class is recorded for each position of the square. The
Grad-CAM paper compares its maps with these occlusion maps (Selvaraju et al.,
arXiv:1610.02391v4, Sec. 5.3 "Faithfulness vs. Interpretability": ``metrics.occlusion_correlation``).

For a window of w x w pixels at the positions P (top-left corners on a stride-s grid, the last
row and column moved to the border so every pixel is covered) and the baseline value b:

    x_p = x o (1 - m_p) + b m_p              m_p : 1 inside window p, on every channel
    d_p = f^c(x) - f^c(x_p)                  f^c : softmax probability (or the logit) of c
    S^c(h, w) = sum_{p covers (h, w)} d_p / #{p covers (h, w)}

so S^c is at the input's resolution: each pixel gets the mean drop of the windows hiding it
(with window 1 and stride 1, S^c(h, w) is the drop of hiding that pixel alone).

Kind "network" (``explain`` returns S^c as ``linear_map`` (N, H, W); ``coarse`` is ReLU(S^c)
and the heatmap its normalisation): S^c is one value per pixel, not per channel, and it is
signed. A "pixel" method's map is drawn as max_ch |.|, which would show a square whose removal
*raises* the score as strongly as one whose removal lowers it; Eq. (2)'s ReLU keeps the
evidence for the class, as for the CAM family. No backward is run (``needs_grad=False``).
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..method import Method, MethodOutput
from .perturb import SCORES, class_scores

__all__ = ["METHODS", "occlusion_map", "window_starts"]


def window_starts(size, window, stride):
    """The first row (or column) of each window along one axis of ``size`` pixels.

    0, s, 2s, ... while the window fits; then size - w if the last window stopped short of the
    border (so every pixel is covered). A window wider than the axis is clipped to it.
    """
    w = min(window, size)
    starts = list(range(0, size - w + 1, stride))
    if starts[-1] + w < size:
        starts.append(size - w)
    return starts, w


def occlusion_map(forward, x, target, window=8, stride=4, baseline=0.0, score="probability",
                  batch_size=32, clean=None):
    """S^c, the mean drop of f^c over the windows hiding each pixel (module docstring).

    Parameters
    ----------
    forward : callable (B, C, H, W) -> logits (B, classes), the model in eval mode
    x : (N, C, H, W) input;  target : (N,) int classes c
    window, stride : the square's side w and the step s between positions, in pixels
    baseline : b, the value every channel takes inside the window (in the model's input units)
    score : "probability" (Zeiler & Fergus's Fig. 7) or "logit"
    batch_size : occluded inputs per forward
    clean : optional (N,) f^c(x) (computed here if None)
    Returns
    -------
    S : (N, H, W) the map; drops : (N, Pr, Pc) d_p on the grid of window positions
    """
    if window < 1 or stride < 1 or batch_size < 1:
        raise ValueError(f"occlusion needs window, stride and batch_size >= 1, got {window}, "
                         f"{stride}, {batch_size}")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    xp = get_xp(x)
    N, C, H, W = x.shape
    rows, wh = window_starts(H, window, stride)
    cols, ww = window_starts(W, window, stride)
    pos = [(i, j) for i in rows for j in cols]
    if clean is None:
        clean = class_scores(forward(x), target, score)
    S = xp.zeros((N, H, W), dtype=clean.dtype)
    count = xp.zeros((H, W), dtype=clean.dtype)
    for i, j in pos:
        count[i:i + wh, j:j + ww] += 1
    drops = xp.zeros((N, len(pos)), dtype=clean.dtype)
    for n in range(N):
        for s in range(0, len(pos), batch_size):
            batch = pos[s:s + batch_size]
            xb = xp.repeat(x[n:n + 1], len(batch), axis=0)
            for k, (i, j) in enumerate(batch):
                xb[k, :, i:i + wh, j:j + ww] = baseline
            c = xp.full(len(batch), int(target[n]))
            d = clean[n] - class_scores(forward(xb), c, score)
            drops[n, s:s + len(batch)] = d
            for k, (i, j) in enumerate(batch):
                S[n, i:i + wh, j:j + ww] += d[k]
    return S / count, drops.reshape(N, len(rows), len(cols))


def _occlusion(ctx):
    """S^c at the input's resolution, as the linear map of a "network" method."""
    o = ctx.options
    clean = class_scores(ctx.logits, ctx.target, o["score"])
    S, drops = occlusion_map(ctx.forward_from, ctx.A, ctx.target, o["window"], o["stride"],
                             o["baseline"], o["score"], o["batch_size"], clean=clean)
    return MethodOutput(linear_map=S, details={"drops": drops})


METHODS = (
    Method("occlusion", "Occlusion",
           "Zeiler & Fergus, ECCV 2014, arXiv:1311.2901v3, Sec. 4.2, Fig. 7 (occlusion "
           "sensitivity: the drop of the class score when a window is hidden)",
           "network", False, "network", _occlusion,
           options={"window": 8, "stride": 4, "baseline": 0.0, "score": "probability",
                    "batch_size": 32}, fast_n=10),
)
