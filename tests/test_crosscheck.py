"""Whole networks: minicnn's hand-written backward against HIPS autograd on the independent
forward in ``tests/oracle.py`` (shift-and-sum convolution, no im2col), in float64.

Checked: the loss, the input gradient, every parameter gradient, and the gradient at an
inner layer (Grad-CAM's dy^c/dA) with the backward stopped there.
"""

import autograd
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import oracle
from minicnn import layers as L
from minicnn.gradcheck import rel_error
from minicnn.losses import softmax_cross_entropy
from minicnn.model import Residual, Sequential

ORACLE_RTOL = 1e-9
ZERO_ATOL = 1e-13  # NOTE: a bias right before a train-mode batch norm has gradient exactly 0


def agree(a, b):
    """Relative error within ORACLE_RTOL, or both sides zero up to round-off."""
    return rel_error(a, b) < ORACLE_RTOL or float(np.max(np.abs(np.asarray(a) - b))) < ZERO_ATOL


def build(rng, width, head, x):
    """The network under test: conv + batch norm + max-pool, an inverted-residual block with a
    depthwise conv and ReLU6, a strided/dilated/asymmetrically padded conv, avg-pool, then a
    GAP + linear head or a flatten + dropout + dense head. Names match ``spec_for``."""
    c = width
    trunk = [
        ("conv1", L.Conv2d(3, c, 3, stride=1, padding=1, rng=rng)),
        ("bn1", L.BatchNorm2d(c)), ("relu1", L.ReLU()),
        ("pool1", L.MaxPool2d(3, stride=2, padding=1)),
        ("block", Residual([
            ("expand", L.Conv2d(c, 2 * c, 1, rng=rng)), ("act", L.ReLU6()),
            ("dw", L.Conv2d(2 * c, 2 * c, 3, padding="same", groups=2 * c, bias=False, rng=rng)),
            ("project", L.Conv2d(2 * c, c, 1, rng=rng)),
        ])),
        ("conv2", L.Conv2d(c, c, (2, 3), stride=(1, 2), padding=(0, 1, 1, 1), dilation=(2, 1),
                           rng=rng)),
        ("relu2", L.ReLU()), ("pool2", L.AvgPool2d(2, stride=1)),
    ]
    if head == "gap":
        return Sequential(trunk + [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(c, 5, rng=rng))])
    feat = Sequential(trunk).forward(x.astype("float32")).size // x.shape[0]
    # NOTE: p=0 keeps dropout an identity in train mode; the oracle has no random mask
    return Sequential(trunk + [("flatten", L.Flatten()), ("drop", L.Dropout(0.0)),
                               ("fc", L.Linear(feat, 5, rng=rng))])


def spec_for(head):
    spec = [
        ("conv1", "conv", dict(pads=1)), ("bn1", "batchnorm", dict(train=True)), ("relu1", "relu", {}),
        ("pool1", "maxpool", dict(k=3, s=2, pads=1)),
        ("block", "residual", [("expand", "conv", {}), ("act", "relu6", {}),
                               ("dw", "conv", dict(pads=1, groups=None)),
                               ("project", "conv", {})]),
        ("conv2", "conv", dict(stride=(1, 2), pads=(0, 1, 1, 1), dilation=(2, 1))),
        ("relu2", "relu", {}), ("pool2", "avgpool", dict(k=2, s=1)),
    ]
    if head == "gap":
        return spec + [("gap", "gap", {}), ("fc", "linear", {})]
    return spec + [("flatten", "flatten", {}), ("drop", "dropout", {}), ("fc", "linear", {})]


def make_pair(seed, width, head, n):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 12, 12))
    model = build(rng, width, head, x).astype("float64").train()
    spec = spec_for(head)
    spec[4][2][2][2]["groups"] = 2 * width  # the depthwise conv inside the block
    params = {k: np.array(v) for k, v in model.state_dict().items() if "running" not in k}
    return model, spec, params, x, rng.integers(0, 5, n)


@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.sampled_from(["gap", "dense"]),
       st.integers(1, 3))
def test_network_gradients_match_autograd(seed, width, head, n):
    model, spec, params, x, y = make_pair(seed, width, head, n)
    scores = model.forward(x)
    loss, dscores = softmax_cross_entropy(scores, y)
    dx = model.backward(dscores)
    grads = model.grad_dict()

    def oracle_loss(p, x_):
        return oracle.softmax_cross_entropy(oracle.forward_spec(spec, p, x_), y)

    assert abs(loss - oracle_loss(params, x)) < 1e-12
    ref_params = autograd.grad(oracle_loss, 0)(params, x)
    ref_x = autograd.grad(oracle_loss, 1)(params, x)
    assert rel_error(dx, ref_x) < ORACLE_RTOL
    assert set(grads) == set(ref_params)
    for key in ref_params:
        assert agree(grads[key], ref_params[key]), key


@given(st.integers(0, 2**31 - 1), st.sampled_from(["gap", "dense"]),
       st.sampled_from(["conv2", "relu2", "block", "block.act"]))
def test_gradient_at_inner_layer_matches_autograd(seed, head, layer):
    """dy^c/dA with backward stopped at ``layer`` == autograd of the rest of the network."""
    model, spec, params, x, _ = make_pair(seed, 2, head, 2)
    model.eval()
    for step in spec:  # the oracle's batch norm must use the running statistics too
        if step[1] == "batchnorm":
            step[2]["train"] = False
    params.update({k: np.array(v) for k, v in model.state_dict().items() if "running" in k})
    scores = model.forward(x, keep=[layer])
    seed_grad = np.zeros_like(scores)
    seed_grad[:, 1] = 1.0  # y^c for c = 1
    dA = model.backward(seed_grad, stop_at=layer, need_dw=False)
    A = model.activations[layer]
    assert dA.shape == A.shape

    acts = {}
    oracle.forward_spec(spec, params, x, acts=acts)
    np.testing.assert_allclose(A, acts[layer], rtol=1e-12, atol=1e-12)

    def class_score_from(A_):
        """Re-run the oracle from layer's output onwards (nested names split at the dot)."""
        top, _, inner = layer.partition(".")
        k = [s[0] for s in spec].index(top)
        if inner:  # inside the residual block: finish the block, add its input, then go on
            block = spec[k][2]
            j = [s[0] for s in block].index(inner)
            body = oracle.forward_spec(block[j + 1:], params, A_, prefix=f"{top}.")
            out = acts[spec[k - 1][0]] + body
        else:
            out = A_
        return oracle.forward_spec(spec[k + 1:], params, out)[:, 1].sum()

    ref = autograd.grad(class_score_from)(acts[layer])
    assert rel_error(dA, ref) < ORACLE_RTOL
