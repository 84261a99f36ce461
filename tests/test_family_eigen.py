"""Eigen-CAM, EigenGradCAM (gradcam/family/eigen.py) and the smoothing options eigen_smooth and
aug_smooth (gradcam/smoothing.py).

The first principal component is computed here another way: the top eigenvector of the K x K
matrix M^T M (numpy.linalg.eigh), not an SVD of M, with this module's sign convention applied
by hand. Identities, each with a control that shows it can fail:

- Eigen-CAM does not change when the target changes (control: Grad-CAM does);
- the sign convention: every map's sum is positive; on a post-ReLU layer (A >= 0) v_1 >= 0 and
  the map >= 0 (Perron-Frobenius); the map of -A is the map of A (control: the convention
  "largest |v_1k| positive" flips it);
- mixing the channels by any orthogonal Q (a permutation among them) leaves the map unchanged
  and turns v_1 into Q v_1 (control: a non-orthogonal mixing changes the map);
- map(c A) = |c| map(A); ||map||_2 = sigma_1 (control: not sigma_2);
- centring (pytorch-grad-cam's choice) makes the map blind to per-channel offsets; the
  paper's uncentred map is not (control);
- eigen_smooth and aug_smooth against hand computations (aug_smooth: six explain runs on
  inputs flipped and scaled here, un-flipped and averaged here; control: not un-flipping).
"""

import numpy as np
import pytest

import gradcam
from gradcam.family.eigen import principal_projection
from gradcam.resize import resize
from minicnn import zoo

N, HW = 2, 64


@pytest.fixture(scope="module")
def model():
    return zoo.shapes_cnn(pretrained=True).astype("float64")


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(30).uniform(0, 1, (N, 3, HW, HW))


def first_component(X):
    """(map (N, u, v), v1 (N, K), sigma_1 (N,)) by eigh of M^T M; sign: positive map sum."""
    maps, vs, sig = [], [], []
    for Xn in X:
        K = Xn.shape[0]
        M = Xn.reshape(K, -1).T
        evals, evecs = np.linalg.eigh(M.T @ M)  # ascending
        v = evecs[:, -1]
        p = M @ v
        if p.sum() < 0:
            p, v = -p, -v
        maps.append(p.reshape(Xn.shape[1:]))
        vs.append(v)
        sig.append(np.sqrt(evals[-1]))
    return np.array(maps), np.array(vs), np.array(sig)


# --------------------------------------------------------------------------- Eigen-CAM
@pytest.mark.parametrize("layer", ["relu4", "bn4", "conv3"])
def test_eigencam_is_the_projection_on_the_first_principal_component(model, x, layer):
    r = gradcam.explain(model, x, None, "eigencam", layer)
    p, v, s1 = first_component(r.activations)
    np.testing.assert_allclose(r.linear_map, p, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.weights, v, rtol=1e-9, atol=1e-9)
    sigma = r.details["singular_values"]
    np.testing.assert_allclose(sigma[:, 0], s1, rtol=1e-10)
    assert (np.diff(sigma, axis=1) <= 1e-12).all()  # descending
    # ||M v_1|| = sigma_1 (control: not sigma_2)
    norms = np.sqrt((r.linear_map ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(norms, sigma[:, 0], rtol=1e-10)
    assert (np.abs(norms - sigma[:, 1]) > 1e-3 * norms).all()
    assert r.gradients is None and r.weights.shape == r.activations.shape[:2]


def test_eigencam_does_not_change_when_the_target_changes(model, x):
    a = gradcam.explain(model, x, [0, 1], "eigencam")
    b = gradcam.explain(model, x, [3, 2], "eigencam")
    for f in ("weights", "linear_map", "coarse", "heatmap"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.target.tolist() != b.target.tolist()
    ga, gb = gradcam.grad_cam(model, x, [0, 1]), gradcam.grad_cam(model, x, [3, 2])
    assert np.abs(ga.linear_map - gb.linear_map).max() > 1e-3  # control: Grad-CAM does change


def test_sign_convention_positive_sum_and_perron_frobenius(model, x):
    post = gradcam.explain(model, x, None, "eigencam", "relu4")  # A >= 0
    assert (post.activations >= 0).all()
    assert (post.weights >= -1e-12).all() and (post.linear_map >= -1e-9).all()
    mixed = gradcam.explain(model, x, None, "eigencam", "bn4")  # A of both signs
    assert (mixed.activations < 0).any() and (mixed.linear_map.sum(axis=(1, 2)) > 0).all()
    # zero-mean A: the sum is positive, yet the map is negative somewhere (control: the
    # convention fixes the sum, not every entry; Perron-Frobenius needs A >= 0)
    noise = np.random.default_rng(34).normal(size=(5, 6, 4, 4))
    p, _, _ = principal_projection(noise)
    assert (p.sum(axis=(1, 2)) > 0).all() and (p.min(axis=(1, 2)) < -1e-3).all()


def test_the_map_of_minus_A_is_the_map_of_A(model, x):
    A = gradcam.explain(model, x, None, "eigencam", "bn4").activations
    p, v, _ = principal_projection(A)
    q, w, _ = principal_projection(-A)
    np.testing.assert_allclose(q, p, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w, -v, rtol=1e-10, atol=1e-10)
    # control: with "largest |v_1k| positive" (v_1 depends on M^T M only) the map flips sign
    def by_peak(X):
        _, vv, _ = first_component(X)
        vv = vv * np.sign(vv[np.arange(len(vv)), np.abs(vv).argmax(1)])[:, None]
        return np.einsum("nk,nkij->nij", vv, X)
    np.testing.assert_allclose(by_peak(-A), -by_peak(A), rtol=1e-10, atol=1e-10)
    assert np.abs(by_peak(-A) - p).max() > 1e-3


def test_orthogonal_channel_mixing_keeps_the_map_and_rotates_v(model, x):
    A = gradcam.explain(model, x, None, "eigencam", "relu4").activations
    K = A.shape[1]
    rng = np.random.default_rng(31)
    Q, _ = np.linalg.qr(rng.normal(size=(K, K)))
    perm = np.eye(K)[rng.permutation(K)]
    p, v, s = principal_projection(A)
    for mix in (Q, perm):
        pm, vm, sm = principal_projection(np.einsum("kl,nlij->nkij", mix, A))
        np.testing.assert_allclose(pm, p, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(vm, v @ mix.T, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(sm, s, rtol=1e-9, atol=1e-9)
    assert np.abs(v @ perm.T - v).max() > 1e-3  # the weights really moved
    D = np.diag(rng.uniform(0.2, 3.0, K))  # control: not orthogonal
    pd, _, _ = principal_projection(np.einsum("kl,nlij->nkij", D, A))
    unit = lambda m: m / np.sqrt((m ** 2).sum(axis=(1, 2), keepdims=True))  # noqa: E731
    assert np.abs(unit(pd) - unit(p)).max() > 1e-3


def test_scaling_and_centring(model, x):
    A = gradcam.explain(model, x, None, "eigencam", "bn4").activations
    p, _, _ = principal_projection(A)
    np.testing.assert_allclose(principal_projection(3 * A)[0], 3 * p, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(principal_projection(-2 * A)[0], 2 * p, rtol=1e-10, atol=1e-9)
    offset = np.random.default_rng(32).normal(size=(1, A.shape[1], 1, 1))
    pc, _, _ = principal_projection(A, centre=True)
    np.testing.assert_allclose(principal_projection(A + offset, centre=True)[0], pc,
                               rtol=1e-8, atol=1e-8)
    assert np.abs(principal_projection(A + offset)[0] - p).max() > 1e-2  # the paper's: not blind
    # centred, the map sums to zero (the columns do), so the sign is the largest |v_1k|'s
    _, vc, _ = principal_projection(A, centre=True)
    np.testing.assert_allclose(pc.sum(axis=(1, 2)), 0, atol=1e-9 * np.abs(pc).sum())
    assert (vc[np.arange(len(vc)), np.abs(vc).argmax(axis=1)] > 0).all()
    # a zero sum (here exactly: one channel, symmetric values): the largest |v_1k| is positive
    X = np.array([[[[1.0, -1.0], [2.0, -2.0]]]])
    for Y in (X, -X):
        py, vy, _ = principal_projection(Y)
        np.testing.assert_array_equal(vy, [[1.0]])
        np.testing.assert_allclose(py, Y[:, 0], rtol=1e-15)
    with pytest.raises(ValueError, match="sign must be"):
        principal_projection(A, sign="max")


# --------------------------------------------------------------------------- EigenGradCAM
def test_eigengradcam_projects_gradient_times_activation(model, x):
    r = gradcam.explain(model, x, [1, 2], "eigengradcam")
    g = gradcam.grad_cam(model, x, [1, 2])
    np.testing.assert_array_equal(r.gradients, g.gradients)  # the same backward
    p, v, _ = first_component(r.gradients * r.activations)
    np.testing.assert_allclose(r.linear_map, p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.weights, v[:, :, None, None] * r.gradients, rtol=1e-9,
                               atol=1e-15)
    np.testing.assert_allclose(r.details["v1"], v, rtol=1e-9, atol=1e-12)
    other = gradcam.explain(model, x, [3, 0], "eigengradcam")
    assert np.abs(other.linear_map - r.linear_map).max() > 1e-6  # unlike Eigen-CAM, class-bound


# --------------------------------------------------------------------------- eigen_smooth
@pytest.mark.parametrize("method", ["gradcam", "eigengradcam"])
def test_eigen_smooth_is_the_first_component_of_alpha_times_A(model, x, method):
    plain = gradcam.explain(model, x, [1, 3], method)
    r = gradcam.explain(model, x, [1, 3], method, eigen_smooth=True)
    np.testing.assert_array_equal(r.weights, plain.weights)
    alpha = plain.weights if plain.weights.ndim == 4 else plain.weights[:, :, None, None]
    p, _, s1 = first_component(alpha * plain.activations)
    np.testing.assert_allclose(r.linear_map, p, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(r.coarse, np.maximum(r.linear_map, 0))
    np.testing.assert_allclose(r.details["eigen_smooth_singular_values"][:, 0], s1, rtol=1e-10)
    assert np.abs(r.linear_map - plain.linear_map).max() > 1e-6  # control: another map
    with pytest.raises(ValueError, match="channel and position methods.*'saliency'"):
        gradcam.explain(model, x, method="saliency", eigen_smooth=True)


# --------------------------------------------------------------------------- aug_smooth
def test_aug_smooth_averages_six_unflipped_runs(model, x):
    r = gradcam.explain(model, x, None, "gradcam", aug_smooth=True)
    plain = gradcam.explain(model, x, None, "gradcam")
    np.testing.assert_array_equal(r.target, plain.target)
    np.testing.assert_array_equal(r.weights, plain.weights)
    coarse, linear, unflipped = 0, 0, 0
    runs = [(flip, f) for flip in (False, True) for f in (0.9, 1.0, 1.1)]  # ttach's order
    for flip, f in runs:
        xt = (x[..., ::-1] if flip else x) * f
        rt = gradcam.explain(model, xt, plain.target, "gradcam")
        m = rt.coarse.max(axis=(1, 2), keepdims=True)
        back = (lambda a: a[..., ::-1]) if flip else (lambda a: a)  # noqa: E731
        coarse = coarse + back(rt.coarse) / m
        linear = linear + back(rt.linear_map) / m
        unflipped = unflipped + rt.coarse / m
    np.testing.assert_allclose(r.coarse, coarse / 6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r.linear_map, linear / 6, rtol=1e-12, atol=1e-15)
    heat = resize(coarse / 6, (HW, HW))
    np.testing.assert_allclose(r.heatmap, heat / heat.max(axis=(1, 2), keepdims=True), atol=1e-12)
    assert r.details["aug_coarse"].shape == (6,) + r.coarse.shape
    assert r.details["aug_flips"].tolist() == [f for f, _ in runs]
    assert r.details["aug_factors"].tolist() == [f for _, f in runs]
    assert np.abs(unflipped / 6 - r.coarse).max() > 1e-3  # control: the un-flip matters
    with pytest.raises(ValueError, match="channel and position methods"):
        gradcam.explain(model, x, method="fullgrad", aug_smooth=True)


def test_flip_commutes_with_the_half_pixel_resize():
    """So un-flipping the coarse map equals pytorch-grad-cam's un-flipping of the resized map."""
    m = np.random.default_rng(33).normal(size=(2, 5, 7))
    np.testing.assert_allclose(resize(m[..., ::-1], (20, 33))[..., ::-1], resize(m, (20, 33)),
                               rtol=1e-13, atol=1e-14)
    corners = resize(m[..., ::-1], (20, 33), mode="nearest")[..., ::-1]  # control: nearest
    assert np.abs(corners - resize(m, (20, 33), mode="nearest")).max() > 1e-3
