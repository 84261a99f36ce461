"""ROAD's linear imputation by multigrid-preconditioned conjugate gradients: the fast tier of
``gradcam.metrics.imputation.linear_imputation`` (same signature, same system, same solution
to ``tol``; the tests check them against each other and against a dense solve).

The system (``gradcam.metrics.imputation``; Rong et al., arXiv:2202.00449) is A v = b on the
removed pixels, A = S - W_rr, the paper's 3 x 3 stencil with the kept pixels moved to b. Plain
conjugate gradients need O(hole diameter) iterations, each one stencil on the whole image
(the plain solver: 585 at 224 x 224 after its coarse start); preconditioned by one multigrid
V-cycle about 13, growing little with the image's size:

    levels:   A_0 = A (on the removed pixels), A_{l+1} = P_l^T A_l P_l       (Galerkin)
    P_l:      bilinear interpolation from the grid of every second pixel, (h, w) -> (h // 2 + 1,
              w // 2 + 1) coarse points, restricted to the active points of both grids (a coarse
              point is active when an active fine point lies in its 3 x 3 support)
    V-cycle:  u = D^-1 r;  u += P V(P^T (r - A u));  u += D^-1 (r - A u)
              on the coarsest grid (<= COARSEST points) a dense pseudo-inverse
    D:        diag A_0 on the finest level (Jacobi); SMOOTH x the l1 row sums sum_j |a_ij| on
              the coarser ones

The V-cycle is a symmetric positive definite operator, a valid CG preconditioner: the same
smoothing step before and after, a symmetric PSD coarse solve, and every eigenvalue of D^-1 A
below 2 (V = T + (I - D^-1 A) P V_c P^T (I - A D^-1) with T = D^-1/2 (2 - D^-1/2 A D^-1/2)
D^-1/2). On the finest level D^-1 A <= 4/3 inside the image (the stencil's symbol) and measured
<= 1.5 with masks and borders; on the Galerkin levels plain Jacobi reached 4 (masked bilinear
columns can coincide), so there D uses the row sums: A <= l1 sums (a diagonally dominant
difference), so D^-1 A <= 1 / SMOOTH. Plain Jacobi there took 12 CG iterations at 224 x 224
(and is unsafe), l1 sums 15-16, 0.6 l1 sums 13-14.

Every A_l is again a 3 x 3 stencil with one coefficient per point and offset (bilinear P
spreads by 1, A by 1, P^T by 1: coarse points 2 apart never meet), so each level stores
(3, 3, B, 1, h, w) coefficients, computed by probing: A_{l+1} applied to the 9 vectors that are
1 on every third coarse point in each direction reads off one offset per point. The matrix is
the same for every channel: one hierarchy per image, C right-hand sides.

NOTE: the hierarchy is built in float64 and CG runs in float64, as the plain solver: the tests
compare with dense float64 solves at 1e-8, and the tolerance (a relative residual of 1e-9) is
what makes a float32 result exact to its last bits (max |difference| to pytorch-grad-cam's
direct solve 6e-8 at 224 x 224). Only the V-cycle runs in float32 (``_pcg``).
"""

from __future__ import annotations

import warnings

from minicnn.backend import get_xp

from .imputation import fill, neighbour_sum, removed_mask

COARSEST = 16  # grid points at or below which the coarse system is solved densely
NEAR_ZERO = 1e-12  # eigenvalues below this times the largest count as 0 in the coarse solve
SMOOTH = 0.6  # D = SMOOTH x the l1 row sums on the coarse levels: D^-1 A <= 1 / 0.6 < 2


def linear_imputation_multigrid(x, removed, noise=None, tol=1e-9, max_iter=None):
    """Fill the removed pixels of each image by the paper's linear imputation, plus ``noise``.

    v solves S v - W_rr v = W_rk x on the removed pixels, by CG preconditioned with a V-cycle;
    out = x where kept, v + noise where removed.

    Parameters
    ----------
    x : (B, C, H, W); removed : (B, H, W) bool; noise : (B, C, H, W) or None (no noise)
    tol : stop when every system's residual norm <= tol * (norm of its right-hand side)
    max_iter : CG iterations at most (None: 100)
    Returns
    -------
    (B, C, H, W) in x's dtype and module
    """
    return impute_multigrid(x, removed_mask(removed, get_xp(x)), noise, tol, max_iter)


def impute_multigrid(x, R, noise=None, tol=1e-9, max_iter=None):
    """``linear_imputation_multigrid`` with R (B, 1, H, W) bool in x's module, known to keep
    a pixel of every image (``road`` knows it from its masks: no check, no sync per batch)."""
    xp = get_xp(x)
    x64 = x.astype(xp.float64)
    b = xp.where(R, neighbour_sum(xp.where(R, 0.0, x64)), 0.0)  # W_rk x on the removed pixels
    return fill(x, R, _pcg(*hierarchy(R), b, tol, 100 if max_iter is None else max_iter), noise)


def fine_stencil(R):
    """A_0 as (3, 3, B, 1, H, W) coefficients: [1+dy, 1+dx] multiplies u at offset (dy, dx).

    A_0[i, i] = S_i, A_0[i, i+o] = -w_o, on removed i and removed i+o only (0 elsewhere).
    """
    xp = get_xp(R)
    H, W = R.shape[-2:]
    Rf = R.astype(xp.float64)
    Rp = xp.pad(Rf, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = neighbour_sum(xp.pad(xp.ones((1, 1), dtype=xp.float64), 1))  # the 3 x 3 weights w_o
    K = xp.empty((3, 3) + R.shape, dtype=xp.float64)
    for dy in range(3):
        for dx in range(3):
            K[dy, dx] = -w[2 - dy, 2 - dx] * Rf * Rp[..., dy:dy + H, dx:dx + W]
    K[1, 1] = neighbour_sum(xp.ones((H, W), dtype=xp.float64)) * Rf  # S_i
    return K


def apply_stencil(K, u):
    """sum over offsets o of K[o] * (u shifted by o), zero outside: (B, C, h, w) -> same."""
    h, w = u.shape[-2:]
    out = K[1, 1] * u
    for dy in range(3):
        for dx in range(3):
            if (dy, dx) != (1, 1):
                (r, rn), (c, cn) = _overlap(dy, h), _overlap(dx, w)
                out[..., r, c] += K[dy, dx][..., r, c] * u[..., rn, cn]
    return out


def _overlap(d, n):
    """Offset d - 1 along an axis of n points: (the points whose neighbour is inside, those
    neighbours), as two slices."""
    o = d - 1
    return slice(max(0, -o), n - max(0, o)), slice(max(0, o), n + min(0, o))


def operator(level, u):
    """A_l u for u zero where inactive; the fine level by its constant weights (two 3-tap
    passes, ``neighbour_sum``), the coarse ones by their stencils."""
    K, a, D = level
    if K is None:
        xp = get_xp(u)
        return xp.where(a, D * u - neighbour_sum(u), 0.0)
    return apply_stencil(K, u)


def prolong(u, shape):
    """Bilinear interpolation P: coarse point I sits on fine point 2 I; (.., hc, wc) -> shape."""
    for axis, n in ((-1, shape[1]), (-2, shape[0])):
        u = _prolong_axis(u, axis, n)
    return u


def restrict(f, shape):
    """P^T, the adjoint of ``prolong``: (.., h, w) -> (.., hc, wc) = shape."""
    for axis, n in ((-1, shape[1]), (-2, shape[0])):
        f = _restrict_axis(f, axis, n)
    return f


def _prolong_axis(u, axis, n):
    xp = get_xp(u)
    u = xp.moveaxis(u, axis, -1)
    m = u.shape[-1]
    out = xp.empty(u.shape[:-1] + (2 * m - 1,), dtype=u.dtype)
    out[..., ::2] = u
    out[..., 1::2] = 0.5 * (u[..., :-1] + u[..., 1:])
    return xp.moveaxis(out[..., :n], -1, axis)


def _restrict_axis(f, axis, m):
    xp = get_xp(f)
    f = xp.moveaxis(f, axis, -1)
    pad = [(0, 0)] * (f.ndim - 1) + [(0, 2 * m - 1 - f.shape[-1])]
    f = xp.pad(f, pad)
    out = f[..., ::2].copy()
    half = 0.5 * f[..., 1::2]
    out[..., :-1] += half
    out[..., 1:] += half
    return xp.moveaxis(out, -1, axis)


def hierarchy(R):
    """The levels [(K, active, D)] from fine to coarse, and the coarsest's pseudo-inverse.

    K : (3, 3, B, 1, h, w) stencil (None on the finest level, run matrix-free); active :
    (B, 1, h, w) bool; D : the smoother's diagonal (1 where inactive). Returns (levels,
    (B, n, n) pinv)
    """
    xp = get_xp(R)
    K, a = fine_stencil(R), R
    levels = []
    while True:
        # the smoother's D (module docstring): Jacobi on the finest level, l1 sums below
        D = K[1, 1] if not levels else SMOOTH * xp.abs(K).sum(axis=(0, 1))
        D = xp.where(a, D, 1.0)
        h, w = a.shape[-2:]
        if h * w <= COARSEST:
            return levels + [(K, a, D)], _pinv(stencil_matrix(K, a))
        levels.append((None if not levels else K, a, D))
        ac = restrict(a.astype(xp.float64), (h // 2 + 1, w // 2 + 1)) > 0
        K, a = galerkin(levels[-1], ac), ac


def galerkin(level, ac):
    """The stencil of P^T A_l P on the coarse grid, P masked by level's and ``ac``'s active
    points: (3, 3, B, 1, hc, wc), probed.

    For each of the 9 classes (I mod 3, J mod 3) of coarse points, y = P^T A_l P e (e = 1 on
    that class) at point q is the coefficient of q's one neighbour in the class (two points of
    a class are 3 apart; the stencil reaches 1).
    """
    a = level[1]
    xp = get_xp(a)
    hc, wc = ac.shape[-2:]
    I = xp.arange(hc).reshape(hc, 1)
    J = xp.arange(wc).reshape(1, wc)
    Kc = xp.zeros((3, 3) + ac.shape, dtype=xp.float64)
    for cy in range(3):
        for cx in range(3):
            e = xp.where(ac & (I % 3 == cy) & (J % 3 == cx), 1.0, 0.0)
            Pe = xp.where(a, prolong(e, a.shape[-2:]), 0.0)
            y = xp.where(ac, restrict(operator(level, Pe), (hc, wc)), 0.0)
            # the points whose neighbour at offset (oy - 1, ox - 1) is in class (cy, cx):
            # every third row from (cy - oy + 1) mod 3, every third column likewise
            for oy in range(3):
                for ox in range(3):
                    rows = slice((cy - oy + 1) % 3, None, 3)
                    cols = slice((cx - ox + 1) % 3, None, 3)
                    Kc[oy, ox][..., rows, cols] = y[..., rows, cols]
    return Kc


def stencil_matrix(K, a):
    """The (B, n, n) matrix of a stencil K (3, 3, B, 1, h, w) on an n = h w grid, in raster
    order, with 1 on the diagonal of the inactive points (not ``a``) so no row is empty."""
    xp = get_xp(a)
    B, h, w = a.shape[0], a.shape[-2], a.shape[-1]
    n = h * w
    idx = xp.arange(n).reshape(h, w)
    M = xp.zeros((B, n, n), dtype=xp.float64)
    for dy in range(3):
        for dx in range(3):
            (r, rn), (c, cn) = _overlap(dy, h), _overlap(dx, w)
            coef = K[dy, dx][:, 0, r, c].reshape(B, -1)
            M[:, idx[r, c].reshape(-1), idx[rn, cn].reshape(-1)] += coef
    M[:, idx.reshape(-1), idx.reshape(-1)] += xp.where(a, 0.0, 1.0).reshape(B, n)
    return M


def _pinv(M):
    """Pseudo-inverse of symmetric PSD matrices (B, n, n), eigenvalues below NEAR_ZERO times
    the largest taken as 0.

    NOTE: a pseudo-inverse, since masked bilinear columns can coincide (one active fine pixel
    between 4 coarse points) and leave A_c singular; symmetric PSD is all the V-cycle needs.
    """
    xp = get_xp(M)
    lam, V = xp.linalg.eigh(M)
    big = lam > NEAR_ZERO * lam.max(axis=1, keepdims=True)
    inv = xp.where(big, 1.0 / xp.where(big, lam, 1.0), 0.0)
    return (V * inv[:, None, :]) @ V.transpose(0, 2, 1)


def vcycle(levels, pinv, r, l=0):
    """One V-cycle from level l on the residual r (B, C, h, w), zero where inactive.

    u = D^-1 r;  u += P V_{l+1}(P^T (r - A_l u));  u += D^-1 (r - A_l u)   (P, P^T masked)
    """
    xp = get_xp(r)
    K, a, D = levels[l]
    B, C, h, w = r.shape
    if l == len(levels) - 1:
        u = pinv @ r.reshape(B, C, h * w).transpose(0, 2, 1)
        return u.transpose(0, 2, 1).reshape(B, C, h, w)
    u = r / D
    ac = levels[l + 1][1]
    rc = xp.where(ac, restrict(r - operator(levels[l], u), ac.shape[-2:]), 0.0)
    u += xp.where(a, prolong(vcycle(levels, pinv, rc, l + 1), (h, w)), 0.0)
    u += (r - operator(levels[l], u)) / D
    return u


def _pcg(levels, pinv, b, tol, max_iter):
    """Preconditioned CG on A v = b from v = 0, one system per (image, channel).

    NOTE: CG runs in float64, the V-cycle in float32: a preconditioner only has to be roughly
    right (at 224 x 224 the same 12-13 iterations, solutions equal to 1e-12, 30 % less time).
    """
    xp = get_xp(b)
    low = [(None if K is None else K.astype(xp.float32), a, D.astype(xp.float32))
           for K, a, D in levels]
    low_pinv = pinv.astype(xp.float32)

    def precondition(r):
        return vcycle(low, low_pinv, r.astype(xp.float32)).astype(xp.float64)

    def dot(p, q):
        return (p * q).sum(axis=(2, 3), keepdims=True)

    v, r = xp.zeros_like(b), b.copy()
    goal = (tol ** 2) * xp.maximum(dot(b, b), 1e-300)
    z = precondition(r)
    p, rz = z, dot(r, z)
    for _ in range(max_iter):
        if not bool((dot(r, r) > goal).any()):
            return v
        Ap = operator(levels[0], p)
        pAp = dot(p, Ap)
        alpha = xp.where(pAp > 0, rz / xp.where(pAp > 0, pAp, 1.0), 0.0)
        v += alpha * p
        r -= alpha * Ap
        z = precondition(r)
        rz_new = dot(r, z)
        p = z + xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0) * p
        rz = rz_new
    if bool((dot(r, r) > goal).any()):
        warnings.warn(f"linear imputation: multigrid CG stopped after {max_iter} iterations "
                      f"above the tolerance", RuntimeWarning, stacklevel=3)
    return v
