"""Faithfulness of a map to the model: what happens to the class score when the pixels the map
ranks highest are removed, added back, or kept alone.

- ``deletion`` / ``insertion``: Petsiuk et al., BMVC 2018, arXiv:1806.07421 (RISE):
  the class probability as the most salient pixels are removed from the image (deletion, a low
  area is good) or added to a canvas (insertion, a high area is good), and the area under each
  curve. The paper's canvases (its code, eclique/RISE evaluation.py): zeros for deletion, the
  blurred image for insertion.
- ``average_drop`` / ``increase_in_confidence``: Chattopadhay et al., WACV 2018,
  arXiv:1710.11063v3, Sec. 5: the score of the input multiplied by the map (E^c = L^c o I).
- ``confidence_change``: O - Y itself, the signed change (pytorch-grad-cam's
  ``CamMultImageConfidenceChange``).

``variant="torchcam"`` / ``"pytorch-grad-cam"`` selects that library's definition where it differs
(docs/crosscheck.md, "Faithfulness metrics"); ``scores=None`` is each definition's own default:
probabilities for the papers, logits for the libraries. Perturbed inputs run ``batch_size`` per
forward; ``progress`` shows a bar (None: only on a terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minicnn.backend import get_xp

from .perturbation import (BATCH_SIZE, baseline_image, check_batch_size, check_scores,
                           check_variant, class_scores, prepare, salience_order, scores_of)

TORCHCAM_EPS = 1e-7  # torchcam/metrics.py:202: drop.div(selected_scores + 1e-7)


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Deletion or insertion curves of N images.

    curve : (N, S + 1) class score after counts[k] pixels were removed (deletion) or inserted
    auc : (N,) area under each curve (RISE: trapezoids on k / steps; torchcam: on ``fractions``)
    fractions : (S + 1,) counts / (H W); counts : (S + 1,) host ints, 0 ... H W
    order : (N, H W) pixel indices, most salient first (ties in raster order)
    score : (N,) the unperturbed score; target : (N,) host class indices
    """

    kind: str
    curve: object
    auc: object
    fractions: np.ndarray
    counts: np.ndarray
    order: object
    score: object
    target: np.ndarray
    scores: str
    variant: str | None


def perturbation_counts(pixels, steps, variant=None):
    """How many pixels are perturbed at each point of the curve.

    paper (RISE, one point per step):  n_k = floor(k P / S),  k = 0 ... S   (S + 1 points)
    torchcam (torchcam/metrics.py:316-317): step = ceil(P / S); n = 0, step, 2 step, ... < P, then P
    """
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if check_variant(variant) == "torchcam":
        step = -(-pixels // steps)
        return np.array(list(range(0, pixels, step)) + [pixels], dtype=np.int64)
    return np.arange(steps + 1, dtype=np.int64) * pixels // steps


def deletion(model, x, maps, target, steps=20, baseline="zeros", scores="softmax", variant=None,
             batch_size=BATCH_SIZE, progress=None):
    """Deletion curve: the score as the most salient pixels are replaced by the baseline.

    x_k = x where rank(pixel) >= n_k, baseline elsewhere;  curve[k] = f^c(x_k);  auc = area
    (Petsiuk et al., arXiv:1806.07421: a sharp drop, a low area, means a faithful map)

    Parameters
    ----------
    model : minicnn.Sequential; x : (N, C, H, W); maps : (N, H, W) at the input's size
    target : (N,) int class per image (or one int, names, None = top-1)
    steps : S, the curve has S + 1 points (torchcam's variant: as many as its counts)
    baseline : "zeros" (the paper's), "blur" (RISE's 11-tap sigma-5 blur), "mean" (each image's
        mean colour), or an array broadcastable to x
    scores : "softmax" (the paper's probability) or "logits"
    variant : None (the paper, its code's AUC) or "torchcam" (its counts and trapezoid)
    batch_size : perturbed inputs per forward (None: sized to the input, 4 at 3 x 224 x 224)
    progress : bool or None (a bar on a terminal)
    Returns
    -------
    FaithfulnessCurve (.curve (N, S + 1), .auc (N,), ...)
    """
    return _curves("deletion", model, x, maps, target, steps, baseline, scores, variant,
                   batch_size, progress)


def insertion(model, x, maps, target, steps=20, baseline="blur", scores="softmax", variant=None,
              batch_size=BATCH_SIZE, progress=None):
    """Insertion curve: the score as the most salient pixels are copied onto the baseline.

    x_k = x where rank(pixel) < n_k, baseline elsewhere;  curve[k] = f^c(x_k);  auc = area
    (Petsiuk et al., arXiv:1806.07421: a sharp rise, a high area, means a faithful map)

    The parameters are ``deletion``'s. NOTE: the default canvas is the paper's, the blurred
    image (RISE's code), not zeros; ``baseline="zeros"`` is torchcam's (its ``baseline=None``).
    """
    return _curves("insertion", model, x, maps, target, steps, baseline, scores, variant,
                   batch_size, progress)


def _curves(kind, model, x, maps, target, steps, baseline, scores, variant, batch_size, show):
    check_scores(scores)
    check_batch_size(batch_size)
    x, maps, c, logits = prepare(model, x, maps, target)
    batch_size = check_batch_size(batch_size, x)
    xp = get_xp(x)
    N, P = x.shape[0], x.shape[2] * x.shape[3]
    counts = perturbation_counts(P, steps, variant)
    base = baseline_image(x, baseline).reshape(N, x.shape[1], P)
    flat = x.reshape(N, x.shape[1], P)
    order, rank = salience_order(maps)
    cd = xp.asarray(c)  # NOTE: the targets, job indices and counts cross once, not per batch
    y0 = class_scores(logits, cd, scores)
    # NOTE: the unperturbed point (deletion's first, insertion's last) is y0, no forward
    K = len(counts) - 1
    ran_k = slice(1, None) if kind == "deletion" else slice(0, K)  # the points that run
    job_n = xp.asarray(np.repeat(np.arange(N), K))  # job j: image j // K, point ran_k[j % K]
    job_count = xp.asarray(np.tile(counts[ran_k], N))

    def make_batch(s, e):
        n = job_n[s:e]
        inserted = rank[n] < job_count[s:e, None]  # (B, P): the n_k most salient pixels
        original = ~inserted if kind == "deletion" else inserted
        batch = xp.where(original[:, None], flat[n], base[n])
        return batch.reshape((e - s,) + x.shape[1:]), n

    ran = scores_of(model, N * K, make_batch, cd, scores, batch_size, kind, show)
    curve = xp.empty((N, K + 1), dtype=y0.dtype)
    curve[:, 0 if kind == "deletion" else K] = y0
    curve[:, ran_k] = ran.reshape(N, K)
    fractions = counts / P
    if variant == "torchcam":  # torch.trapezoid(curve, fractions): torchcam/metrics.py:415-416
        d = xp.asarray(np.diff(fractions), dtype=curve.dtype)
        auc = ((curve[:, 1:] + curve[:, :-1]) * 0.5 * d).sum(axis=1)
    else:  # RISE's auc(): (sum - first / 2 - last / 2) / (points - 1), equal steps
        auc = (curve.sum(axis=1) - 0.5 * (curve[:, 0] + curve[:, -1])) / (len(counts) - 1)
    return FaithfulnessCurve(kind, curve, auc, fractions, counts, order, y0, c, scores, variant)


# --------------------------------------------------------------------------- the map as a mask
def _default_scores(scores, variant):
    check_variant(variant)
    if scores is None:  # the papers' confidence is the probability; the libraries' the logit
        return "softmax" if variant is None else "logits"
    return check_scores(scores)


def masked_confidence(model, x, maps, target, scores="softmax", batch_size=BATCH_SIZE,
                      progress=None):
    """The score of each image and of the image multiplied by its map: (Y, O).

    Y_i = f^c(x_i),  O_i = f^c(E_i),  E_i = L_i o x_i  (the map broadcast over the C channels;
    Chattopadhay et al., arXiv:1710.11063v3, Sec. 5; maps are expected in [0, 1])

    Returns
    -------
    Y, O : (N,) each, the model's dtype; target : (N,) host class indices
    """
    check_scores(scores)
    check_batch_size(batch_size)
    x, maps, c, logits = prepare(model, x, maps, target)
    batch_size = check_batch_size(batch_size, x)
    xp = get_xp(x)
    E = x * maps[:, None].astype(x.dtype, copy=False)

    cd = xp.asarray(c)  # once; each batch is a slice of E (nothing crosses per batch)
    O = scores_of(model, x.shape[0], lambda s, e: (E[s:e], xp.arange(s, e)), cd, scores,
                  batch_size, "masked", progress)
    return class_scores(logits, cd, scores), O, c


def average_drop(model, x, maps, target, scores=None, variant=None, batch_size=BATCH_SIZE,
                 progress=None):
    """Average Drop per image: how much of the class score the map alone loses (lower is better).

    paper:            100 max(0, Y - O) / Y      (Sec. 5; its mean over images is the %)
    torchcam:         max(0, Y - O) / (Y + 1e-7), a fraction   (torchcam/metrics.py:202)
    pytorch-grad-cam: max(0, Y - O), not divided by Y
                      (pytorch_grad_cam/metrics/cam_mult_image.py:25-28)

    Parameters
    ----------
    model, x (N, C, H, W), maps (N, H, W) in [0, 1], target (N,)
    scores : None (the definition's own: "softmax" for the paper, "logits" for the libraries),
        "softmax" or "logits"
    variant : None, "torchcam" or "pytorch-grad-cam"
    Returns
    -------
    (N,) drop per image, the model's dtype
    """
    Y, O, _ = masked_confidence(model, x, maps, target, _default_scores(scores, variant),
                                batch_size, progress)
    xp = get_xp(Y)
    drop = xp.maximum(Y - O, 0)
    if variant == "pytorch-grad-cam":
        return drop
    if variant == "torchcam":
        return drop / (Y + TORCHCAM_EPS)
    return 100 * drop / Y


def increase_in_confidence(model, x, maps, target, scores=None, variant=None,
                           batch_size=BATCH_SIZE, progress=None):
    """Increase in Confidence per image: True where the map alone scores higher than the image.

    IC_i = [Y_i < O_i]   (Sec. 5; the % of True over images is the paper's number). All three
    definitions agree (torchcam/metrics.py:203; pytorch_grad_cam/metrics/cam_mult_image.py:37
    returns it as float32 0/1); only the default ``scores`` differ (see ``average_drop``).

    Returns
    -------
    (N,) bool
    """
    Y, O, _ = masked_confidence(model, x, maps, target, _default_scores(scores, variant),
                                batch_size, progress)
    return Y < O


def confidence_change(model, x, maps, target, scores="softmax", batch_size=BATCH_SIZE,
                      progress=None):
    """The signed change of the class score when the image is multiplied by its map: (N,).

    O_i - Y_i   (pytorch-grad-cam's ``CamMultImageConfidenceChange`` with logits:
    pytorch_grad_cam/metrics/perturbation_confidence.py:45, ``scores_after_imputation - scores``)
    """
    Y, O, _ = masked_confidence(model, x, maps, target, scores, batch_size, progress)
    return O - Y
