"""ROAD's fast imputation (gradcam.metrics.multigrid): the multigrid-preconditioned solver
against a dense solve of the paper's system and against the plain CG solver, the pieces of its
hierarchy against dense matrices built here, and negative controls."""

import warnings

import numpy as np
import pytest

from gradcam import metrics
from gradcam.metrics import multigrid as mg

TOL = 1e-8  # both solvers stop at a relative residual of 1e-9; values are O(1)


def dense_system(removed, w_direct=1 / 6, w_diag=1 / 12):
    """The system on the removed pixels, entry by entry: A (n, n) and K (n, H W) with
    A v = K x_flat (x_flat: one channel in raster order); the paper's weights by default."""
    H, W = removed.shape
    where = {p: i for i, p in enumerate(zip(*np.nonzero(removed)))}
    A, K = np.zeros((len(where), len(where))), np.zeros((len(where), H * W))
    for (r, c), i in where.items():
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if (dr, dc) == (0, 0) or not (0 <= r + dr < H and 0 <= c + dc < W):
                    continue
                w = w_direct if dr == 0 or dc == 0 else w_diag
                A[i, i] += w
                if (r + dr, c + dc) in where:
                    A[i, where[(r + dr, c + dc)]] -= w
                else:
                    K[i, (r + dr) * W + c + dc] += w
    return A, K


def dense_imputation(x, removed, **weights):
    """x (B, C, H, W) with the removed pixels replaced by the dense solve."""
    out = x.copy()
    for n in range(x.shape[0]):
        A, K = dense_system(removed[n], **weights)
        v = np.linalg.solve(A, K @ x[n].reshape(x.shape[1], -1).T)  # (n, C)
        out[n][:, removed[n]] = v.T
    return out


def case(shape, seed=0, B=2, C=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, C) + shape)
    removed = rng.random((B,) + shape) < 0.6
    removed[-1, : shape[0] // 2 + 1, : shape[1] // 2 + 1] = True  # a hole in the corner
    removed[:, -1, -1] = False
    return x, removed


@pytest.mark.parametrize("shape", [(2, 2), (7, 9), (13, 17), (30, 31), (32, 32), (1, 50),
                                   (40, 3)])
def test_multigrid_equals_dense_solve_and_plain_cg(shape):
    """Odd, even, thin and tiny images (1 to 5 levels): the fast solver, the dense solve and
    the plain solver agree to TOL; kept pixels are untouched."""
    x, removed = case(shape)
    fast = metrics.linear_imputation_multigrid(x, removed)
    np.testing.assert_allclose(fast, dense_imputation(x, removed), rtol=0, atol=TOL)
    np.testing.assert_allclose(fast, metrics.linear_imputation(x, removed), rtol=0, atol=TOL)
    kept = ~np.repeat(removed[:, None], x.shape[1], 1)
    np.testing.assert_array_equal(fast[kept], x[kept])


def test_multigrid_check_catches_wrong_weights_and_neighbourhood(monkeypatch):
    """Negative controls: the comparison above fails for other weights (uniform 1/8) or the
    4-neighbourhood, in the reference and in the solver (its stencil swapped for 4 neighbours)."""
    x, removed = case((13, 17), seed=3)
    fast = metrics.linear_imputation_multigrid(x, removed)
    for wrong in (dict(w_direct=1 / 8, w_diag=1 / 8), dict(w_direct=1 / 4, w_diag=0.0)):
        assert np.abs(fast - dense_imputation(x, removed, **wrong)).max() > 1e-3

    def four(v):  # the 4-neighbour mean's sum, weight 1/4
        p = np.pad(v, [(0, 0)] * (v.ndim - 2) + [(1, 1), (1, 1)])
        return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4

    monkeypatch.setattr(mg, "neighbour_sum", four)
    other = metrics.linear_imputation_multigrid(x, removed)
    assert np.abs(other - dense_imputation(x, removed)).max() > 1e-3
    np.testing.assert_allclose(other, dense_imputation(x, removed, w_direct=1 / 4, w_diag=0.0),
                               rtol=0, atol=TOL)


def test_multigrid_noise_dtype_and_errors():
    x, removed = case((9, 8), seed=5)
    noise = np.random.default_rng(6).standard_normal(x.shape)
    quiet = metrics.linear_imputation_multigrid(x, removed)
    noisy = metrics.linear_imputation_multigrid(x, removed, noise)
    R = np.repeat(removed[:, None], x.shape[1], 1)
    np.testing.assert_allclose((noisy - quiet)[R], noise[R], rtol=0, atol=1e-12)
    np.testing.assert_array_equal((noisy - quiet)[~R], 0)
    assert metrics.linear_imputation_multigrid(x.astype(np.float32), removed).dtype == np.float32
    with pytest.raises(ValueError, match="every pixel removed"):
        metrics.linear_imputation_multigrid(x, np.ones_like(removed))


def test_multigrid_needs_few_iterations_where_plain_cg_needs_many():
    """A disc-shaped hole of radius 25 at 64 x 64: 20 iterations suffice with the V-cycle; the
    plain solver (control) warns that 20 do not."""
    x = np.random.default_rng(8).standard_normal((1, 2, 64, 64))
    r, c = np.mgrid[:64, :64]
    removed = ((r - 30) ** 2 + (c - 34) ** 2 < 25 ** 2)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = metrics.linear_imputation_multigrid(x, removed, max_iter=20)
    np.testing.assert_allclose(fast, metrics.linear_imputation(x, removed), rtol=0, atol=TOL)
    with pytest.warns(RuntimeWarning, match="stopped after 20"):
        metrics.linear_imputation(x, removed, max_iter=20)


# --------------------------------------------------------------------------- the hierarchy
def prolong_matrix(fine, coarse):
    """P (h w, hc wc): column q is ``mg.prolong`` of the unit vector e_q."""
    E = np.eye(coarse[0] * coarse[1]).reshape(-1, *coarse)
    return mg.prolong(E, fine).reshape(len(E), -1).T


@pytest.mark.parametrize("fine", [(9, 9), (8, 11), (1, 6)])
def test_restrict_is_the_adjoint_of_a_bilinear_prolong(fine):
    coarse = (fine[0] // 2 + 1, fine[1] // 2 + 1)
    rng = np.random.default_rng(1)
    f = rng.standard_normal((2, 3) + fine)
    P = prolong_matrix(fine, coarse)
    np.testing.assert_allclose(mg.restrict(f, coarse).reshape(6, -1), f.reshape(6, -1) @ P,
                               rtol=0, atol=1e-12)
    # control: injection (every second pixel) is not P^T
    inject = f[..., ::2, ::2]
    h, w = inject.shape[-2:]
    assert np.abs(inject - mg.restrict(f, coarse)[..., :h, :w]).max() > 0.1
    # bilinear: coarse samples of a linear function come back as that function
    r, c = np.mgrid[:coarse[0], :coarse[1]]
    lin = (0.5 + 2 * (2 * r) - 3 * (2 * c)).astype(float)
    R, Cc = np.mgrid[:fine[0], :fine[1]]
    inside = (R <= 2 * (coarse[0] - 1)) & (Cc <= 2 * (coarse[1] - 1))
    np.testing.assert_allclose(mg.prolong(lin, fine)[inside], (0.5 + 2 * R - 3 * Cc)[inside],
                               rtol=0, atol=1e-12)
    near = np.repeat(np.repeat(lin, 2, 0), 2, 1)[:fine[0], :fine[1]]  # control: nearest
    if fine[0] > 1:
        assert np.abs(near - (0.5 + 2 * R - 3 * Cc))[inside].max() >= 2


def active_matrix(K, a):
    """stencil_matrix without the 1s it puts on the inactive points' diagonal."""
    return mg.stencil_matrix(K, a)[0] - np.diag((~a).reshape(-1).astype(float))


def test_stencils_are_the_system_and_its_galerkin_products():
    """Level 0's stencil is the paper's matrix on the removed pixels (zero elsewhere); each
    coarser stencil is P^T A P with P masked by both levels' active points (probing reads the
    product right)."""
    _, removed = case((21, 18), seed=4, B=1)
    R = removed[:, None]
    A, _ = dense_system(removed[0])
    on = removed[0].reshape(-1)
    A0 = active_matrix(mg.fine_stencil(R), R)
    np.testing.assert_allclose(A0[np.ix_(on, on)], A, rtol=0, atol=1e-15)
    assert not A0[~on].any() and not A0[:, ~on].any()
    levels, _ = mg.hierarchy(R)
    assert len(levels) >= 3
    A_l = A0
    for l in range(1, len(levels)):
        a, ac = levels[l - 1][1], levels[l][1]
        P = prolong_matrix(a.shape[-2:], ac.shape[-2:])
        Pm = P * a.reshape(-1, 1) * ac.reshape(1, -1)
        want = Pm.T @ A_l @ Pm
        A_l = active_matrix(levels[l][0], ac)
        np.testing.assert_allclose(A_l, want, rtol=0, atol=1e-13)
        if l == 1:  # control: the unmasked P on the matrix with 1s at kept pixels differs
            full = mg.stencil_matrix(mg.fine_stencil(R), R)[0]
            assert np.abs(P.T @ full @ P - want).max() > 0.1


def vcycle_matrix(levels, pinv, removed):
    """The V-cycle as a matrix on the removed pixels, from unit vectors as channels."""
    H, W = removed.shape
    on = removed.reshape(-1)
    E = np.eye(H * W)[on].reshape(1, -1, H, W)
    return mg.vcycle(levels, pinv, E)[0].reshape(len(E[0]), -1)[:, on]


def test_vcycle_is_symmetric_positive_definite():
    """The preconditioner CG needs; control: the V-cycle without its post-smoothing (built
    here from the same pieces) is not symmetric."""
    _, removed = case((15, 13), seed=9, B=1)
    R = removed[:, None]
    levels, pinv = mg.hierarchy(R)
    V = vcycle_matrix(levels, pinv, removed[0])
    np.testing.assert_allclose(V, V.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh((V + V.T) / 2).min() > 1e-6
    K, a, D = levels[0]
    ac = levels[1][1]
    H, W = removed.shape[1:]
    E = np.eye(H * W)[removed[0].reshape(-1)].reshape(1, -1, H, W)
    u = E / D
    rc = np.where(ac, mg.restrict(E - mg.operator(levels[0], u), ac.shape[-2:]), 0.0)
    u = u + np.where(a, mg.prolong(mg.vcycle(levels, pinv, rc, 1), (H, W)), 0.0)
    half = u[0].reshape(len(E[0]), -1)[:, removed[0].reshape(-1)]
    assert np.abs(half - half.T).max() > 1e-3


def test_both_solvers_on_the_device_match_the_host(device_xp):
    """The fake device (CuPy's names only, no implicit host copies), real CuPy with a GPU."""
    from minicnn.backend import to_numpy

    x, removed = case((13, 17), seed=12)
    for solve in (metrics.linear_imputation_multigrid, metrics.linear_imputation):
        dev = solve(device_xp.asarray(x), device_xp.asarray(removed))
        assert not isinstance(dev, np.ndarray)
        np.testing.assert_allclose(to_numpy(dev), solve(x, removed), rtol=0, atol=TOL)
