"""Softmax cross-entropy (value, gradient, stability, validation) and the SGD / Adam rules.

The optimiser tests use a tiny fake model (``ParamBox``) that exposes only
``named_parameters()``, so they check the update arithmetic and nothing else.
"""

import json
import math

import numpy as np
import pytest

from minicnn.losses import accuracy, log_softmax, softmax_cross_entropy
from minicnn.optim import SGD, Adam

GRAD_RTOL = 1e-7  # central differences in float64 with h = 1e-6


def rel_error(a, b):
    return np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))


# ----------------------------------------------------------------------------- losses
def test_softmax_cross_entropy_value_matches_formula():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 1, 2])
    loss, _ = softmax_cross_entropy(s, y)
    direct = -np.mean([np.log(np.exp(s[n, y[n]]) / np.exp(s[n]).sum()) for n in range(5)])
    assert isinstance(loss, float)
    assert abs(loss - direct) < 1e-12


def test_softmax_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((3, 5))
    y = np.array([4, 0, 2])
    _, ds = softmax_cross_entropy(s, y)
    num = np.zeros_like(s)
    h = 1e-6
    for idx in np.ndindex(*s.shape):
        sp, sm = s.copy(), s.copy()
        sp[idx] += h
        sm[idx] -= h
        num[idx] = (softmax_cross_entropy(sp, y)[0] - softmax_cross_entropy(sm, y)[0]) / (2 * h)
    assert rel_error(ds, num) < GRAD_RTOL
    # closed form: (softmax - onehot) / N, rows sum to zero
    np.testing.assert_allclose(ds.sum(axis=1), 0.0, atol=1e-15)


def test_softmax_cross_entropy_stable_for_huge_logits():
    s = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=np.float32)
    y = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # exp(-2e4) may underflow
        loss, ds = softmax_cross_entropy(s, y)
    # row 0: -log softmax = 1e4; row 1: two tied maxima -> log 2
    assert math.isclose(loss, (1e4 + math.log(2)) / 2, rel_tol=1e-6)
    assert np.all(np.isfinite(ds)) and ds.dtype == np.float32
    # shift invariance: adding a constant to every logit changes nothing
    base = np.array([[0.3, -1.2, 2.0]])
    a = softmax_cross_entropy(base, np.array([2]))
    b = softmax_cross_entropy(base + 1e4, np.array([2]))
    assert math.isclose(a[0], b[0], rel_tol=1e-9)
    np.testing.assert_allclose(a[1], b[1], atol=1e-9)


def test_softmax_cross_entropy_keeps_dtype_and_input():
    s = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    s0 = s.copy()
    _, ds = softmax_cross_entropy(s, np.array([0, 1, 2, 0]))
    assert ds.dtype == np.float32 and ds.shape == s.shape
    np.testing.assert_array_equal(s, s0)


@pytest.mark.parametrize("y, match", [
    (np.array([0, 3]), "out of range"),
    (np.array([-1, 0]), "out of range"),
    (np.array([0, 1, 2]), "shape"),
    (np.array([0.5, 1.0]), "integers"),
])
def test_softmax_cross_entropy_rejects_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(np.zeros((2, 3)), y)


def test_log_softmax_rows_normalise():
    s = np.random.default_rng(3).standard_normal((3, 6)) * 50
    np.testing.assert_allclose(np.exp(log_softmax(s)).sum(axis=1), 1.0, rtol=1e-12)


def test_accuracy_counts_argmax_hits():
    s = np.array([[2.0, 1.0], [0.0, 1.0], [5.0, -1.0], [0.0, 3.0]])
    assert accuracy(s, np.array([0, 1, 1, 0])) == 0.5


# ----------------------------------------------------------------------------- optimisers
class ParamBox:
    """Fake model: named parameters with gradients set by the test."""

    def __init__(self, **params):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.grads = {k: None for k in params}

    def set_grads(self, **grads):
        for k, g in grads.items():
            self.grads[k] = None if g is None else np.array(g, dtype=self.params[k].dtype)

    def named_parameters(self):
        return [(k, p, self.grads[k]) for k, p in self.params.items()]


def test_sgd_plain_step():
    m = ParamBox(w=[1.0, 2.0])
    m.set_grads(w=[0.5, -1.0])
    SGD(m, lr=0.1).step()
    np.testing.assert_allclose(m.params["w"], [0.95, 2.1], rtol=0, atol=1e-15)


def test_sgd_momentum_weight_decay_two_steps():
    # g1 = 0.5 + 0.01*1 = 0.51; buf = 0.51; p = 1 - 0.1*0.51 = 0.949
    # g2 = 0.5 + 0.01*0.949 = 0.50949; buf = 0.9*0.51 + 0.50949 = 0.96849; p = 0.852151
    m = ParamBox(w=[1.0])
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01)
    m.set_grads(w=[0.5])
    opt.step()
    assert m.params["w"][0] == pytest.approx(0.949, abs=1e-14)
    opt.step()
    assert m.params["w"][0] == pytest.approx(0.852151, abs=1e-14)


def test_sgd_nesterov_two_steps():
    # buf = 0.5, d = 0.5 + 0.9*0.5 = 0.95, p = 0.905; buf = 0.95, d = 1.355, p = 0.7695
    m = ParamBox(w=[1.0])
    opt = SGD(m, lr=0.1, momentum=0.9, nesterov=True)
    m.set_grads(w=[0.5])
    opt.step()
    assert m.params["w"][0] == pytest.approx(0.905, abs=1e-14)
    opt.step()
    assert m.params["w"][0] == pytest.approx(0.7695, abs=1e-14)


def test_sgd_updates_in_place_and_skips_missing_grads():
    m = ParamBox(w=[1.0], b=[3.0])
    w_obj = m.params["w"]
    m.set_grads(w=[1.0], b=None)
    opt = SGD(m, lr=0.5, momentum=0.9)
    opt.step()
    assert m.params["w"] is w_obj and w_obj[0] == 0.5
    assert m.params["b"][0] == 3.0 and "b" not in opt.state


def _adam_scalar(p, grads, lr, b1, b2, eps, wd):
    """Kingma & Ba Algorithm 1 on one scalar, with torch's L2 weight decay."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * mhat / (math.sqrt(vhat) + eps)
    return p


def test_adam_first_step_is_lr_times_sign():
    m = ParamBox(w=[1.0, -2.0])
    m.set_grads(w=[0.5, -3.0])
    Adam(m, lr=0.1).step()
    # mhat = g, vhat = g^2: p -= lr * g / (|g| + eps)
    np.testing.assert_allclose(m.params["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8),
                                               -2.0 + 0.1 * 3.0 / (3.0 + 1e-8)], rtol=1e-15)


def test_adam_two_steps_with_weight_decay_match_hand_computation():
    m = ParamBox(w=[1.0])
    opt = Adam(m, lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    for g in (0.5, 0.25):
        m.set_grads(w=[g])
        opt.step()
    expected = _adam_scalar(1.0, [0.5, 0.25], 0.1, 0.8, 0.99, 1e-6, 0.1)
    assert m.params["w"][0] == pytest.approx(expected, rel=1e-13)
    assert opt.state["w"]["step"] == 2


def test_optimizers_keep_float32():
    for opt_cls in (SGD, Adam):
        m = ParamBox(w=[1.0, 2.0])
        m.params["w"] = m.params["w"].astype(np.float32)
        m.set_grads(w=[0.1, 0.2])
        opt_cls(m, lr=0.01).step()
        assert m.params["w"].dtype == np.float32


@pytest.mark.parametrize("make", [
    lambda m: SGD(m, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda m: Adam(m, lr=0.05, betas=(0.85, 0.995), weight_decay=1e-2),
])
def test_optimizer_state_dict_round_trip(make):
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal((2, 3)) for _ in range(4)]
    a = ParamBox(w=np.ones((2, 3)))
    opt_a = make(a)
    for g in grads[:2]:
        a.set_grads(w=g)
        opt_a.step()
    sd = opt_a.state_dict()
    # scalars survive JSON; arrays are plain host arrays (what an npz holds)
    scalars = json.loads(json.dumps(sd["scalars"]))
    arrays = {k: np.array(v) for k, v in sd["arrays"].items()}
    b = ParamBox(w=a.params["w"].copy())
    opt_b = make(ParamBox(w=[0.0]))  # other hyper-parameters are restored from the state
    opt_b.model = b
    opt_b.lr = 123.0
    opt_b.load_state_dict({"scalars": scalars, "arrays": arrays})
    assert opt_b.lr == opt_a.lr
    for g in grads[2:]:
        for box, opt in ((a, opt_a), (b, opt_b)):
            box.set_grads(w=g)
            opt.step()
    np.testing.assert_array_equal(a.params["w"], b.params["w"])


def test_optimizer_load_state_dict_rejects_other_type():
    sd = SGD(ParamBox(w=[1.0]), lr=0.1).state_dict()
    with pytest.raises(ValueError, match="SGD"):
        Adam(ParamBox(w=[1.0])).load_state_dict(sd)


def test_optimizer_rejects_bad_hyperparameters():
    with pytest.raises(ValueError):
        SGD(ParamBox(w=[1.0]), lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        Adam(ParamBox(w=[1.0]), betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        SGD(ParamBox(w=[1.0]), lr=-1.0)
