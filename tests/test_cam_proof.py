"""The CAM-equivalence proof (Selvaraju et al., arXiv:1610.02391v4, Sec. "Grad-CAM generalizes
CAM"), tested as a property of random float64 networks.

On a head A -> GAP -> Linear(W, b), with Z = u*v:

    y^c = sum_k w_k^c (1/Z) sum_ij A^k_ij + b_c   =>   dy^c/dA^k_ij = w_k^c / Z
    =>  alpha_k^c = w_k^c / Z   and   Grad-CAM = ReLU(sum_k w_k^c A^k) / Z = ReLU(CAM) / Z

(the full derivation is in ``gradcam/weights.py``). Three checks on conv -> relu -> conv
("conv2", the explained layer) -> head:

(a) with minicnn's own backward: alpha == W[c] / Z and coarse == ReLU(M_c) / Z, where the CAM
    map M_c = sum_k W[c, k] A^k is computed here with einsum;
(b) against HIPS autograd applied to an independent forward of the head (GAP + Linear written
    in ``autograd.numpy``, no minicnn): our dA == autograd's dA, and autograd's alpha == W[c]/Z;
(c) negative control: the same check, reading w from the final Linear exactly as in (a), on a
    Flatten + dense head (fc1 -> relu -> fc, the ``shapes_cnn`` kind) must FAIL (max error >
    1e-3), which shows the check can fail. K >= 2 there: with one channel the error is a single
    scalar product that a rare draw could bring near zero; with K >= 2 it is a K x K matrix
    identity that no random draw meets.

Errors are measured as max |a - b| over all images and channels (and pixels); values are O(1).
"""

import autograd.numpy as anp
import numpy as np
from autograd import grad
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcam
from minicnn import Sequential
from minicnn import layers as L

PROOF_TOL = 1e-10  # the identity is exact; float64 round-off is ~1e-15
CONTROL_MIN_ERROR = 1e-3  # the negative control must miss by at least this much


@st.composite
def networks(draw, head="gap", min_channels=1):
    """(model, x, target) for conv -> relu -> conv2 (K channels, u x v) -> head, float64.

    Shapes: batch 1-3, input channels 1-3, hidden 1-4, K 1-6 (>= min_channels), u and v 1-6
    independently (3x3 convs with padding 1 keep the input's size), 2-5 classes. Weights and
    inputs are N(0, 1) from a drawn seed; target is None (top-1) or one class per image.
    """
    N, C, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    K = draw(st.integers(min_channels, 6))
    u, v, classes = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    target = draw(st.none() | st.lists(st.integers(0, classes - 1), min_size=N, max_size=N))
    f64 = dict(dtype="float64")
    layers = [("conv1", L.Conv2d(C, hidden, 3, padding=1, **f64)), ("relu1", L.ReLU()),
              ("conv2", L.Conv2d(hidden, K, 3, padding=1, **f64))]
    if head == "gap":
        layers += [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(K, classes, **f64))]
    else:  # Flatten + dense head, as in zoo.shapes_cnn; fc still has weight (classes, K)
        layers += [("flatten", L.Flatten()), ("fc1", L.Linear(K * u * v, K, **f64)),
                   ("relu", L.ReLU()), ("fc", L.Linear(K, classes, **f64))]
    model = Sequential(layers).eval()
    for _, lay in model.named_layers():
        for k, p in lay.params.items():
            lay.params[k] = rng.normal(size=p.shape)
    x = rng.normal(size=(N, C, u, v))
    return model, x, target


def identity_errors(model, x, target):
    """Max errors of alpha == w/Z and coarse == ReLU(CAM)/Z, with w the final Linear's weight."""
    r = gradcam.grad_cam(model, x, target, layer="conv2")
    W = model["fc"].params["weight"]  # (classes, K)
    Z = r.activations.shape[2] * r.activations.shape[3]
    w_c = W[r.target]  # (N, K)
    cam_map = np.einsum("nk,nkij->nij", w_c, r.activations)  # M_c = sum_k w_k^c A^k
    return (r, np.abs(Z * r.weights - w_c).max(),
            np.abs(Z * r.coarse - np.maximum(cam_map, 0)).max())


@settings(max_examples=30, deadline=None)
@given(networks())
def test_cam_proof_alpha_is_w_over_Z_with_our_backward(net):
    model, x, target = net
    r, err_alpha, err_map = identity_errors(model, x, target)
    assert err_alpha <= PROOF_TOL, err_alpha
    assert err_map <= PROOF_TOL, err_map
    # and gradcam.cam agrees: its raw map is M_c and Grad-CAM's coarse map is ReLU(M_c) / Z
    c = gradcam.cam(model, x, target)
    Z = x.shape[2] * x.shape[3]
    assert c.layer == "conv2" and np.array_equal(c.target, r.target)
    assert np.abs(c.coarse / Z - r.coarse).max() <= PROOF_TOL
    assert np.abs(c.heatmap - r.heatmap).max() <= 1e-9


def head_forward(A, W, b):
    """GAP + Linear, written independently in autograd.numpy: y = (1/Z sum_ij A) W^T + b."""
    Z = A.shape[2] * A.shape[3]
    F = anp.sum(anp.sum(A, axis=3), axis=2) / Z  # (N, K)
    return anp.dot(F, W.T) + b


@settings(max_examples=30, deadline=None)
@given(networks())
def test_cam_proof_against_autograd_gradients(net):
    model, x, target = net
    r = gradcam.grad_cam(model, x, target, layer="conv2")
    W, b = model["fc"].params["weight"], model["fc"].params["bias"]
    onehot = np.eye(W.shape[0])[r.target]  # built here, not by gradcam

    def score(A):  # sum_n y^{c_n}(A_n): its gradient at A_n is dy^{c_n}/dA_n
        return anp.sum(head_forward(A, W, b) * onehot)

    dA_autograd = grad(score)(r.activations)
    Z = x.shape[2] * x.shape[3]
    assert np.abs(head_forward(r.activations, W, b) - r.logits).max() <= PROOF_TOL
    assert np.abs(r.gradients - dA_autograd).max() <= PROOF_TOL
    alpha_autograd = dA_autograd.mean(axis=(2, 3))
    assert np.abs(Z * alpha_autograd - W[r.target]).max() <= PROOF_TOL


@settings(max_examples=30, deadline=None)
@given(networks(head="dense", min_channels=2))
def test_cam_proof_negative_control_fails_on_a_dense_head(net):
    model, x, target = net
    _, err_alpha, _ = identity_errors(model, x, target)
    assert err_alpha > CONTROL_MIN_ERROR, f"identity unexpectedly held: max error {err_alpha}"
