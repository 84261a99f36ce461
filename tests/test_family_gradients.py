"""The gradient-weighted CAM family (gradcam/family): identities that must hold exactly, plain-loop
transcriptions of the papers' formulas, and Smooth Grad-CAM++'s noise contract.

Identities on a GAP + Linear head (float64 ``zoo.shapes_gap``, A = relu4, Z = u*v, w = the final
Linear's row for class c, F_k = mean_ij A^k_ij). There dy^c/dA^k_ij = w_k / Z at every position
(gradcam/weights.py derives it), so:

- HiResCAM: sum_k (w_k / Z) A^k = Grad-CAM's linear map (the same map, not Z times it) = M_c / Z,
  with M_c = sum_k w_k A^k CAM's map.
- XGrad-CAM: alpha_k = sum_ij A^k_ij (w_k / Z) / sum_ij A^k_ij = w_k / Z, and its map sums to
  sum_k w_k F_k = y^c - b_c (Conservation). In any network its map sums to sum_kij A dA, as
  HiResCAM's does (Grad-CAM's does not on a dense head: the control).
- Grad-CAM++ (Eq. (19)): with g = w_k / Z and sum_ab A^k_ab = Z F_k,
  alpha_ij = g^2 / (2 g^2 + Z F_k g^3) = 1 / (2 + w_k F_k) at every position (g != 0), and
  w_k^c = exp(y^c) sum_ij alpha relu(g) = exp(y^c) relu(w_k) / (2 + w_k F_k)   (Eq. (5));
  ``weights`` leave out exp(y^c) (``details["log_scale"]`` = y^c): ``paper_weights`` puts it back.
- LayerCAM = HiResCAM when every gradient is positive (a class whose row w is positive); a class
  with mixed signs differs (the control).
- At a ReLU layer (A >= 0): LayerCAM's map = the element-wise map (relu(g) a = relu(g a));
  element-wise >= HiResCAM position by position. At a conv layer (A of both signs) they differ.
"""

import warnings

import numpy as np
import pytest

import gradcam
from gradcam.family.elementwise import elementwise_weights, layercam_weights, xgradcam_weights
from gradcam.family.plusplus import gradcam_pp_alpha, gradcam_pp_weights
from minicnn import zoo

TOL = 1e-10  # relative to the size of the compared values; float64 round-off is ~1e-15
CONTROL = 1e-3


def rel_err(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def gap():
    """float64 GAP + Linear model and input; targets 1 and 2."""
    model = zoo.shapes_gap(seed=2).astype("float64")
    x = np.random.default_rng(7).uniform(0, 1, (2, 3, 32, 32))
    return model, x, [1, 2]


@pytest.fixture(scope="module")
def dense():
    """float64 Flatten + dense head (shapes_cnn): gradients vary with the position."""
    return zoo.shapes_cnn(seed=1).astype("float64"), np.random.default_rng(8).uniform(
        0, 1, (2, 3, 64, 64)), [0, 3]


def head(model, r):
    """w = W[c] (N, K), b_c (N,), F = mean_ij A (N, K), Z, from the model's own parameters."""
    W, b = model["fc"].params["weight"], model["fc"].params["bias"]
    A = r.activations
    return W[r.target], b[r.target], A.mean(axis=(2, 3)), A.shape[2] * A.shape[3]


# --------------------------------------------------------------------------- GAP + Linear head
def test_hirescam_is_gradcam_and_cam_over_Z_on_a_gap_head(gap, dense):
    model, x, c = gap
    h = gradcam.explain(model, x, c, "hirescam")
    g = gradcam.grad_cam(model, x, c)
    w, _, _, Z = head(model, h)
    M = np.einsum("nk,nkij->nij", w, h.activations)  # CAM's M_c
    assert rel_err(h.linear_map, g.linear_map) < TOL
    assert rel_err(Z * h.linear_map, M) < TOL
    np.testing.assert_array_equal(h.weights, h.gradients)  # alpha_k(i, j) = dA^k_ij
    # control: on a dense head the gradient varies with (i, j) and HiResCAM is not Grad-CAM
    dm, dx, dc = dense
    assert rel_err(gradcam.explain(dm, dx, dc, "hirescam").linear_map,
                   gradcam.grad_cam(dm, dx, dc).linear_map) > CONTROL


def test_xgradcam_conserves_the_score_on_a_gap_head(gap):
    model, x, c = gap
    r = gradcam.explain(model, x, c, "xgradcam")
    w, b, _, Z = head(model, r)
    y = r.logits[np.arange(2), r.target]
    assert rel_err(r.linear_map.sum(axis=(1, 2)), y - b) < TOL
    live = r.activations.sum(axis=(2, 3)) > 0  # dead channels get 0 (0/0) and add nothing
    assert rel_err(r.weights[live], (w / Z)[live]) < TOL
    # control: the activations normalised by Z instead of by their sum break conservation
    wrong = (r.activations * r.gradients).sum(axis=(2, 3)) / Z
    wrong_total = np.einsum("nk,nkij->n", wrong, r.activations)
    assert rel_err(wrong_total, y - b) > CONTROL


def test_xgradcam_map_sums_to_the_sum_of_gradient_times_activation(dense):
    model, x, c = dense
    r = gradcam.explain(model, x, c, "xgradcam")
    euler = (r.activations * r.gradients).sum(axis=(1, 2, 3))
    assert rel_err(r.linear_map.sum(axis=(1, 2)), euler) < TOL
    assert rel_err(gradcam.explain(model, x, c, "hirescam").linear_map.sum(axis=(1, 2)),
                   euler) < TOL
    # control: Grad-CAM's map does not (its weights average the gradient uniformly)
    assert rel_err(gradcam.grad_cam(model, x, c).linear_map.sum(axis=(1, 2)), euler) > CONTROL


def test_gradcam_pp_reduces_to_a_closed_form_on_a_gap_head(gap):
    model, x, c = gap
    r = gradcam.explain(model, x, c, "gradcam++")
    w, _, F, Z = head(model, r)
    y = r.logits[np.arange(2), r.target]
    expected = np.exp(y)[:, None] * np.maximum(w, 0) / (2 + w * F)
    assert rel_err(paper_weights(r), expected) < TOL
    assert rel_err(r.weights, np.maximum(w, 0) / (2 + w * F)) < TOL  # without exp(y^c)
    alpha = np.broadcast_to((1 / (2 + w * F))[:, :, None, None], r.activations.shape)
    assert rel_err(r.details["alpha_ij"], alpha) < TOL
    np.testing.assert_array_equal(r.details["log_scale"], y)
    # control: Grad-CAM's uniform alpha = 1/Z gives relu(w)/Z instead, not the closed form
    assert rel_err(np.exp(y)[:, None] * np.maximum(w, 0) / Z, expected) > CONTROL


def test_layercam_equals_hirescam_where_every_gradient_is_positive(gap):
    _, x, _ = gap
    model = zoo.shapes_gap(seed=2).astype("float64")  # its own: class 0's row is made positive
    W = model["fc"].params["weight"]
    W[0] = np.abs(W[0]) + 0.01
    assert (W[1] > 0).any() and (W[1] < 0).any()
    pos_l, pos_h = (gradcam.explain(model, x, [0, 0], m) for m in ("layercam", "hirescam"))
    assert (pos_h.gradients > 0).all()
    np.testing.assert_array_equal(pos_l.weights, pos_h.weights)
    assert rel_err(pos_l.linear_map, pos_h.linear_map) < TOL
    # control: class 1's row has both signs, so relu(dA) != dA and the maps differ
    mix_l, mix_h = (gradcam.explain(model, x, [1, 1], m) for m in ("layercam", "hirescam"))
    assert rel_err(mix_l.linear_map, mix_h.linear_map) > CONTROL


def test_elementwise_against_layercam_and_hirescam_position_by_position(dense):
    model, x, c = dense
    e, l_, h = (gradcam.explain(model, x, c, m, "relu3") for m in
                ("gradcam-elementwise", "layercam", "hirescam"))
    assert (e.activations >= 0).all()
    assert rel_err(e.linear_map, l_.linear_map) < TOL  # A >= 0: relu(g) a = relu(g a)
    products = e.gradients * e.activations
    loop = np.zeros(e.linear_map.shape)
    for k in range(products.shape[1]):
        loop += np.maximum(products[:, k], 0)
    assert rel_err(e.linear_map, loop) < TOL
    np.testing.assert_array_equal(e.coarse, e.linear_map)  # already >= 0
    assert (e.linear_map >= h.linear_map - 1e-15).all()
    assert (e.coarse >= h.coarse - 1e-15).all()  # and so after Eq. (2)'s ReLU
    same = (products >= 0).all(axis=1)  # where no product is negative the maps agree
    assert same.any() and (~same).any()
    assert np.abs(e.linear_map - h.linear_map)[same].max() <= 1e-14
    # control: where A has both signs (and the gradient does not vanish there, unlike at a conv
    # that a ReLU follows directly) LayerCAM is not the element-wise map
    rng = np.random.default_rng(13)
    A, dA = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    assert rel_err(gradcam.weighted_sum(layercam_weights(A, dA), A),
                   gradcam.weighted_sum(elementwise_weights(A, dA), A)) > CONTROL


def paper_weights(r):
    """Grad-CAM++'s w_k^c of Eq. (5), with the factor exp(y^c) the result leaves out."""
    return np.exp(r.details["log_scale"])[:, None] * r.weights


# --------------------------------------------------------------------------- plain loops
def pp_loop(A, dA, y):
    """Eqs. (19) and (5), one scalar at a time; 0 where the denominator is 0."""
    N, K, U, V = A.shape
    w = np.zeros((N, K))
    for n in range(N):
        for k in range(K):
            S = sum(A[n, k, a, b] for a in range(U) for b in range(V))
            for i in range(U):
                for j in range(V):
                    g = dA[n, k, i, j]
                    den = 2 * g ** 2 + S * g ** 3
                    alpha = g ** 2 / den if den != 0 else 0.0
                    w[n, k] += alpha * max(np.exp(y[n]) * g, 0.0)
    return w


def test_gradcam_pp_weights_against_a_plain_loop():
    rng = np.random.default_rng(11)
    A = np.maximum(rng.normal(size=(2, 3, 4, 5)), 0)
    dA = rng.normal(size=A.shape)
    dA[0, 1] = 0.0  # a channel without gradient: 0/0 everywhere
    dA[1, 2, 0, 0] = -2 / A[1, 2].sum()  # a nonzero gradient with a zero denominator
    y = np.array([0.7, -1.3])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        w = np.exp(y)[:, None] * gradcam_pp_weights(A, dA)  # the paper's w, Eq. (5)
        alpha = gradcam_pp_alpha(A, dA ** 2, dA ** 3)
    assert rel_err(w, pp_loop(A, dA, y)) < TOL
    assert (w[0, 1] == 0) and alpha[1, 2, 0, 0] == 0 and np.isfinite(alpha).all()
    # control: 3 instead of 2 in the denominator is another formula, and the check sees it
    A3 = gradcam_pp_alpha(A, dA ** 2 * 1.5, dA ** 3)  # 2 * 1.5 D2 = 3 D2 in the denominator
    assert rel_err((A3 * np.maximum(dA, 0)).sum(axis=(2, 3)) * np.exp(y)[:, None],
                   pp_loop(A, dA, y)) > CONTROL


def test_xgradcam_weights_against_a_plain_loop():
    rng = np.random.default_rng(12)
    A, dA = np.maximum(rng.normal(size=(2, 3, 4, 4)), 0), rng.normal(size=(2, 3, 4, 4))
    A[1, 0] = 0.0  # sum 0: weight 0, without a warning
    loop = np.zeros((2, 3))
    for n in range(2):
        for k in range(3):
            S = A[n, k].sum()
            loop[n, k] = sum(A[n, k, i, j] / S * dA[n, k, i, j] for i in range(4)
                             for j in range(4)) if S else 0.0
    with np.errstate(all="raise"):
        alpha = xgradcam_weights(A, dA)
    assert rel_err(alpha, loop) < TOL and alpha[1, 0] == 0
    assert rel_err(dA.mean(axis=(2, 3)), loop) > CONTROL  # control: Grad-CAM's weights


def test_gradcam_pp_works_where_exp_of_the_logit_overflows_float32():
    """Logits above 88.7 (exp overflows float32): the weights leave exp(y^c) out, so float32
    gives float64's map; the factor itself would have been inf (the control)."""
    model = zoo.shapes_gap(seed=2)
    model["fc"].params["bias"] = model["fc"].params["bias"] + 200
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 32, 32)).astype("float32")
    r32 = gradcam.explain(model, x, method="gradcam++")
    r64 = gradcam.explain(model.astype("float64"), x.astype("float64"), method="gradcam++")
    assert r32.details["log_scale"][0] > 88.8
    assert np.isfinite(r32.weights).all() and r32.heatmap.max() == 1
    np.testing.assert_allclose(r32.heatmap, r64.heatmap, atol=1e-4)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(r32.details["log_scale"]))  # the paper's factor, in float32


# --------------------------------------------------------------------------- Smooth Grad-CAM++
def test_smooth_gradcam_pp_with_one_zero_noise_sample_is_gradcam_pp(gap):
    model, x, c = gap
    zero = np.zeros((1,) + x.shape)
    s = gradcam.explain(model, x, c, "smooth-gradcam++", num_samples=1, noise=zero)
    p = gradcam.explain(model, x, c, "gradcam++")
    assert rel_err(s.weights, p.weights) < 1e-12
    assert rel_err(s.linear_map, p.linear_map) < 1e-12
    np.testing.assert_array_equal(s.details["noise"], zero)
    # control: with noise the paper's weights move (on this GAP head dA = w/Z whatever the
    # input, so only the factor exp(y^c) of the noisy copy, the log_scale, can tell)
    n = gradcam.explain(model, x, c, "smooth-gradcam++", num_samples=1, std=0.3)
    assert rel_err(paper_weights(n), paper_weights(p)) > CONTROL


def test_smooth_gradcam_pp_is_reproducible_and_records_its_noise(gap):
    model, x, c = gap
    a = gradcam.explain(model, x, c, "smooth-gradcam++", seed=5, num_samples=3, std=0.2)
    b = gradcam.explain(model, x, c, "smooth-gradcam++", seed=5, num_samples=3, std=0.2)
    np.testing.assert_array_equal(a.weights, b.weights)
    drawn = np.random.default_rng(5).standard_normal((3,) + x.shape) * 0.2
    np.testing.assert_array_equal(a.details["noise"], drawn)
    assert a.details["sample_scores"].shape == (3, 2)
    again = gradcam.explain(model, x, c, "smooth-gradcam++", num_samples=3, noise=drawn)
    np.testing.assert_array_equal(again.weights, a.weights)
    other = gradcam.explain(model, x, c, "smooth-gradcam++", seed=6, num_samples=3, std=0.2)
    assert rel_err(other.weights, a.weights) > CONTROL  # control: another seed differs


def test_smooth_gradcam_pp_against_a_hand_average_over_copies(dense):
    """D^p = 1/n sum_m exp(y_m) dA_m^p from separate Grad-CAM runs on the noisy copies.

    (At relu3 of a dense head: on a GAP head dA = w/Z whatever the input, and where a copy's
    gradient is either a common value or 0 (relu4 here) the weighting cancels in alpha too.)"""
    model, x, c = dense
    eps = np.random.default_rng(9).normal(0, 0.25, (2,) + x.shape)
    s = gradcam.explain(model, x, c, "smooth-gradcam++", "relu3", num_samples=2, noise=eps)
    runs = [gradcam.grad_cam(model, x + e, c, "relu3") for e in eps]
    e_y = np.stack([np.exp(r.logits[np.arange(2), c]) for r in runs])[:, :, None, None, None]
    g = np.stack([r.gradients for r in runs])
    D1, D2, D3 = ((e_y * g ** p).mean(axis=0) for p in (1, 2, 3))
    D2u, D3u = (g ** 2).mean(axis=0), (g ** 3).mean(axis=0)  # the control's, below
    A = gradcam.grad_cam(model, x, c, "relu3").activations  # the clean input's activations
    S = A.sum(axis=(2, 3))[:, :, None, None]
    with np.errstate(invalid="ignore"):  # 0/0 where no copy has a gradient: taken as 0 below
        alpha = np.where(2 * D2 + S * D3 != 0, D2 / (2 * D2 + S * D3), 0)
        alpha_u = np.where(2 * D2u + S * D3u != 0, D2u / (2 * D2u + S * D3u), 0)
    w = (alpha * np.maximum(D1, 0)).sum(axis=(2, 3))
    assert rel_err(paper_weights(s), w) < TOL
    assert rel_err(s.details["alpha_ij"], alpha) < TOL
    # control: torchcam's unweighted averages of dA^2, dA^3 (no exp(y_m)) give other weights
    assert rel_err((alpha_u * np.maximum(D1, 0)).sum(axis=(2, 3)), w) > 1e-6


def test_smooth_gradcam_pp_refuses_bad_noise_and_sample_counts(gap):
    model, x, c = gap
    with pytest.raises(ValueError, match=r"noise must have shape \(num_samples, \*x.shape\) = "
                                         r"\(4, 2, 3, 32, 32\), got \(4, 3, 32, 32\)"):
        gradcam.explain(model, x, c, "smooth-gradcam++", noise=np.zeros((4, 3, 32, 32)))
    with pytest.raises(ValueError, match="noise must have shape"):
        gradcam.explain(model, x, c, "smooth-gradcam++", noise=np.zeros((3,) + x.shape))
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        gradcam.explain(model, x, c, "smooth-gradcam++", num_samples=0)
    with pytest.raises(ValueError, match="std must be >= 0"):
        gradcam.explain(model, x, c, "smooth-gradcam++", std=-1.0)
