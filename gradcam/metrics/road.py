"""ROAD, Remove And Debias (Rong et al., ICML 2022, arXiv:2202.00449v2): remove a share of the
pixels in the map's order, fill them by noisy linear imputation, and read the class score.

Removing pixels leaks the map through the shape of the hole; the paper fills each removed
pixel from its neighbours plus a little noise (``gradcam.metrics.imputation``: the system, the
plain solver; ``gradcam.metrics.multigrid``: the fast solver ``road`` runs).

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
from .multigrid import impute_multigrid
from .perturbation import (BATCH_SIZE, check_batch_size, check_scores, check_variant,
                           class_scores, forward_fn, prepare)

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("morf", "lerf")
NOISE = 0.01  # the official run_road's NoisyLinearImputer(noise=0.01); pytorch-grad-cam's too


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
            y = class_scores(forward(impute_multigrid(x[n], gone, noise[n])), cd[n], scores)
            curve.append(xp.where(skip, xp.nan, y).reshape(-1, P))
            bar.update(int(n.shape[0]) // P)
    finally:
        bar.close()
    fraction = removed.reshape(N, P, -1).mean(axis=2)
    return RoadResult(xp.concatenate(curve), class_scores(logits, cd, scores), fraction,
                      percentiles, order, noise, c, scores, variant)
