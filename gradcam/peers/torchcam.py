"""torchcam 0.5.0 (frgfm/torch-cam), where its formulas depart from the papers.

Each weighting reproduces the library's raw map (``_CAM.compute_cams`` before its ReLU and
``_normalize``); ``gradcam.conventions.from_result("torchcam", r)`` then applies that
post-processing. Files and lines are those of the installed 0.5.0 wheel
(``torchcam/methods/``); docs/crosscheck.md gives each departure with the paper's equation
and its measured size.

Every weighting takes a ``gradcam.method.Context`` and returns what the paper's entry
returns: alpha, (N, K) or (N, K, u, v), or a ``MethodOutput`` with the peer's own map.

    method            torchcam                        departs from the paper by
    gradcam++         gradient.py:179-206             never divides: alpha = sum dA^2 ReLU(dA)
    smooth-gradcam++  gradient.py:309-347             sum_ab (dA^3 A)_ab in the denominator;
                                                      the last noisy sample's dA and A
    xgradcam          gradient.py:391-407             + 1e-8 in the sum of A
    scorecam          activation.py:217-282           min-max (+1e-8) BEFORE upsampling;
                                                      softmax over the channels of the logit
    sscam             activation.py:354-387           noise on the upsampled masks (no
                                                      re-normalisation); softmax of the mean
    iscam             activation.py:454-489           cumulative coefficients sum_{j<=i} j/N
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..engine import capture
from ..family.plusplus import noisy_copies
from ..family.scores import draw_noise, softmax_channels
from ..method import MethodOutput
from ..targets import class_score
from .common import channel_minmax, scores_of, upsample_channels

NAME = "torchcam"
BATCH = 32  # ScoreCAM(batch_size=32); the result does not depend on it
EPS = 1e-8  # the ``eps`` of every torchcam formula (core.py:193, gradient.py:183, 298, 395)


def grad_cam_pp(ctx):
    """Grad-CAM++ as ``GradCAMpp._get_weights`` (gradient.py:179-206) actually computes it.

    alpha_k = sum_ij dA_ij^2 ReLU(dA_ij)

    NOTE: the library means a_ij = dA^2 / (2 dA^2 + sum_ab dA_ab^3 A_ab + 1e-8), but
    ``alpha[idx][mask].div_(...)`` (gradient.py:203) divides a copy made by the boolean index,
    so a_ij stays dA_ij^2. The paper's a_ij (arXiv:1710.11063v3, Eq. (19)) is what it meant,
    with dA_ij^3 sum_ab A_ab in the denominator.
    """
    g = ctx.dA
    return (g * g * get_xp(g).maximum(g, 0)).sum(axis=(2, 3))


def smooth_grad_cam_pp(ctx):
    """Smooth Grad-CAM++ as ``SmoothGradCAMpp._compute_smoothgrad_weights`` (gradient.py:309-347).

    x_s = x + noise_s;  g_s, A_s = dA and A at x_s,  s = 1..S
    D2 = 1/S sum_s g_s^2,  D3 = 1/S sum_s g_s^3
    a_ij = D2_ij / (2 D2_ij + sum_ab D3_ab A_ab + 1e-8)       A: the clean input's
    alpha_k = sum_ij a_ij ReLU(g_S,ij);  linear_map = sum_k alpha_k A_S^k

    Departures from the paper (Omeiza et al., arXiv:1908.01224v1: Grad-CAM++'s Eqs. (5) and
    (19) of arXiv:1710.11063v3 with each derivative of Y = exp(y^c) averaged over the copies,
    D^p = 1/n sum_m exp(y_m) dA_m^p, and the clean input's A): the averages lack the exp(y_m)
    factors; the denominator's sum runs over the product D3 A (index mixing, where the paper has
    D3_ij sum_ab A_ab); and the ReLU'd gradient and the activations of the map are those of the
    LAST noisy copy, left in the hooks (gradient.py:347 ``self.hook_g``; core.py:288
    ``self.hook_a``), not D1 and the clean A.
    """
    xp = get_xp(ctx.A)
    o = ctx.options
    # the paper entry's draw (same seed, same noise), or the caller's noise as given
    noise = noisy_copies(ctx.x, o["num_samples"], o["std"], o["seed"], o["noise"], ctx.A.dtype)
    seed_fn = class_score([int(c) for c in ctx.target])
    D2 = xp.zeros_like(ctx.A)
    D3 = xp.zeros_like(ctx.A)
    for eps in noise:
        _, A_s, g_s = capture(ctx.model, ctx.x + eps, ctx.layer, seed_fn)
        D2 += g_s ** 2
        D3 += g_s ** 3
    D2, D3 = D2 / len(noise), D3 / len(noise)
    mixed = (D3 * ctx.A).sum(axis=(2, 3), keepdims=True)
    a = D2 / (2 * D2 + mixed + EPS)
    alpha = (a * xp.maximum(g_s, 0)).sum(axis=(2, 3))
    linear_map = (alpha[:, :, None, None] * A_s).sum(axis=1)
    return MethodOutput(weights=alpha, linear_map=linear_map, details={"noise": noise})


def xgrad_cam(ctx):
    """XGrad-CAM as ``XGradCAM._get_weights`` (gradient.py:391-407).

    alpha_k = sum_ij dA_ij A_ij / (sum_ab A_ab + 1e-8)
    """
    A = ctx.A
    return (ctx.dA * A).sum(axis=(2, 3)) / (A.sum(axis=(2, 3)) + EPS)


def _masks(ctx):
    """torchcam's masks: min-max per channel at the layer's size (+1e-8), THEN bilinear with
    half-pixel centres (activation.py:279 ``_normalize``, 196-199 ``_upsample``)."""
    return upsample_channels(channel_minmax(ctx.A, EPS), ctx.x.shape[-2:], False)


def _baseline(ctx):
    """y^c of the unmasked input (activation.py:224-227); subtracted from every score."""
    xp = get_xp(ctx.logits)
    return ctx.logits[xp.arange(len(ctx.target)), xp.asarray(ctx.target)]


def score_cam(ctx):
    """Score-CAM as ``ScoreCAM._get_score_weights`` (activation.py:239-265).

    M_k = Up(minmax(A_k))      min-max (+1e-8) at u x v, then bilinear, half-pixel centres
    alpha = softmax_k(y^c(x * M_k) - y^c(x))      the raw logit; softmax over the channels
    """
    masks = _masks(ctx)
    scores = scores_of(ctx, masks, BATCH) - _baseline(ctx)[:, None]
    return MethodOutput(weights=softmax_channels(scores),
                        details={"masks": masks, "scores": scores})


def ss_cam(ctx):
    """SS-CAM as ``SSCAM._get_score_weights`` (activation.py:354-387).

    M_k as Score-CAM's;  alpha = softmax_k(1/S sum_s [y^c(x * (M_k + noise_s,k)) - y^c(x)])

    noise : (S, N, K, H, W), added to the upsampled masks, which are not normalised again.
    """
    masks = _masks(ctx)
    o = ctx.options
    xp = get_xp(masks)
    # the paper entry's draw (same seed, same noise), or the caller's noise as given
    noise = xp.asarray(draw_noise(masks.shape, o["num_samples"], o["std"], o["seed"], masks.dtype)
                       if o["noise"] is None else o["noise"], dtype=masks.dtype)
    if tuple(noise.shape[1:]) != tuple(masks.shape):
        raise ValueError(f"noise must have shape (num_samples, {', '.join(map(str, masks.shape))})"
                         f", got {tuple(noise.shape)}")
    base = _baseline(ctx)[:, None]
    total = sum(scores_of(ctx, masks + eps, BATCH) - base for eps in noise)
    scores = total / len(noise)
    return MethodOutput(weights=softmax_channels(scores),
                        details={"masks": masks, "scores": scores, "noise": noise})


def is_cam(ctx):
    """IS-CAM as ``ISCAM._get_score_weights`` (activation.py:454-489).

    c_i = sum_{j=1..i} j / S  (cumulative: 1/S, 3/S, 6/S, ...)
    alpha = softmax_k(1/S sum_i [y^c(c_i (x * M_k)) - y^c(x)])
    """
    masks = _masks(ctx)
    S = int(ctx.options["num_samples"])
    base = _baseline(ctx)[:, None]
    total, coeff = 0.0, 0.0
    for i in range(S):
        coeff += (i + 1) / S
        # NOTE: coeff * (x * M) there, (coeff * M) * x here: equal up to round-off
        total = total + scores_of(ctx, coeff * masks, BATCH) - base
    scores = total / S
    return MethodOutput(weights=softmax_channels(scores),
                        details={"masks": masks, "scores": scores})


VARIANTS = (
    ("gradcam++", NAME, grad_cam_pp, "the denominator is never applied: alpha = sum dA^2 ReLU(dA) "
     "(gradient.py:203)"),
    ("smooth-gradcam++", NAME, smooth_grad_cam_pp, "sum_ab (dA^3 A)_ab in the denominator; the "
     "last noisy sample's dA and A (gradient.py:342-347)"),
    ("xgradcam", NAME, xgrad_cam, "sum of A + 1e-8 (gradient.py:405)"),
    ("scorecam", NAME, score_cam, "min-max before upsampling; softmax over channels of "
     "y^c(x * M) - y^c(x) (activation.py:262-279)"),
    ("sscam", NAME, ss_cam, "noise on the upsampled min-max masks; softmax of the mean score "
     "(activation.py:362-387)"),
    ("iscam", NAME, is_cam, "cumulative coefficients sum_{j<=i} j/N (activation.py:468-478)"),
)


class MapsExtractor:
    """torchcam's CAM-extractor protocol answering with maps you already have, so that
    torchcam's metrics (``torchcam.metrics.DeletionInsertionMetric``, ``ClassificationMetric``)
    score exactly those maps: ``Metric(MapsExtractor(twin, maps), ...)``.

    The protocol (torchcam 0.5.0, ``metrics.py``): ``model``, ``__call__(class_idx, scores)`` ->
    a list of (N, h, w) maps, ``fuse_cams``, ``_hooks_off()``. ``maps``: (N, h, w) NumPy.
    Needs torch (imported here, not at module import).
    """

    def __init__(self, model, maps):
        import numpy as np
        import torch

        self.model, self.maps = model, torch.from_numpy(np.ascontiguousarray(maps))

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        import contextlib

        return contextlib.nullcontext()
