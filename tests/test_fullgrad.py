"""FullGrad (Srinivas & Fleuret, arXiv:1905.00780v4): gradcam/family/fullgrad.py.

- completeness of the full-gradient decomposition, to 1e-10 in float64, on a network with a
  bias in every affine layer (conv, batch norm in eval mode, linear), a residual block, max-
  and average pooling: y^c = dy^c/dx . x + sum_l sum dy^c/dz_l * b_l. Negative controls:
  dropping one layer's term, or ignoring batch norm's shift, breaks it by far more than 1e-3;
  on a ReLU6 network (whose clip hides a constant) it fails, as the module says;
- the gradients it uses against HIPS autograd on the independent oracle (tests/oracle.py):
  dy/dx, dy/db for every bias (conv, linear, batch norm's beta), and the per-position
  dy/dz_l at two layers;
- the map: psi (abs, min-max over each layer's block, bilinear with corners aligned, sum over
  channels) computed here by hand with np.interp, against explain's linear_map; control:
  pytorch-grad-cam's per-channel rescale gives another map;
- minicnn's ``Sequential.backward(keep=...)`` records the same gradients as ``stop_at``.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import gradcam
import oracle
import piecewise_nets as P
from gradcam.family.fullgrad import full_gradient, layer_bias
from minicnn import Sequential
from minicnn import layers as L

PROOF_TOL = 1e-10
CONTROL_MIN_ERROR = 1e-3
TARGET = np.array([0, 2])


def completeness_error(logits, input_term, bias_terms, skip=()):
    """max_n |y^c - (sum input_term + sum of the bias terms not in skip)|."""
    N = input_term.shape[0]
    total = input_term.reshape(N, -1).sum(axis=1)
    for name, t in bias_terms.items():
        if name not in skip:
            total = total + t.reshape(N, -1).sum(axis=1)
    return np.abs(logits[np.arange(N), TARGET] - total).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_gradient_decomposition_is_complete(seed):
    model, _, _ = P.network(seed)
    x = P.inputs(seed=seed + 10)
    logits, input_term, bias_terms = full_gradient(model, x, TARGET)
    assert list(bias_terms) == ["conv1", "bn1", "res.conv", "conv2", "fc"]
    assert completeness_error(logits, input_term, bias_terms) <= PROOF_TOL
    # negative controls: each layer's term is needed, and so is the input term
    for name in bias_terms:
        assert completeness_error(logits, input_term, bias_terms, skip=(name,)) \
            > CONTROL_MIN_ERROR, name
    assert completeness_error(logits, 0 * input_term, bias_terms) > CONTROL_MIN_ERROR


def test_batch_norm_shift_is_its_bias():
    """b = beta - gamma mu / sqrt(var + eps); beta alone (ignoring the running mean) fails."""
    model, _, params = P.network(3)
    bn = model["bn1"]
    b = params["bn1.bias"] - params["bn1.weight"] * params["bn1.running_mean"] / np.sqrt(
        params["bn1.running_var"] + 1e-5)
    np.testing.assert_allclose(layer_bias(bn), b, rtol=1e-14)
    x = P.inputs(seed=4)
    logits, input_term, terms = full_gradient(model, x, TARGET)
    wrong = dict(terms, bn1=model.output_gradients["bn1"] * params["bn1.bias"][None, :, None, None])
    assert completeness_error(logits, input_term, terms) <= PROOF_TOL
    assert completeness_error(logits, input_term, wrong) > CONTROL_MIN_ERROR
    assert layer_bias(L.ReLU()) is None and layer_bias(L.Conv2d(1, 1, 1, bias=False)) is None


def test_completeness_fails_on_relu6_whose_clip_is_a_hidden_bias():
    rng = np.random.default_rng(5)
    model = Sequential([("conv", L.Conv2d(1, 2, 3, padding=1, dtype="float64")),
                        ("relu6", L.ReLU6()), ("gap", L.GlobalAvgPool2d()),
                        ("fc", L.Linear(2, 2, dtype="float64"))]).eval()
    for _, lay in model.named_layers():
        for k, p in lay.params.items():
            lay.params[k] = rng.normal(0, 3, p.shape)
    x = rng.normal(0, 3, (2, 1, 6, 6))
    model.forward(x)
    z = model["conv"].forward(x)
    assert (z > 6).any()  # the clip is active somewhere
    logits, input_term, terms = full_gradient(model, x, TARGET % 2)
    N = x.shape[0]
    total = input_term.reshape(N, -1).sum(1) + sum(t.reshape(N, -1).sum(1) for t in terms.values())
    assert np.abs(logits[np.arange(N), TARGET % 2] - total).max() > CONTROL_MIN_ERROR


# --------------------------------------------------------------------------- autograd
def test_fullgrad_gradients_against_autograd_on_the_oracle():
    model, spec, params = P.network(6)
    x = P.inputs(seed=7)
    logits, input_term, terms = full_gradient(model, x, TARGET)
    np.testing.assert_allclose(logits, oracle.forward_spec(spec, params, x), atol=1e-12)
    bias_keys = {"conv1": "conv1.bias", "bn1": "bn1.bias", "res.conv": "res.conv.bias",
                 "conv2": "conv2.bias", "fc": "fc.bias"}
    for n, c in enumerate(TARGET):  # one image at a time: autograd's dy/db sums over the batch
        xn = x[n:n + 1]

        def y_of_x(v):
            return oracle.forward_spec(spec, params, v)[0, c]

        def y_of_params(p):
            return oracle.forward_spec(spec, p, xn)[0, c]

        np.testing.assert_allclose(input_term[n], (grad(y_of_x)(xn) * xn)[0], atol=1e-12)
        dparams = grad(y_of_params)(params)
        for name, key in bias_keys.items():
            # sum over positions of dy/dz_l * b_l = (dy/db_l) * b_l per channel; for batch norm
            # dy/dbeta = sum_ij dy/dz: beta enters z with coefficient 1, like the shift b
            ours = terms[name][n].reshape(terms[name].shape[1], -1).sum(axis=1)
            np.testing.assert_allclose(ours, dparams[key] * layer_bias(model[name]),
                                       atol=1e-11, err_msg=name)
    # the per-position dy/dz_l at two layers: split the oracle's spec there
    for k, name in [(1, "bn1"), (5, "conv2")]:
        assert spec[k][0] == name
        A = oracle.forward_spec(spec[:k + 1], params, x)
        onehot = np.eye(P.CLASSES)[TARGET]
        dA = grad(lambda a: anp.sum(oracle.forward_spec(spec[k + 1:], params, a) * onehot))(A)
        np.testing.assert_allclose(model.output_gradients[name], dA, atol=1e-12, err_msg=name)


# --------------------------------------------------------------------------- the map
def upsample_corners(m, H, W):
    """Bilinear, corners aligned, by np.interp along each axis (independent of gradcam.resize)."""
    h, w = m.shape
    rows = np.array([np.interp(np.linspace(0, w - 1, W), np.arange(w), r) for r in m])
    return np.array([np.interp(np.linspace(0, h - 1, H), np.arange(h), col)
                     for col in rows.T]).T


def psi_by_hand(term, H, W, per_channel=False):
    N, K = term.shape[:2]
    out = np.zeros((N, H, W))
    for n in range(N):
        a = np.abs(term[n])
        blocks = [a[k:k + 1] for k in range(K)] if per_channel else [a]
        for blk in blocks:
            blk = (blk - blk.min()) / (blk.max() - blk.min())
            for ch in blk:
                out[n] += ch if ch.shape == (H, W) else upsample_corners(ch, H, W)
    return out


def test_fullgrad_map_is_psi_of_each_term_summed():
    model, _, _ = P.network(8)
    x = P.inputs(seed=9)
    r = gradcam.explain(model, x, list(TARGET), "fullgrad")
    _, input_term, terms = full_gradient(model, x, TARGET)
    H = W = P.HW
    spatial = ["conv1", "bn1", "res.conv", "conv2"]  # fc's term is not a map
    expected = psi_by_hand(input_term, H, W) + sum(psi_by_hand(terms[n], H, W) for n in spatial)
    assert r.layer == "input" and r.weights is None and r.details["bias_layers"] == tuple(spatial)
    np.testing.assert_allclose(r.linear_map, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.details["input_map"], psi_by_hand(input_term, H, W), atol=1e-12)
    np.testing.assert_array_equal(r.details["bias:fc"], terms["fc"])
    np.testing.assert_allclose(r.heatmap, expected / expected.max(axis=(1, 2), keepdims=True),
                               atol=1e-12)
    # control: pytorch-grad-cam's rescale of each channel on its own is another map
    per_channel = psi_by_hand(input_term, H, W, True) + sum(
        psi_by_hand(terms[n], H, W, True) for n in spatial)
    assert np.abs(per_channel - r.linear_map).max() > 1e-2
    with pytest.raises(gradcam.LayerError, match="takes no layer"):
        gradcam.explain(model, x, method="fullgrad", layer="conv2")


# --------------------------------------------------------------------------- minicnn keep=
def test_backward_keep_records_the_gradient_at_each_named_output():
    model, _, _ = P.network(10)
    x = P.inputs(seed=11)
    dy = np.eye(P.CLASSES)[TARGET]
    names = ["bn1", "res", "res.conv", "res.relu", "pool2"]
    model.forward(x)
    model.backward(dy, need_dw=False, keep=names)
    kept = dict(model.output_gradients)
    assert sorted(kept) == sorted(names)
    for name in names:
        model.forward(x)
        np.testing.assert_array_equal(kept[name], model.backward(dy, stop_at=name, need_dw=False))
    # y = x + body(x): the body's last output gets the block's gradient; the ReLU below masks it
    np.testing.assert_array_equal(kept["res.relu"], kept["res"])
    assert np.abs(kept["res.conv"] - kept["res"]).max() > 1e-6
    model.forward(x)
    model.backward(dy, need_dw=False, keep="conv2")
    assert list(model.output_gradients) == ["conv2"]
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        model.backward(dy, keep=["conv9"])
