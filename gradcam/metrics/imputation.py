"""ROAD's noisy linear imputation (Rong et al., ICML 2022, arXiv:2202.00449): the
reference solver, plain conjugate gradients.

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

The kernel tier, ``gradcam.metrics.multigrid.linear_imputation_multigrid``, solves the same
system with a multigrid preconditioner (same signature, same solution to ``tol``); ``road`` runs
that one.
"""

from __future__ import annotations

import warnings

from minicnn.backend import get_xp

from ..resize import resize

CG_CHECK = 8  # conjugate gradient steps between convergence checks (_cg)
# (row offset, column offset, weight): the paper's neighbour weights
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


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


def linear_imputation(x, removed, noise=None, tol=1e-9, max_iter=None):
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
    R = removed_mask(removed, xp)
    return fill(x, R, _solve(x.astype(xp.float64), R, tol, max_iter), noise)


def removed_mask(removed, xp):
    """R (B, 1, H, W) bool in module ``xp`` from removed (B, H, W); ValueError where an image
    has no kept pixel (nothing to impute from: the system is singular)."""
    R = xp.asarray(removed, dtype=bool)[:, None]
    if bool(R.all(axis=(2, 3)).any()):
        raise ValueError("an image has every pixel removed: linear imputation needs a kept one")
    return R


def fill(x, R, v, noise):
    """out = x where kept, v + noise where removed (R), in x's dtype."""
    xp = get_xp(x)
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
