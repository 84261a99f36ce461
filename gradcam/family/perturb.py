"""The perturbation core of Score-CAM and its relatives, as plain functions: the masks, the
class score of many masked inputs, and the class score with channels of A set to zero.

Kept apart from the registry entries (``gradcam.family.scores``) so that the peer variants
(``gradcam.peers``) can reuse each step with their own choices (corner-aligned upsampling,
logits instead of probabilities, ...).

    H = score_cam_masks(A, (H, W))                    # (N, K, H, W): s(Up(A^k)) in [0, 1]
    y = masked_scores(model.forward, x, c, H)         # (N, K): f^c(x_n o H_n^k)
    p0 = input_scores(model.forward, zeros_like(x), c)   # (N,): f^c(X_b), the black image
    y_k = ablated_scores(forward_from, A, c)          # (N, K): y^c with A^k = 0

Every function runs the model in batches of ``batch_size`` perturbed inputs, so memory stays
bounded by one batch (VGG16 at 224: 512 masked copies of the input are never held at once).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp, to_numpy

from ..resize import resize

SCORES = ("probability", "logit")


def minmax(maps):
    """Each map scaled to [0, 1] by its own minimum and maximum; a constant map becomes zeros.

    s(M) = (M - min M) / (max M - min M)      per map (the last two axes)

    Parameters
    ----------
    maps : (..., H, W)
    Returns
    -------
    (same shape, module and dtype); 0 where max M == min M
    """
    xp = get_xp(maps)
    lo = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - lo
    # NOTE: divide by 1 where the span is 0 (the numerator is 0 there too): no 0/0 is evaluated
    return (maps - lo) / xp.where(span > 0, span, xp.ones_like(span))


def score_cam_masks(A, size, align_corners=False):
    """Score-CAM's masks: each channel upsampled to the input's size, then min-max normalised.

    H^k = s(Up(A^k))      (Wang et al., arXiv:1910.01279v2, Definition 2 and Algorithm 1)

    Up is bilinear (half-pixel centres, as ``gradcam.resize``; ``align_corners=True`` is
    pytorch-grad-cam's UpsamplingBilinear2d). NOTE: the paper's s is undefined for a constant
    channel (max = min). Its mask is taken to be zero here, decided on A^k itself: an upsampled
    constant may differ from the constant by round-off, and normalising that round-off would
    turn it into an arbitrary [0, 1] pattern. A zero mask gives x o H = 0, the paper's black
    baseline X_b, so that channel's increase of confidence is exactly 0.

    Parameters
    ----------
    A : (N, K, u, v) activations; size : (H, W) of the input
    Returns
    -------
    H : (N, K, H, W) in [0, 1], A's module and dtype
    """
    xp = get_xp(A)
    N, K, u, v = A.shape
    flat = A.reshape(N * K, u, v)
    up = minmax(resize(flat, size, align_corners=align_corners))
    constant = flat.max(axis=(1, 2)) == flat.min(axis=(1, 2))
    up = xp.where(constant[:, None, None], xp.zeros_like(up), up)
    return up.reshape((N, K) + tuple(up.shape[-2:]))


def class_scores(logits, target, score="probability"):
    """The score of class c_n in each row: softmax probability or the logit itself.

    probability: f^c(X) = exp(y_c) / sum_j exp(y_j)  (Score-CAM's "post-softmax" score, Sec. 3.2)
    logit: y_c

    Parameters
    ----------
    logits : (B, classes); target : (B,) class per row; score : "probability" or "logit"
    Returns
    -------
    (B,) in the logits' dtype
    """
    xp = get_xp(logits)
    rows = xp.arange(logits.shape[0])
    t = xp.asarray(target)
    if score == "logit":
        return logits[rows, t]
    if score != "probability":
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    z = logits - logits.max(axis=1, keepdims=True)  # stable: exp(<= 0)
    e = xp.exp(z)
    return e[rows, t] / e.sum(axis=1)


def input_scores(forward, x, target, score="probability", batch_size=32):
    """f^c(x_n) for each input, run in batches: (N,).

    Parameters
    ----------
    forward : callable (B, C, H, W) -> logits (B, classes); x : (N, C, H, W); target : (N,)
    """
    xp = get_xp(x)
    out = []
    for s in range(0, x.shape[0], batch_size):
        out.append(class_scores(forward(x[s:s + batch_size]), target[s:s + batch_size], score))
    return xp.concatenate(out)


def _distinct(masks):
    """The distinct masks of one image: (J, P) -> (rep, inverse, zero).

    rep : host int array, one index j per distinct non-zero mask (the ones to run)
    inverse : host int array (J,), position of mask j's representative in ``rep`` (-1: zero)
    zero : host bool (J,), masks that are 0 everywhere

    NOTE: masks are grouped by a random projection, then every member is compared to its
    group's first one exactly (array_equal), so grouping never merges two different masks.
    """
    xp = get_xp(masks)
    J = masks.shape[0]
    zero = to_numpy(~(masks != 0).any(axis=1))
    w = xp.asarray(_probe(masks.shape[1]), dtype=masks.dtype)
    finger = to_numpy(masks @ w).tolist()
    rep, inverse, first_of = [], [-1] * J, {}
    for j in range(J):
        if zero[j]:
            continue
        for i in first_of.get(finger[j], ()):
            if bool(xp.array_equal(masks[rep[i]], masks[j])):
                inverse[j] = i
                break
        else:
            first_of.setdefault(finger[j], []).append(len(rep))
            inverse[j] = len(rep)
            rep.append(j)
    return rep, inverse, zero


def _probe(P, _cache={}):  # noqa: B006 (a deliberate per-size cache of one fixed vector)
    if P not in _cache:
        _cache[P] = np.random.default_rng(20200413).uniform(0.5, 1.5, P)
    return _cache[P]


def masked_scores(forward, x, target, masks, zero_score=None, score="probability",
                  batch_size=32):
    """The class score of every masked input, in batches: y[n, j] = f^c(x_n o masks[n, j]).

    x_n o M = x_n * M broadcast over the C input channels (the paper's Hadamard product).

    NOTE: exact savings. A mask that is 0 everywhere gives the input 0, so its score is
    ``zero_score`` (the black image's, computed once per image when not given) and it runs no
    forward; masks of one image that are identical (to the last bit) run one forward for all.
    At VGG16's relu5_3 and EfficientNet-Lite0's head, channels that are 0 everywhere are
    common, and Score-CAM's mask of each of them is 0.

    Parameters
    ----------
    forward : callable (B, C, H, W) -> logits (B, classes), e.g. ``model.forward``
    x : (N, C, H, W); target : (N,) class c_n; masks : (N, J, H, W)
    zero_score : (N,) f^c(0) per image, or None (computed here)
    score : "probability" (softmax, the paper's) or "logit"
    batch_size : masked inputs per forward
    Returns
    -------
    y : (N, J) in the model's output dtype
    """
    xp = get_xp(x, masks)
    N, J = masks.shape[:2]
    flat = masks.reshape(N, J, -1)
    jobs, parts = [], []
    for n in range(N):
        rep, inverse, zero = _distinct(flat[n])
        jobs += [(n, j) for j in rep]
        parts.append((inverse, zero))
    need_zero = zero_score is None and any(z.any() for _, z in parts)
    if need_zero:
        zero_score = input_scores(forward, xp.zeros_like(x), target, score, batch_size)
    target = xp.asarray(target)
    ran = []
    for s in range(0, len(jobs), batch_size):
        n_idx = xp.asarray([n for n, _ in jobs[s:s + batch_size]])
        j_idx = xp.asarray([j for _, j in jobs[s:s + batch_size]])
        batch = x[n_idx] * masks[n_idx, j_idx][:, None]
        ran.append(class_scores(forward(batch), target[n_idx], score))
    ran = xp.concatenate(ran) if ran else None
    y, start = [], 0
    dtype = ran.dtype if ran is not None else zero_score.dtype
    for n, (inverse, zero) in enumerate(parts):
        count = max(inverse) + 1
        row = xp.empty(J, dtype=dtype)
        if count > 0:
            row[...] = ran[start + xp.asarray(inverse).clip(0)]
        if zero.any():
            row[xp.asarray(zero)] = zero_score[n]
        y.append(row)
        start += count
    return xp.stack(y)


def ablated_scores(forward_from, A, target, skips=None, batch_size=32, score="logit",
                   full=None):
    """The class score with one channel of A set to zero, for every channel: (N, K).

    y^c_k = f^c_{>layer}(A with A^k = 0)      (Desai & Ramaswamy, WACV 2020, Sec. 3)

    NOTE: a channel that is already 0 everywhere is not changed by its ablation, so its y^c_k
    is y^c (``full``, the unablated scores) and it runs no forward.

    Parameters
    ----------
    forward_from : callable (A_batch (B, K, u, v), skips or None) -> logits (B, classes): the
        model run from the layer up (``Sequential.forward_from``)
    A : (N, K, u, v); target : (N,)
    skips : None, or dict residual block -> its input (N, ...): gathered per row of each batch
        (for a layer inside a residual block)
    batch_size : ablated copies per forward
    score : "logit" (the paper's y^c) or "probability"
    full : (N,) the unablated scores y^c, used for all-zero channels (computed if needed)
    Returns
    -------
    y_k : (N, K)
    """
    xp = get_xp(A)
    N, K = A.shape[:2]
    target = xp.asarray(target)
    dead = to_numpy(~(A != 0).reshape(N, K, -1).any(axis=2))
    jobs = [(n, k) for n in range(N) for k in range(K) if not dead[n, k]]
    out = xp.empty((N, K), dtype=A.dtype)
    for s in range(0, len(jobs), batch_size):
        n_idx = xp.asarray([n for n, _ in jobs[s:s + batch_size]])
        k_idx = xp.asarray([k for _, k in jobs[s:s + batch_size]])
        batch = A[n_idx]  # advanced indexing: a copy
        batch[xp.arange(len(k_idx)), k_idx] = 0
        rows = None if skips is None else {b: v[n_idx] for b, v in skips.items()}
        out[n_idx, k_idx] = class_scores(forward_from(batch, rows), target[n_idx], score)
    if dead.any():
        if full is None:
            full = class_scores(forward_from(A, skips), target, score)
        out[xp.asarray(dead)] = xp.broadcast_to(full[:, None], (N, K))[xp.asarray(dead)]
    return out
