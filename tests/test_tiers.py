"""Every op three ways: loops (``naive``) = reference (``functional``) = kernels (``kernels``).

Forward output and every backward output, in float64 (TWIN_TOL = 1e-10 of the output's scale;
Winograd's reordered sums WINO_TOL = 1e-9, see test_perf_paths) and float32 (F32_TOL = 1e-4:
three float32 computations that sum in different orders). The ``paths`` fixture runs each case
with the kernels' defaults and with every fast path forced onto the small test shapes: Winograd
from 16 channels, tiny and ragged blocks on 2 threads, the wide grid, short weight-gradient
runs, blocks of channels for every array. Also: a cache made by either tier's forward is
consumed by either tier's backward; whole models agree under ``use_tier("reference")`` and the
default; ``use_tier`` restores the previous tier, also after an exception.
"""

import inspect
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import functional, kernels, naive, tiers, zoo
from minicnn import layers as L
from minicnn.kernels import blocks, conv, winograd
from minicnn.model import Residual, Sequential

TWIN_TOL, WINO_TOL, F32_TOL = 1e-10, 1e-9, 1e-4
TIERS = [functional, kernels]


def close(got, want, tol):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype,
                                                                 want.dtype)
    scale = max(1.0, float(np.abs(want.astype(np.float64)).max(initial=0.0)))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=0,
                               atol=tol * scale)


def all_close(got, want, tol):
    """Tuples of outputs, element by element; a None must be None in both."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g is None) == (w is None), (g, w)
        if w is not None:
            close(g, w, tol)


@pytest.fixture(params=["defaults", "forced"])
def paths(request, monkeypatch):
    """The kernels as shipped, or with every fast path forced onto small shapes."""
    if request.param == "forced":
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)
        monkeypatch.setattr(winograd, "CHUNK", 16 * 16 * 5 * 3)  # row blocks of one image
        monkeypatch.setattr(conv, "CHUNK", 50)
        monkeypatch.setattr(conv, "WIDE_MIN", 1)
        monkeypatch.setattr(conv, "DW_RUN", 7)
        monkeypatch.setattr(blocks, "THREADS", 2)
        monkeypatch.setattr(blocks, "SPLIT_MIN", 0)
    return request.param


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return np.dtype(request.param)


def tol_for(dtype, wino=False):
    return F32_TOL if dtype == np.float32 else (WINO_TOL if wino else TWIN_TOL)


# --------------------------------------------------------------------------- conv
CONV_CASES = {  # name: (x shape, w shape, keyword arguments)
    "3x3 C=F=16 (Winograd when forced)": ((2, 16, 7, 9), (16, 16, 3, 3), dict(padding=1)),
    "3x3 C=3 F=8 (dx by col2im)": ((3, 3, 9, 7), (8, 3, 3, 3), dict(padding=1)),
    "wide map (the wide grid)": ((2, 4, 5, 36), (4, 4, 3, 3), dict(padding=1)),
    "strided, grouped": ((3, 4, 9, 7), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    "depthwise, dilated": ((2, 6, 9, 7), (6, 1, 3, 3), dict(padding=2, dilation=2, groups=6)),
    "5x5 same": ((2, 4, 9, 7), (5, 4, 5, 5), dict(padding="same")),
    "1x1 grouped (one product)": ((2, 8, 6, 5), (4, 4, 1, 1), dict(groups=2)),
    "1x1 strided (windows)": ((2, 8, 7, 7), (4, 8, 1, 1), dict(stride=2)),
    "1x1 padded (pad > d(K-1))": ((2, 2, 5, 6), (3, 2, 1, 1), dict(padding=2)),
    "asymmetric": ((1, 3, 8, 8), (4, 3, 3, 2), dict(stride=(2, 1), padding=(0, 1, 2, 1))),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_three_ways(paths, dtype, case):
    xs, ws, kw = CONV_CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    want, cache_n = naive.conv2d_forward(x, w, b, **kw)
    dout = rng.standard_normal(want.shape).astype(dtype)
    grads = naive.conv2d_backward(dout, cache_n)
    wino = winograd.use_winograd(x, w, (1, 1), (1, 1), kw.get("groups", 1)) and ws[2:] == (3, 3) \
        and kw.get("stride", 1) == 1 and kw.get("dilation", 1) == 1
    tol = tol_for(dtype, wino)
    for tier in TIERS:
        out, cache = tier.conv2d_forward(x, w, b, **kw)
        close(out, want, tol)
        all_close(tier.conv2d_backward(dout, cache), grads, tol)
        all_close(tier.conv2d_backward(dout, cache, need_dw=False), (grads[0], None, None), tol)
        all_close(tier.conv2d_backward(dout, cache, need_dx=False), (None, *grads[1:]), tol)
    if paths == "forced" and case.startswith("3x3 C=F=16"):
        assert kernels.conv2d_forward(x, w, b, **kw)[1].U is not None  # Winograd did run


def test_conv_without_bias_three_ways():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    want, cache_n = naive.conv2d_forward(x, w, None, padding=1)
    dout = rng.standard_normal(want.shape)
    for tier in TIERS:
        out, cache = tier.conv2d_forward(x, w, None, padding=1)
        close(out, want, TWIN_TOL)
        grads = tier.conv2d_backward(dout, cache)
        assert grads[2] is None
        all_close(grads, naive.conv2d_backward(dout, cache_n), TWIN_TOL)


# --------------------------------------------------------------------------- pools
MAXPOOL_CASES = [(2, 2, 0), (3, 2, 1), (2, 1, 0), (5, 5, 2), (8, 8, 0), ((4, 5), (4, 5), 0)]


@pytest.mark.parametrize("geom", MAXPOOL_CASES, ids=str)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_three_ways(paths, dtype, geom, ties):
    """Taps (small windows), the rows path (windows side by side of > 16 taps: 5x5, 8x8,
    4x5), overlapping windows, padding; with post-ReLU ties, where only the first maximum wins."""
    k, s, p = geom
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 17, 16))
    if ties:
        x = np.maximum(x, 0) * (rng.random(x.shape) < 0.3)
    x = x.astype(dtype)
    want, cache_n = naive.maxpool2d_forward(x, k, s, p)
    dout = rng.standard_normal(want.shape).astype(dtype)
    dx_want = naive.maxpool2d_backward(dout, cache_n)
    for tier in TIERS:
        out, cache = tier.maxpool2d_forward(x, k, s, p)
        close(out, want, 0)
        np.testing.assert_array_equal(cache.argmax, cache_n.argmax)
        close(tier.maxpool2d_infer(x, k, s, p), want, 0)
        close(tier.maxpool2d_backward(dout, cache), dx_want, tol_for(dtype))


@pytest.mark.parametrize("geom", [(2, 2, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))], ids=str)
def test_avgpool_three_ways(dtype, geom):
    k, s, p = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    want, cache_n = naive.avgpool2d_forward(x, k, s, p)
    dout = rng.standard_normal(want.shape).astype(dtype)
    for tier in TIERS:
        out, cache = tier.avgpool2d_forward(x, k, s, p)
        close(out, want, tol_for(dtype))
        close(tier.avgpool2d_backward(dout, cache), naive.avgpool2d_backward(dout, cache_n),
              tol_for(dtype))


def test_global_avg_pool_three_ways(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    want, shape_n = naive.global_avg_pool_forward(x)
    dout = rng.standard_normal(want.shape).astype(dtype)
    for tier in TIERS:
        out, shape = tier.global_avg_pool_forward(x)
        close(out, want, tol_for(dtype))
        close(tier.global_avg_pool_backward(dout, shape),
              naive.global_avg_pool_backward(dout, shape_n), tol_for(dtype))


# --------------------------------------------------------------------------- ReLU / ReLU6
@pytest.mark.parametrize("upper", [None, 6.0])
@pytest.mark.parametrize("shape", [(3, 5, 6, 4), (4, 7), (7,), ()])
def test_relu_three_ways(paths, dtype, upper, shape):
    """All three backward rules; inputs with exact 0s and 6s (the kinks, derivative 0 there)
    and douts with exact 0s."""
    rng = np.random.default_rng(5)
    x = np.asarray(rng.standard_normal(shape) * 5)
    x[rng.random(shape) < 0.2] = 0.0
    x[rng.random(shape) < 0.1] = 6.0
    x = x.astype(dtype)
    dout = np.asarray(rng.standard_normal(shape) * (rng.random(shape) < 0.8)).astype(dtype)
    want, mask_n = naive.relu_forward(x, upper)
    for tier in TIERS:
        out, mask = tier.relu_forward(x, upper)
        close(out, want, 0)
        np.testing.assert_array_equal(mask, mask_n)
        assert tier.relu_forward(x, upper, need_mask=False)[1] is None
        for rule in functional.RELU_RULES:
            close(tier.relu_backward(dout, mask, rule), naive.relu_backward(dout, mask_n, rule), 0)


def test_relu_on_integers_three_ways():
    x = np.arange(-3, 10).reshape(1, 13)
    for upper in (None, 6.0):
        want, mask_n = naive.relu_forward(x, upper)
        assert want.dtype == x.dtype and want.max() == (9 if upper is None else 6)
        for tier in TIERS:
            out, mask = tier.relu_forward(x, upper)
            close(out, want, 0)
            np.testing.assert_array_equal(mask, mask_n)


def test_relu_rules_differ_and_unknown_rule_is_refused():
    """Negative control for the three-way check: the three rules give three different answers
    here, so a tier that mixed them up would fail above."""
    x, dout = np.array([-1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0])
    for mod in (naive, *TIERS):
        _, mask = mod.relu_forward(x)
        got = [tuple(mod.relu_backward(dout, mask, r)) for r in functional.RELU_RULES]
        assert got == [(0, -1, 2), (1, 0, 2), (0, 0, 2)], mod.__name__
        with pytest.raises(ValueError, match="guided"):
            mod.relu_backward(dout, mask, "guidedd")


# --------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_three_ways(paths, dtype, training):
    rng = np.random.default_rng(6)
    C = 5
    x = (rng.standard_normal((3, C, 4, 6)) * 3 + 2).astype(dtype)
    gamma, beta, rm = (rng.standard_normal(C).astype(dtype) for _ in range(3))
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    want, cache_n = naive.batchnorm2d_forward(x, gamma, beta, rm, rv, training)
    grads = naive.batchnorm2d_backward(dout, cache_n)
    tol = tol_for(dtype)
    for tier in TIERS:
        out, cache = tier.batchnorm2d_forward(x, gamma, beta, rm, rv, training)
        close(out, want, tol)
        close(cache.mean, cache_n.mean, tol)
        close(cache.var, cache_n.var, tol)
        all_close(tier.batchnorm2d_backward(dout, cache), grads, tol)
        all_close(tier.batchnorm2d_backward(dout, cache, need_dw=False), (grads[0], None, None),
                  tol)
        all_close(tier.batchnorm2d_backward(dout, cache, need_dx=False), (None, *grads[1:]), tol)


def test_batchnorm_train_and_eval_differ():
    """Negative control: the train rule (batch statistics, and the dmu/dvar terms in dx) and the
    eval rule give different answers on this input, so the check above tells them apart."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 4)) * 2 + 1
    g, b, rm, rv = np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)
    for mod in (naive, *TIERS):
        (o1, c1), (o2, c2) = (mod.batchnorm2d_forward(x, g, b, rm, rv, t) for t in (True, False))
        assert np.abs(o1 - o2).max() > 0.1
        d = rng.standard_normal(x.shape)
        dx_train, dx_eval = mod.batchnorm2d_backward(d, c1)[0], mod.batchnorm2d_backward(d, c2)[0]
        assert np.abs(dx_train - dx_eval).max() > 0.1


# --------------------------------------------------------------------------- linear, dropout
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_three_ways(dtype, with_bias):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((4, 6)).astype(dtype), rng.standard_normal((3, 6)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype) if with_bias else None
    want, cache_n = naive.linear_forward(x, w, b)
    dout = rng.standard_normal(want.shape).astype(dtype)
    grads = naive.linear_backward(dout, cache_n)
    assert (grads[2] is None) == (not with_bias)
    for tier in TIERS:
        out, cache = tier.linear_forward(x, w, b)
        close(out, want, tol_for(dtype))
        all_close(tier.linear_backward(dout, cache), grads, tol_for(dtype))
        all_close(tier.linear_backward(dout, cache, need_dw=False), (grads[0], None, None),
                  tol_for(dtype))
        all_close(tier.linear_backward(dout, cache, need_dx=False), (None, *grads[1:]),
                  tol_for(dtype))


def test_dropout_three_ways(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    keep = rng.random(x.shape) >= 0.3
    want, mask_n = naive.dropout_forward(x, 0.3, keep)
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert (want[~keep] == 0).all() and np.allclose(want[keep], x[keep] / 0.7)
    for tier in TIERS:
        out, mask = tier.dropout_forward(x, 0.3, keep)
        close(out, want, tol_for(dtype))
        close(tier.dropout_backward(dout, mask), naive.dropout_backward(dout, mask_n),
              tol_for(dtype))


@pytest.mark.parametrize("tier", ["kernels", "reference"])
def test_dropout_layer_mask_rule(tier):
    """The layer keeps unit i where u_i >= p, u = its generator's ``random(x.shape)``: the loop
    twin with that mask gives the layer's output and gradient. A different seed does not."""
    x = np.random.default_rng(10).standard_normal((4, 6, 3))
    dout = np.random.default_rng(11).standard_normal(x.shape)
    keep = np.random.default_rng(5).random(x.shape) >= 0.3
    want, mask = naive.dropout_forward(x, 0.3, keep)
    with minicnn.use_tier(tier):
        for seed, same in ((5, True), (6, False)):
            layer = L.Dropout(0.3, seed=seed)
            out = layer.forward(x)
            assert np.array_equal(out, want) == same
            assert np.array_equal(layer.backward(dout), naive.dropout_backward(dout, mask)) == same


# --------------------------------------------------------------------------- caches across tiers
def _cross_cases(rng):
    """(name, forward(mod) -> (cache, dout), backward(mod, dout, cache), naive's gradients, tol)."""
    x16, w16 = rng.standard_normal((2, 16, 6, 7)), rng.standard_normal((16, 16, 3, 3))
    b16 = rng.standard_normal(16)
    xp = np.maximum(rng.standard_normal((2, 3, 16, 16)), 0)  # ties
    xb, C = rng.standard_normal((3, 4, 5, 5)), 4
    g, bt, rm, rv = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(C), \
        rng.uniform(0.5, 2, C)
    cases = []
    for name, kw in [("conv Winograd", dict(padding=1)),
                     ("conv strided", dict(stride=2, padding=1))]:
        out_n, cn = naive.conv2d_forward(x16, w16, b16, **kw)
        d = rng.standard_normal(out_n.shape)
        cases.append((name, lambda m, kw=kw: m.conv2d_forward(x16, w16, b16, **kw)[1], d,
                      lambda m, d, c: m.conv2d_backward(d, c), naive.conv2d_backward(d, cn),
                      WINO_TOL))
    for k in (2, 3, 8):
        out_n, cn = naive.maxpool2d_forward(xp, k)
        d = rng.standard_normal(out_n.shape)
        cases.append((f"maxpool {k}x{k}", lambda m, k=k: m.maxpool2d_forward(xp, k)[1], d,
                      lambda m, d, c: (m.maxpool2d_backward(d, c),),
                      (naive.maxpool2d_backward(d, cn),), TWIN_TOL))
    for training in (True, False):
        out_n, cn = naive.batchnorm2d_forward(xb, g, bt, rm, rv, training)
        d = rng.standard_normal(xb.shape)
        cases.append((f"batchnorm training={training}",
                      lambda m, t=training: m.batchnorm2d_forward(xb, g, bt, rm, rv, t)[1], d,
                      lambda m, d, c: m.batchnorm2d_backward(d, c),
                      naive.batchnorm2d_backward(d, cn), TWIN_TOL))
    return cases


def test_caches_are_one_set_of_types():
    for name in ("Conv2dCache", "PoolCache", "BatchNormCache", "LinearCache", "RELU_RULES"):
        assert getattr(kernels, name) is getattr(functional, name), name
    x = np.zeros((1, 16, 4, 4))
    assert type(kernels.conv2d_forward(x, np.zeros((16, 16, 3, 3)))[1]) is functional.Conv2dCache
    assert type(kernels.maxpool2d_forward(x, 2)[1]) is functional.PoolCache


def test_caches_cross_between_tiers(monkeypatch):
    """Forward by one tier, backward by the other (all four pairs): the loops' gradients."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)  # the kernels' cache carries U
    monkeypatch.setattr(blocks, "SPLIT_MIN", 0)  # and their pools and norms run in blocks
    monkeypatch.setattr(blocks, "THREADS", 2)
    for name, fwd, dout, bwd, want, tol in _cross_cases(np.random.default_rng(12)):
        for made_by, used_by in itertools.product(TIERS, TIERS):
            cache = fwd(made_by)
            if name == "conv Winograd":
                assert (cache.U is not None) == (made_by is kernels)
            all_close(bwd(used_by, dout, cache), want, tol)


# --------------------------------------------------------------------------- whole models
def _every_layer_net(rng):
    f64 = dict(rng=rng, dtype="float64")
    return Sequential([
        ("conv1", L.Conv2d(3, 16, 3, padding=1, **f64)),
        ("bn1", L.BatchNorm2d(16, dtype="float64")),
        ("relu1", L.ReLU()), ("pool1", L.MaxPool2d(2)),
        ("block", Residual([("dw", L.Conv2d(16, 16, 3, padding=1, groups=16, **f64)),
                            ("act", L.ReLU6()), ("pw", L.Conv2d(16, 16, 1, **f64))])),
        ("conv2", L.Conv2d(16, 16, 3, padding=1, **f64)), ("relu2", L.ReLU()),
        ("avg", L.AvgPool2d(2)), ("conv3", L.Conv2d(16, 8, 3, stride=2, padding=1, **f64)),
        ("gap", L.GlobalAvgPool2d()), ("drop", L.Dropout(0.25, seed=3)),
        ("fc", L.Linear(8, 4, **f64)),
    ])


@pytest.mark.parametrize("name", ["shapes_cnn", "every layer"])
def test_model_agrees_under_both_tiers(monkeypatch, name):
    """A training step's forward and backward (batch norm on batch statistics, dropout drawn
    from the same seed) give the same logits, input gradient, parameter gradients and running
    statistics under ``use_tier("reference")`` and the default (the kernels, with Winograd
    from 16 channels so conv2 takes it)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)
    rng = np.random.default_rng(13)
    if name == "shapes_cnn":
        model, x = zoo.shapes_cnn(seed=0).astype("float64"), rng.standard_normal((3, 3, 64, 64))
    else:
        model, x = _every_layer_net(rng), rng.standard_normal((2, 3, 16, 16))
    dy = rng.standard_normal((x.shape[0], 4))
    start = {k: v.copy() for k, v in model.state_dict().items()}

    def step(tier, rule="standard"):
        model.load_state_dict({k: v.copy() for k, v in start.items()})
        model["drop"].rng = np.random.default_rng(0)
        with minicnn.use_tier(tier):
            y = model.forward(x)
            dx = model.backward(dy, relu_rule=rule)
        return y, dx, model.grad_dict(), {k: v.copy() for k, v in model.state_dict().items()}

    for rule in ("standard", "guided"):
        y_k, dx_k, g_k, s_k = step("kernels", rule)
        y_r, dx_r, g_r, s_r = step("reference", rule)
        close(y_r, y_k, TWIN_TOL)
        close(dx_r, dx_k, WINO_TOL)
        assert g_r.keys() == g_k.keys() and len(g_k) > 0
        for key in g_k:
            close(g_r[key], g_k[key], WINO_TOL)
        for key in s_k:
            close(s_r[key], s_k[key], TWIN_TOL)
    model.eval()  # and a forward in eval mode (running statistics, no dropout)
    with minicnn.use_tier("reference"):
        y_r = model.forward(x)
    close(y_r, model.forward(x), TWIN_TOL)


# --------------------------------------------------------------------------- the switch
def test_use_tier_switches_and_restores():
    assert tiers.active() is kernels  # the default
    with minicnn.use_tier("reference") as mod:
        assert mod is functional and tiers.active() is functional
        with minicnn.use_tier("kernels"):
            assert tiers.active() is kernels
        assert tiers.active() is functional
    assert tiers.active() is kernels


def test_use_tier_restores_after_an_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with minicnn.use_tier("reference"):
            assert tiers.active() is functional
            raise RuntimeError("boom")
    assert tiers.active() is kernels


def test_use_tier_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="'kernels', 'reference'"):
        with minicnn.use_tier("fast"):
            pass  # pragma: no cover - never entered
    assert tiers.active() is kernels


def test_layers_call_the_active_tier(monkeypatch):
    """A spy on the reference conv: the default never calls it (the negative control),
    ``use_tier("reference")`` does, once per conv layer."""
    calls = []
    real = functional.conv2d_forward
    monkeypatch.setattr(functional, "conv2d_forward",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    model = zoo.shapes_cnn(seed=0).eval()
    x = np.zeros((1, 3, 64, 64), dtype=np.float32)
    model.forward(x)
    assert calls == []
    with minicnn.use_tier("reference"):
        model.forward(x)
    assert len(calls) == 4


# --------------------------------------------------------------------------- one set of names
def test_every_op_has_the_same_signature_in_all_tiers():
    ops = [n for n in functional.__all__ if callable(getattr(functional, n)) and n[0].islower()]
    assert set(functional.__all__) == set(kernels.__all__)
    for name in ops:
        ref = inspect.signature(getattr(functional, name))
        assert inspect.signature(getattr(kernels, name)) == ref, name
        if name != "maxpool2d_infer":  # the loops have no cache-free forward
            assert inspect.signature(getattr(naive, name)) == ref, name


def test_reference_tier_has_no_kernel_plumbing():
    source = Path(functional.__file__).read_text()
    hits = re.findall(r"over_channels|run_blocks|scratch|winograd|threadpool|block_plan", source)
    assert hits == []
    kernel_source = Path(kernels.__file__).with_name("elementwise.py").read_text()
    assert "over_channels" in kernel_source  # the pattern does find plumbing where it is


# --------------------------------------------------------------------------- backends
def test_reference_tier_on_backend(xp):
    """The reference tier keeps to NumPy-and-CuPy code: on each backend it gives the loops'
    numbers (conv, max-pool, ReLU, batch norm, forward and backward)."""
    from minicnn.backend import to_numpy

    rng = np.random.default_rng(14)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal(6)
    out_n, cn = naive.conv2d_forward(x, w, b, stride=2, padding=1, groups=2)
    d = rng.standard_normal(out_n.shape)
    out, c = functional.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), stride=2,
                                       padding=1, groups=2)
    close(to_numpy(out), out_n, TWIN_TOL)
    all_close([to_numpy(g) for g in functional.conv2d_backward(xp.asarray(d), c)],
              naive.conv2d_backward(d, cn), TWIN_TOL)
    xr = np.maximum(x, 0)  # ties for the pool
    out_n, cn = naive.maxpool2d_forward(xr, 3, 2, 1)
    d = rng.standard_normal(out_n.shape)
    out, c = functional.maxpool2d_forward(xp.asarray(xr), 3, 2, 1)
    close(to_numpy(out), out_n, 0)
    close(to_numpy(functional.maxpool2d_backward(xp.asarray(d), c)),
          naive.maxpool2d_backward(d, cn), TWIN_TOL)
    xr, d = x * 4, rng.standard_normal(x.shape)  # ReLU6 clips some
    out_n, mask_n = naive.relu_forward(xr, 6.0)
    out, mask = functional.relu_forward(xp.asarray(xr), 6.0)
    close(to_numpy(out), out_n, 0)
    for rule in functional.RELU_RULES:
        close(to_numpy(functional.relu_backward(xp.asarray(d), mask, rule)),
              naive.relu_backward(d, mask_n, rule), 0)
    g, bt = rng.standard_normal(4), rng.standard_normal(4)
    out_n, cn = naive.batchnorm2d_forward(x, g, bt, None, None, True)
    d = rng.standard_normal(x.shape)
    out, c = functional.batchnorm2d_forward(xp.asarray(x), xp.asarray(g), xp.asarray(bt), None,
                                            None, True)
    close(to_numpy(out), out_n, TWIN_TOL)
    all_close([to_numpy(a) for a in functional.batchnorm2d_backward(xp.asarray(d), c)],
              naive.batchnorm2d_backward(d, cn), TWIN_TOL)
