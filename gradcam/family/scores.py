"""The perturbation members of the CAM family: Score-CAM, SS-CAM, IS-CAM and Ablation-CAM.

None of them needs a gradient. Each weights the channels A^k of a layer by how the class score
moves when the network sees only what A^k highlights (Score-CAM and its smoothed and
integrated forms: masked inputs, whole forwards) or loses A^k (Ablation-CAM: A^k = 0, run from
the layer up). The steps are plain functions in ``gradcam.family.perturb``.

Score-CAM, Wang et al., CVPR-W 2020, arXiv:1910.01279v2 (Sec. 3, Definitions 2-3, Algorithm 1):

    H^k = s(Up(A^k))                          the mask: upsampled, min-max normalised  (Def. 2)
    S^c_k = f^c(X o H^k) - f^c(X_b)           channel-wise increase of confidence (CIC, Def. 2)
    alpha^c_k = exp(S^c_k) / sum_j exp(S^c_j)  softmax over the channels (Algorithm 1)
    L^c = ReLU(sum_k alpha^c_k A^k)           (Def. 3)

f^c is the softmax probability of class c ("post-softmax", Sec. 3.2) and X_b the black image
(the authors' baseline, Score-CAM repository issues #6, #13, #17). NOTE: the baseline term is
computed and subtracted, as the paper writes it; it shifts every S^c_k of an image by the same
f^c(X_b), so it cancels in the softmax over k: alpha does not depend on it.

SS-CAM, Wang et al. 2020, arXiv:2006.14255v3: Score-CAM with Gaussian noise on the masks
(the paper's first variant, noise on the feature maps), averaged over ``num_samples`` draws:

    S^c_k = 1/N sum_{i=1..N} f^c(X o (H^k + delta_ik)) - f^c(X_b),   delta ~ N(0, std^2)

Defaults N = 10, std = 2 (torchcam's SSCAM: 35 samples, std 2.0). The drawn noise, shape
(num_samples, N, K, H, W), is returned in ``details["noise"]`` (10 x 103 MB for VGG16's 512
masks at 224 in float32); an explicit ``noise`` array of that shape replaces the draw (then
``std`` and ``seed`` are not used), so a run can be repeated exactly in another library. The
default seed is 0, as for every method that draws noise here: an explanation is a deterministic
function of its input unless the caller passes ``seed=None``.

IS-CAM, Naidu et al. 2020, arXiv:2010.03023v1: the masked input scaled from the baseline up to
X o H^k in N steps (a Riemann sum of the path integral), then averaged:

    S^c_k = 1/N sum_{i=1..N} f^c((i/N) X o H^k) - f^c(X_b)

NOTE: this is the path the authors' code takes (ISS_CAM2 in r0cketr1kky/ISS-CAM_resources:
``new_map = x * 0.1 * i`` for i = 1..10), the Riemann sum of an integral from X_b to X o H^k.
torchcam 0.5.0 reads the paper's algorithm as accumulating the inputs (input i scaled by
sum_{j<=i} j/N, torchcam/methods/activation.py, ISCAM._get_score_weights); that reading is a
peer variant, not this entry.

Ablation-CAM, Desai & Ramaswamy, WACV 2020 (no arXiv version; CVF open access,
"Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free
Localization", Sec. 3):

    y^c_k = y^c with A^k = 0 (the layers above A run again)
    alpha^c_k = (y^c - y^c_k) / y^c          (the fractional drop, Sec. 3)
    L^c = ReLU(sum_k alpha^c_k A^k)

y^c is the class score before the softmax (the logit).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp

from ..method import Method, MethodOutput
from .perturb import (ablated_scores, class_scores, input_scores, masked_scores,
                      score_cam_masks)

SCORE_CAM = "Wang et al., CVPR-W 2020, arXiv:1910.01279v2"
SS_CAM = "Wang et al. 2020, arXiv:2006.14255v3"
IS_CAM = "Naidu et al. 2020, arXiv:2010.03023v1"
ABLATION_CAM = ("Desai & Ramaswamy, WACV 2020 (no arXiv version; CVF open access "
                "Desai_Ablation-CAM_..._WACV_2020_paper.pdf)")
BATCH_SIZE = 16  # perturbed inputs per forward: the memory of one batch of activations


def _batch_size(ctx):
    b = ctx.options["batch_size"]
    if not isinstance(b, (int, np.integer)) or isinstance(b, bool) or b < 1:
        raise ValueError(f"batch_size must be a positive int, got {b!r}")
    return int(b)


def _full_forward(model):
    """The whole model's logits for a batch, caching nothing (no backward follows)."""
    last = model.layers[-1][0]
    return lambda batch: model.forward(batch, stop_at=last)


def softmax_channels(S):
    """alpha_k = exp(S_k) / sum_j exp(S_j) over the channels (axis 1): (N, K) -> (N, K)."""
    xp = get_xp(S)
    e = xp.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _setup(ctx):
    """x in A's dtype, the masks H (N, K, H, W), the forward, and f^c(X_b) of the black image."""
    x = ctx.x.astype(ctx.A.dtype, copy=False)
    H = score_cam_masks(ctx.A, x.shape[-2:])
    forward = _full_forward(ctx.model)
    xp = get_xp(x)
    p0 = input_scores(forward, xp.zeros_like(x), ctx.target, "probability", _batch_size(ctx))
    return x, H, forward, p0


def _output(H, S, p0, **more):
    """alpha = softmax_k(S) and the intermediates."""
    return MethodOutput(weights=softmax_channels(S),
                        details={"masks": H, "scores": S, "baseline": p0, **more})


# --------------------------------------------------------------------------- Score-CAM
def _scorecam(ctx):
    """alpha = softmax_k(f^c(X o H^k) - f^c(X_b)), H^k = s(Up(A^k)) (Def. 2, Algorithm 1).

    details: masks H (N, K, H, W); scores S = the CIC (N, K); baseline f^c(X_b) (N,)
    """
    x, H, forward, p0 = _setup(ctx)
    y = masked_scores(forward, x, ctx.target, H, p0, "probability", _batch_size(ctx))
    return _output(H, y - p0[:, None], p0)


# --------------------------------------------------------------------------- SS-CAM
def draw_noise(shape, num_samples, std, seed, dtype):
    """SS-CAM's noise: std * N(0, 1) of shape (num_samples, *shape), from default_rng(seed).

    Drawn on the host in ``dtype`` (float32 draws for float32 models), so a run is repeatable
    from its seed; ``details["noise"]`` returns the array for other libraries.
    """
    n = int(num_samples)
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std!r}")
    dt = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    z = np.random.default_rng(seed).standard_normal((n,) + tuple(shape), dtype=dt)
    return z * dt(std)


def _sscam(ctx):
    """alpha = softmax_k(1/N sum_i f^c(X o (H^k + delta_ik)) - f^c(X_b)), delta ~ N(0, std^2).

    details: masks H, scores S (N, K), baseline (N,), noise (num_samples, N, K, H, W)
    """
    o = ctx.options
    x, H, forward, p0 = _setup(ctx)
    xp = get_xp(x)
    if o["noise"] is None:
        noise = xp.asarray(draw_noise(H.shape, o["num_samples"], o["std"], o["seed"], H.dtype))
    else:
        noise = xp.asarray(o["noise"], dtype=H.dtype)
        if noise.ndim != 5 or tuple(noise.shape[1:]) != tuple(H.shape):
            raise ValueError(f"noise must have shape (num_samples, N, K, H, W) = "
                             f"(num_samples, {', '.join(map(str, H.shape))}), "
                             f"got {tuple(noise.shape)}")
    total = 0
    for delta in noise:
        total = total + masked_scores(forward, x, ctx.target, H + delta, p0, "probability",
                                      _batch_size(ctx))
    return _output(H, total / noise.shape[0] - p0[:, None], p0, noise=noise)


# --------------------------------------------------------------------------- IS-CAM
def _iscam(ctx):
    """alpha = softmax_k(1/N sum_{i=1..N} f^c((i/N) X o H^k) - f^c(X_b)).

    details: masks H, scores S (N, K), baseline (N,)
    """
    n = ctx.options["num_samples"]
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_samples must be a positive int, got {n!r}")
    x, H, forward, p0 = _setup(ctx)
    total = 0
    for i in range(1, n + 1):
        total = total + masked_scores(forward, x, ctx.target, (i / n) * H, p0, "probability",
                                      _batch_size(ctx))
    return _output(H, total / n - p0[:, None], p0)


# --------------------------------------------------------------------------- Ablation-CAM
def _ablationcam(ctx):
    """alpha_k = (y^c - y^c_k) / y^c, y^c_k: A^k set to 0, the layers above A run again.

    details: ablated_scores y^c_k (N, K); score y^c (N,)
    """
    model, layer = ctx.model, ctx.layer
    y = class_scores(ctx.logits, ctx.target, "logit")
    if bool((y == 0).any()):
        raise ValueError("y^c = 0 for some image: Ablation-CAM's weights (y^c - y^c_k) / y^c "
                         "are undefined there")
    # NOTE: a layer inside a residual block needs the block's input (the skip) for every row;
    # the forward that captured A recorded it, per image, and each batch gathers its rows
    recorded = getattr(model, "residual_inputs", None) or {}
    skips = {b: v for b, v in recorded.items() if layer.startswith(b + ".")} or None

    def run(batch, rows):
        return model.forward_from(layer, batch, skips=rows)

    y_k = ablated_scores(run, ctx.A, ctx.target, skips, _batch_size(ctx), "logit", full=y)
    return MethodOutput(weights=(y[:, None] - y_k) / y[:, None],
                        details={"ablated_scores": y_k, "score": y})


_BATCH = {"batch_size": BATCH_SIZE}

METHODS = (
    Method("scorecam", "Score-CAM", SCORE_CAM + ", Sec. 3, Defs. 2-3, Algorithm 1", "channel",
           False, "last-spatial", _scorecam, options=_BATCH, fast_n=25),
    Method("sscam", "SS-CAM", SS_CAM + " (noise on the masks); Score-CAM's Def. 2", "channel",
           False, "last-spatial", _sscam,
           options={**_BATCH, "num_samples": 10, "std": 2.0, "seed": 0, "noise": None},
           fast_n=4, photo_fast=False),
    Method("iscam", "IS-CAM", IS_CAM + " (integration over the mask's scale)", "channel", False,
           "last-spatial", _iscam, options={**_BATCH, "num_samples": 10}, fast_n=4,
           photo_fast=False),
    Method("ablationcam", "Ablation-CAM", ABLATION_CAM + ", Sec. 3", "channel", False,
           "last-spatial", _ablationcam, options=_BATCH),
)
