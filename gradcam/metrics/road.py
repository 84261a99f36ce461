"""ROAD, Remove And Debias (Rong et al., ICML 2022, arXiv:2202.00449v2): remove a share of the
pixels in the map's order, fill them by noisy linear imputation, and read the class score.

Removing pixels leaks the map through the shape of the hole; the paper's imputation fills each
removed pixel with the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones,
1/12 for the 4 diagonal ones) and adds a little noise, so the hole's shape carries less
information. The neighbours may themselves be removed, so the values solve one sparse linear
system per image and channel (the official code, tleemann/road_evaluation road/imputations.py,
``NoisyLinearImputer``; pytorch_grad_cam/metrics/road.py:39-140 is a copy):

    for each removed pixel i:  S_i v_i - sum_{j removed} w_ij v_j = sum_{j kept} w_ij x_j
    S_i = sum of w_ij over the neighbours inside the image;  then v_i += noise_i

NOTE: solved here by conjugate gradients, matrix-free (the 3x3 stencil on the whole image),
in float64, all images, channels and percentiles at once, started from the solution on a
coarser grid. The matrix S - W_rr is symmetric
(w_ij = w_ji: opposite offsets have equal weights) and positive definite whenever a pixel is
kept: every connected group of removed pixels borders a kept one, so it is irreducibly
diagonally dominant. A direct solve would need scipy (not a run-time dependency) or a dense
n x n matrix (n = 45,000 removed pixels at 224 x 224, 90 %: 16 GB); CG needs a few image-sized
arrays.

Which pixels a percentile removes (``variant``):
- None, the official code (tleemann/road_evaluation road/imputed_dataset.py, ``ImputedDataset``,
  the authors' benchmark code): an exact count. MoRF at p removes the floor(p HW / 100) most
  relevant pixels; LeRF at p removes all but them, the (100 - p) % least relevant.
  Tied values are ordered at random (from ``seed``), as the code's 1e-4 jitter does.
- "pytorch-grad-cam" (pytorch_grad_cam/metrics/perturbation_confidence.py:63-64, 80): a
  threshold, np.percentile of the map. MoRF at p KEEPS the pixels below the p-th percentile, so
  it removes the (100 - p) % most relevant (the reverse of the official MoRF); LeRF at p applies
  the same rule to 1 - map and removes the (100 - p) % least relevant (as the official code).
  Ties at the threshold are removed together, so the count can exceed (100 - p) %.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from minicnn.backend import get_xp, to_numpy

from ..progress import progress as _bar
from ..resize import resize
from .perturbation import (BATCH_SIZE, check_batch_size, check_scores, check_variant,
                           class_scores, forward_fn, prepare)

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("morf", "lerf")
CG_TOL = 1e-9  # linear_imputation's default tolerance (relative residual norm)
CG_CHECK = 8  # conjugate gradient steps between convergence checks (_cg)
NOISE = 0.01  # the official run_road's NoisyLinearImputer(noise=0.01); pytorch-grad-cam's too
# (row offset, column offset, weight): the paper's neighbour weights
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


@dataclass(frozen=True)
class RoadResult:
    """ROAD scores of N images at P percentiles, one order.

    curve : (N, P) class score of the imputed image at each percentile
    score : (N,) the unperturbed score; removed_fraction : (N, P) share of pixels removed
    noise : (N, C, H, W) the noise added to every imputed pixel (the same for every percentile)
    """

    curve: object
    score: object
    removed_fraction: object
    percentiles: tuple
    order: str
    noise: object
    target: np.ndarray
    scores: str
    variant: str | None

    @property
    def change(self):
        """(N, P) curve - score: pytorch-grad-cam's ROAD value (after - before)."""
        return self.curve - self.score[:, None]


def neighbour_sum(v):
    """sum_o w_o v shifted by o, zero outside the image: the stencil applied to (..., H, W).

    NOTE: the weights are (1/12) [[1, 2, 1], [2, 0, 2], [1, 2, 1]] = (1/12) (t t^T - 4 delta)
    with t = [1, 2, 1]: two 3-tap passes and a subtraction instead of 8 shifted copies.
    """
    rows = 2 * v
    rows[..., 1:, :] += v[..., :-1, :]
    rows[..., :-1, :] += v[..., 1:, :]
    both = 2 * rows
    both[..., :, 1:] += rows[..., :, :-1]
    both[..., :, :-1] += rows[..., :, 1:]
    both -= 4 * v
    return both / 12.0  # NOTE: a Python scalar keeps the dtype and crosses nothing


def linear_imputation(x, removed, noise=None, tol=CG_TOL, max_iter=None):
    """Fill the removed pixels of each image by the paper's linear imputation, plus ``noise``.

    v solves S v - W_rr v = W_rk x on the removed pixels (module docstring), then
    out = x where kept, v + noise where removed.

    NOTE: conjugate gradients alone need O(hole diameter) iterations (thousands for the big
    holes of a 224 x 224 MoRF); they start here from the same problem solved on a grid half as
    fine (recursively, down to 16 pixels), upsampled, which leaves mostly fine-scale error that
    CG removes in a few hundred steps. The start changes the path, not the solution.

    Parameters
    ----------
    x : (B, C, H, W); removed : (B, H, W) bool; noise : (B, C, H, W) or None (no noise)
    tol : stop when every system's residual norm <= tol * (norm of its right-hand side)
    Returns
    -------
    (B, C, H, W) in x's dtype and module
    """
    xp = get_xp(x)
    R = xp.asarray(removed, dtype=bool)[:, None]  # (B, 1, H, W)
    if bool(R.all(axis=(2, 3)).any()):
        raise ValueError("an image has every pixel removed: linear imputation needs a kept one")
    return _impute(x, R, noise, tol, max_iter)


def _impute(x, R, noise, tol, max_iter):
    """``linear_imputation`` with R (B, 1, H, W) bool in x's module, known to keep a pixel of
    every image (``road`` knows it from its masks: no check, no sync per batch)."""
    xp = get_xp(x)
    v = _solve(x.astype(xp.float64), R, tol, max_iter)
    if noise is not None:
        v = v + xp.asarray(noise, dtype=xp.float64)
    return xp.where(R, v, x).astype(x.dtype, copy=False)


def _solve(x64, R, tol, max_iter):
    """The imputed values (B, C, H, W) float64 (meaningful where R), by CG from a coarse start."""
    xp = get_xp(x64)
    H, W = x64.shape[-2:]
    if min(H, W) >= 32:
        v = _coarse_start(x64, R, tol, max_iter)
    else:  # the kept pixels' mean
        kept = (~R).sum(axis=(2, 3), keepdims=True)
        v = xp.where(R, 0.0, x64).sum(axis=(2, 3), keepdims=True) / xp.maximum(kept, 1)
    return _cg(x64, R, xp.where(R, v, 0.0), tol, max_iter)


def _coarse_start(x64, R, tol, max_iter):
    """The problem on 2 x 2 blocks (a block is removed when all 4 pixels are), solved, then
    bilinearly upsampled back to (H, W)."""
    xp = get_xp(x64)
    B, C, H, W = x64.shape
    ph, pw = H % 2, W % 2
    xe = xp.pad(x64, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    ke = xp.pad(~R, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    h, w = xe.shape[2] // 2, xe.shape[3] // 2
    k = ke.reshape(B, 1, h, 2, w, 2).sum(axis=(3, 5))
    total = xp.where(ke, xe, 0.0).reshape(B, C, h, 2, w, 2).sum(axis=(3, 5))
    xc = total / xp.maximum(k, 1)
    Rc = k == 0
    all_gone = Rc.all(axis=(2, 3), keepdims=True)
    Rc = Rc & ~all_gone  # NOTE: no kept block at all: keep the (zero-count) blocks, start flat
    vc = xp.where(Rc, _solve(xc, Rc, tol, max_iter), xc)
    up = resize(vc.reshape(B * C, h, w), (2 * h, 2 * w))
    return up.reshape(B, C, 2 * h, 2 * w)[:, :, :H, :W]


def _cg(x64, R, v, tol, max_iter):
    """Conjugate gradients on (S - W_rr) v = W_rk x, one system per (image, channel)."""
    xp = get_xp(x64)
    S = neighbour_sum(xp.ones(x64.shape[-2:], dtype=xp.float64))  # in-image weight sums

    def M(u):  # (S - W_rr) u on the removed pixels (u is 0 on kept ones)
        return xp.where(R, S * u - neighbour_sum(u), 0.0)

    b = xp.where(R, neighbour_sum(xp.where(R, 0.0, x64)), 0.0)
    r = b - M(v)
    p = r
    rs = (r * r).sum(axis=(2, 3), keepdims=True)
    goal = (tol ** 2) * xp.maximum((b * b).sum(axis=(2, 3), keepdims=True), 1e-300)
    limit = max_iter if max_iter is not None else 20 * max(x64.shape[-2:]) + 200
    for it in range(limit):
        # NOTE: reading the residuals is a host sync on a device: every CG_CHECK iterations,
        # not every one (at most CG_CHECK - 1 extra steps, each shrinking the residual further)
        if it % CG_CHECK == 0 and not bool((rs > goal).any()):
            return v
        Mp = M(p)
        pMp = (p * Mp).sum(axis=(2, 3), keepdims=True)
        alpha = xp.where(pMp > 0, rs / xp.where(pMp > 0, pMp, 1.0), 0.0)
        v = v + alpha * p
        r = r - alpha * Mp
        rs_new = (r * r).sum(axis=(2, 3), keepdims=True)
        p = r + xp.where(rs > 0, rs_new / xp.where(rs > 0, rs, 1.0), 0.0) * p
        rs = rs_new
    if bool((rs > goal).any()):
        warnings.warn(f"linear imputation: conjugate gradients stopped after {limit} "
                      f"iterations above the tolerance", RuntimeWarning, stacklevel=3)
    return v


def removal_masks(maps, percentiles, order, variant=None, seed=0):
    """Which pixels each percentile removes: (N, P, H, W) bool (see the module docstring).

    official: MoRF removes rank < floor(p HW / 100), LeRF removes rank >= floor(p HW / 100)
    pytorch-grad-cam: MoRF removes m >= percentile(m, p), LeRF removes 1 - m >= percentile(1 - m, p)
    """
    xp = get_xp(maps)
    N, H, W = maps.shape
    if check_variant(variant) == "pytorch-grad-cam":
        m = maps if order == "morf" else 1 - maps
        # (P, N) thresholds, one call: percentile along each image's pixels
        q = xp.percentile(m.reshape(N, -1), tuple(float(p) for p in percentiles), axis=1)
        return ~(m[:, None] < q.T[:, :, None, None])
    flat = to_numpy(maps).reshape(N, -1)
    rng = np.random.default_rng(seed)
    rank = np.empty(flat.shape, dtype=np.int64)
    for n in range(N):
        # NOTE: descending map value; a random key breaks exact ties (the official code adds
        # 1e-4 N(0, 1) to the min-max normalised map, which can also reorder near-ties)
        o = np.lexsort((rng.permutation(flat.shape[1]), -flat[n]))
        rank[n, o] = np.arange(flat.shape[1])
    cut = np.array([int(p) * flat.shape[1] // 100 if float(p).is_integer()
                    else int(p / 100 * flat.shape[1]) for p in percentiles])
    most = rank[:, None, :] < cut[None, :, None]
    return xp.asarray((most if order == "morf" else ~most).reshape(N, len(percentiles), H, W))


def road(model, x, maps, target, percentiles=PERCENTILES, order="morf", scores=None, noise=None,
         seed=0, variant=None, batch_size=BATCH_SIZE, progress=None):
    """ROAD: the class score after removing each percentile of pixels and imputing them.

    curve[n, i] = f^c(impute(x_n, removed_{n, i}) + noise_n on the removed pixels)
    MoRF: a fast drop means a faithful map; LeRF: a slow drop does (Rong et al., arXiv:2202.00449v2)

    Parameters
    ----------
    model; x : (N, C, H, W); maps : (N, H, W) at the input's size; target : (N,) int classes
    percentiles : the paper's 10 ... 90; order : "morf" (most relevant first) or "lerf"
    scores : None (the definition's: "softmax" for the paper, "logits" for pytorch-grad-cam)
    noise : (N, C, H, W) added as given to the imputed pixels, the same for every percentile
        and order; None: NOISE * N(0, 1) drawn from ``seed`` (NumPy's default_rng)
    seed : also breaks ties in the map's order (official variant)
    variant : None (the official code: exact counts) or "pytorch-grad-cam" (thresholds)
    batch_size : imputed inputs per forward (None: sized to the input; at least one image's P)
    progress : bool or None (a bar on a terminal)
    Returns
    -------
    RoadResult (.curve (N, P), .score (N,), .change, .removed_fraction, .noise)
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; use one of {ORDERS}")
    scores = check_scores(scores if scores is not None else
                          "softmax" if check_variant(variant) is None else "logits")
    check_batch_size(batch_size)
    percentiles = tuple(percentiles)
    if not percentiles or any(not 0 < float(p) < 100 for p in percentiles):
        raise ValueError(f"percentiles must lie in (0, 100), got {percentiles}")
    x, maps, c, logits = prepare(model, x, maps, target)
    batch_size = check_batch_size(batch_size, x)
    xp = get_xp(x)
    if noise is None:
        noise = NOISE * np.random.default_rng(seed).standard_normal(x.shape)
    noise = xp.asarray(noise, dtype=x.dtype)
    if noise.shape != x.shape:
        raise ValueError(f"noise must have the input's shape {tuple(x.shape)}, "
                         f"got {tuple(noise.shape)}")
    removed = removal_masks(maps, percentiles, order, variant, seed)
    N, P = x.shape[0], len(percentiles)
    # NOTE: pytorch-grad-cam's threshold removes every pixel when the p-th percentile is the
    # map's minimum (a map that is 0 on more than p % of the image, as ReLU'd CAMs often are);
    # nothing is left to impute from (the system is singular: every row sums to 0), so that
    # score is NaN here. Read back once (one sync); the batches use the device copy.
    skip_all = removed.reshape(N, P, -1).all(axis=2)
    everything = to_numpy(skip_all)
    if everything.any():
        warnings.warn(f"ROAD: {int(everything.sum())} of {everything.size} (image, percentile) "
                      f"pairs remove every pixel (ties at the threshold); their scores are NaN",
                      RuntimeWarning, stacklevel=2)
    group = max(1, batch_size // P)  # images imputed together, one forward of group * P inputs
    forward, curve, cd = forward_fn(model), [], xp.asarray(c)  # NOTE: targets cross once
    bar = _bar(total=N, desc=f"ROAD {order}", enabled=progress)
    try:
        for s in range(0, N, group):
            n = xp.repeat(xp.arange(s, min(s + group, N)), P)  # made on the device
            gone = removed[s:s + group].reshape((-1, 1) + maps.shape[1:])
            skip = skip_all[s:s + group].reshape(-1)
            if everything[s:s + group].any():  # the host copy decides: no sync per batch
                gone = xp.where(skip[:, None, None, None], False, gone)
            y = class_scores(forward(_impute(x[n], gone, noise[n], CG_TOL, None)), cd[n], scores)
            curve.append(xp.where(skip, xp.nan, y).reshape(-1, P))
            bar.update(int(n.shape[0]) // P)
    finally:
        bar.close()
    fraction = removed.reshape(N, P, -1).mean(axis=2)
    return RoadResult(xp.concatenate(curve), class_scores(logits, cd, scores), fraction,
                      percentiles, order, noise, c, scores, variant)
