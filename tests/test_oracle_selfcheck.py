"""Checks of the autograd oracle itself, and of ``minicnn.naive`` against it.

1. The oracle (tests/oracle.py) against explicit loops written here, which share no code with it.
2. ``naive`` forwards against the oracle (float64, many geometries).
3. ``naive`` backwards against central finite differences of the oracle's forward, contracted with a
   random upstream gradient dout (a VJP check), and against ``autograd.grad`` of the oracle.

Max-pool inputs are a random permutation (distinct values, gaps >> the FD step), so no window has
a tie; one explicit test pins the tie rule (the first maximum in row-major order takes it all).
"""

from __future__ import annotations

import math

import autograd
import numpy as np
import pytest

from minicnn import naive

try:  # the tests folder may or may not be a package
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

GRAD_RTOL = 1e-6  # analytic vs numerical gradient
FWD_RTOL = 1e-10  # two float64 forwards of the same op
FD_STEP = 1e-6


def rel_error(a, b):
    """A global relative error (CS231n's is per element): max|a-b| / max(1e-8, max(|a|+|b|))."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_vjp(f, x, dout, h=FD_STEP):
    """sum(f(x) * dout) differentiated by central differences, one element of x at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = np.sum(f(x) * dout)
        x[idx] = old - h
        fm = np.sum(f(x) * dout)
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def same_pads(hw, k, s, d):
    """TensorFlow's "same" padding, recomputed here: OH = ceil(H/s), odd pixel after."""
    pads = []
    for size, kk, ss, dd in zip(hw, k, s, d):
        total = max((math.ceil(size / ss) - 1) * ss + dd * (kk - 1) + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def as_pads4(padding, hw, k, s, d):
    if padding == "same":
        return same_pads(hw, k, s, d)
    if padding == "valid":
        return (0, 0, 0, 0)
    if isinstance(padding, int):
        return (padding,) * 4
    return (padding[0], padding[0], padding[1], padding[1]) if len(padding) == 2 else padding


def p2(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------- explicit loops (no shared code)


def conv_loops(x, w, b, stride, pads, dilation, groups):
    """out[n,f,oh,ow] = b[f] + sum_{c,i,j} w[f,c,i,j] x_pad[n, g*Cg+c, oh*sh+i*dh, ow*sw+j*dw]."""
    (sh, sw), (dh, dw) = p2(stride), p2(dilation)
    t, bo, le, ri = pads
    xp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + t + bo, x.shape[3] + le + ri))
    xp[:, :, t:t + x.shape[2], le:le + x.shape[3]] = x
    N, C, Hp, Wp = xp.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    OH, OW = (Hp - dh * (KH - 1) - 1) // sh + 1, (Wp - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if b is None else b[f]
                    for c in range(Cg):
                        for i in range(KH):
                            for j in range(KW):
                                pixel = xp[n, g * Cg + c, oh * sh + i * dh, ow * sw + j * dw]
                                acc += w[f, c, i, j] * pixel
                    out[n, f, oh, ow] = acc
    return out


def pool_loops(x, k, s, pad, reduce):
    """reduce(x_pad[n, c, oh*sh : oh*sh+KH, ow*sw : ow*sw+KW]) with pad values +-inf or 0."""
    (KH, KW), (sh, sw), (ph, pw) = p2(k), p2(s), p2(pad)
    fill = -np.inf if reduce is max else 0.0
    N, C, H, W = x.shape
    xp = np.full((N, C, H + 2 * ph, W + 2 * pw), fill)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    OH, OW = (H + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1
    out = np.zeros((N, C, OH, OW))
    for n, c, oh, ow in np.ndindex(N, C, OH, OW):
        vals = [xp[n, c, oh * sh + i, ow * sw + j] for i in range(KH) for j in range(KW)]
        out[n, c, oh, ow] = max(vals) if reduce is max else sum(vals) / (KH * KW)
    return out


# --------------------------------------------------------------------------- geometries

CONV_CASES = {  # name: (x shape, w shape, stride, padding, dilation, groups, bias)
    "basic": ((2, 3, 6, 6), (4, 3, 3, 3), 1, 1, 1, 1, True),
    "stride2": ((2, 3, 7, 7), (4, 3, 3, 3), 2, 1, 1, 1, True),
    "dilation2": ((2, 2, 7, 7), (3, 2, 3, 3), 1, 2, 2, 1, True),
    "groups2": ((2, 4, 6, 6), (6, 2, 3, 3), 1, 1, 1, 2, True),
    "depthwise": ((2, 3, 5, 5), (3, 1, 3, 3), 1, 1, 1, 3, True),
    "depthwise_x2": ((1, 2, 5, 5), (4, 1, 3, 3), 2, 1, 1, 2, False),
    "asym_pad_rect": ((2, 2, 6, 7), (3, 2, 2, 3), (2, 1), (1, 0, 2, 1), 1, 1, True),
    "same_stride2": ((2, 3, 7, 6), (4, 3, 3, 3), 2, "same", 1, 1, True),
    "same_dilated": ((1, 2, 5, 6), (2, 2, 3, 3), 1, "same", (2, 1), 1, True),
    "out_1x1": ((2, 3, 3, 3), (2, 3, 3, 3), 1, "valid", 1, 1, True),
    "batch1_1x1k": ((1, 3, 5, 5), (2, 3, 1, 1), 2, 0, 1, 1, True),
    "pair_pad_nobias": ((2, 2, 5, 6), (3, 2, 2, 2), (1, 2), (1, 2), 1, 1, False),
}

POOL_CASES = {  # name: (x shape, kernel, stride, padding)
    "k2": ((2, 3, 6, 6), 2, None, 0),
    "k3s2p1": ((2, 2, 7, 7), 3, 2, 1),
    "rect": ((1, 2, 5, 6), (2, 3), (1, 2), (1, 1)),
    "overlap": ((2, 2, 5, 5), 3, 1, 0),
    "out_1x1": ((2, 2, 3, 3), 3, None, 0),
    "pad_w_only": ((1, 2, 5, 7), (2, 3), 2, (0, 1)),
    "asym4": ((2, 2, 6, 5), 3, 2, (1, 0, 0, 1)),
    "same_s2": ((1, 2, 7, 6), 3, 2, "same"),
}


def conv_data(case, seed=0):
    xs, ws, stride, padding, dilation, groups, bias = CONV_CASES[case]
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    pads = as_pads4(padding, xs[2:], ws[2:], p2(stride), p2(dilation))
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), pads


def pool_data(case, seed=0):
    xs, k, s, pad = POOL_CASES[case]
    rng = np.random.default_rng(seed)
    # distinct values, at least 1/size apart: no ties within any window
    x = (rng.permutation(int(np.prod(xs))).reshape(xs) - np.prod(xs) / 2) / 7.0
    pads = as_pads4(pad, xs[2:], p2(k), p2(k if s is None else s), (1, 1))
    return x, k, s, pad, pads


# ------------------------------------------------------------------ 1. the oracle itself


@pytest.mark.parametrize("case", ["groups2", "asym_pad_rect", "dilation2", "same_stride2"])
def test_oracle_conv2d_matches_loops(case):
    x, w, b, kw, pads = conv_data(case)
    got = oracle.conv2d(x, w, b, kw["stride"], pads, kw["dilation"], kw["groups"])
    want = conv_loops(x, w, b, kw["stride"], pads, kw["dilation"], kw["groups"])
    assert rel_error(got, want) < FWD_RTOL


@pytest.mark.parametrize("case", ["k3s2p1", "rect", "pad_w_only"])
def test_oracle_pools_match_loops(case):
    x, k, s, pad, pads = pool_data(case)
    s_ = k if s is None else s
    assert rel_error(oracle.maxpool2d(x, k, s, pads), pool_loops(x, k, s_, pad, max)) == 0.0
    assert rel_error(oracle.avgpool2d(x, k, s, pads), pool_loops(x, k, s_, pad, sum)) < FWD_RTOL


def test_oracle_batchnorm_normalises():
    rng = np.random.default_rng(1)
    x = 3.0 + 2.0 * rng.standard_normal((4, 3, 5, 5))
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 3.0])
    y = oracle.batchnorm2d_train(x, gamma, beta, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), beta, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), gamma, rtol=1e-12)  # biased (ddof=0)
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    y = oracle.batchnorm2d_eval(x, gamma, beta, mean, var, eps=1e-5)
    n, c, i, j = 2, 1, 3, 4
    want = gamma[c] * (x[n, c, i, j] - mean[c]) / math.sqrt(var[c] + 1e-5) + beta[c]
    assert abs(y[n, c, i, j] - want) < 1e-12


def test_oracle_small_ops():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 5)) * 5
    np.testing.assert_array_equal(oracle.relu(x), np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(oracle.relu6(x), np.clip(x, 0.0, 6.0))
    assert abs(oracle.global_avg_pool(x)[1, 2] - sum(x[1, 2].ravel()) / 20) < 1e-12
    assert oracle.flatten(x).shape == (2, 60) and oracle.dropout_eval(x) is x
    w, b = rng.standard_normal((4, 60)), rng.standard_normal(4)
    out = oracle.linear(oracle.flatten(x), w, b)
    assert abs(out[1, 3] - (sum(w[3, k] * x[1].ravel()[k] for k in range(60)) + b[3])) < 1e-10
    logits, y = rng.standard_normal((3, 4)) * 10, np.array([0, 3, 1])
    want = sum(math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(logits, y)) / 3
    assert abs(oracle.softmax_cross_entropy(logits, y) - want) < 1e-12


SPEC = [
    ("conv1", "conv", dict(stride=1, pads=(1, 1, 1, 1), dilation=1, groups=1)),
    ("bn1", "batchnorm", dict(train=True)),
    ("relu1", "relu", {}),
    ("pool1", "maxpool", dict(k=(2, 2), s=(2, 2), pads=(0, 0, 0, 0))),
    ("res", "residual", [("conv", "conv", dict(pads=1, groups=2)), ("relu", "relu6", {})]),
    ("bn2", "batchnorm", dict(train=False, eps=1e-3)),
    ("pool2", "avgpool", dict(k=3, s=1, pads=1)),
    ("drop", "dropout", {}),
    ("gap", "gap", {}),
    ("fc", "linear", {}),
]


def spec_params(rng):
    return {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)), "conv1.bias": rng.standard_normal(4),
        "bn1.weight": rng.uniform(0.5, 1.5, 4), "bn1.bias": rng.standard_normal(4),
        "res.conv.weight": rng.standard_normal((4, 2, 3, 3)),  # no bias: optional
        "bn2.weight": rng.uniform(0.5, 1.5, 4), "bn2.bias": rng.standard_normal(4),
        "bn2.running_mean": rng.standard_normal(4), "bn2.running_var": rng.uniform(0.5, 2, 4),
        "fc.weight": rng.standard_normal((5, 4)), "fc.bias": rng.standard_normal(5),
    }


def test_oracle_forward_spec_composes_and_differentiates():
    rng = np.random.default_rng(3)
    x, y, params = rng.standard_normal((2, 3, 6, 6)), np.array([1, 4]), spec_params(rng)
    acts = {}
    logits = oracle.forward_spec(SPEC, params, x, acts=acts)
    # the same network written out by hand
    a = oracle.relu(oracle.batchnorm2d_train(
        oracle.conv2d(x, params["conv1.weight"], params["conv1.bias"], 1, (1, 1, 1, 1)),
        params["bn1.weight"], params["bn1.bias"]))
    a = oracle.maxpool2d(a, 2, 2)
    a = a + oracle.relu6(oracle.conv2d(a, params["res.conv.weight"], None, 1, (1,) * 4, 1, 2))
    np.testing.assert_allclose(acts["res"], a, rtol=1e-12)
    assert logits.shape == (2, 5) and "res.conv" in acts
    # autograd through the whole network == central differences along a random direction
    loss = lambda p: oracle.softmax_cross_entropy(oracle.forward_spec(SPEC, p, x), y)  # noqa: E731
    grads = autograd.grad(loss)(params)
    for key in ("conv1.weight", "res.conv.weight", "bn1.bias", "fc.weight"):
        v = rng.standard_normal(params[key].shape)
        plus, minus = dict(params), dict(params)
        plus[key], minus[key] = params[key] + FD_STEP * v, params[key] - FD_STEP * v
        fd = (loss(plus) - loss(minus)) / (2 * FD_STEP)
        assert rel_error(np.sum(grads[key] * v), fd) < GRAD_RTOL, key


# ----------------------------------------------------- 2./3. naive against the oracle


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_naive_conv2d_forward_matches_oracle(case):
    x, w, b, kw, pads = conv_data(case)
    out, _ = naive.conv2d_forward(x, w, b, **kw)
    want = oracle.conv2d(x, w, b, kw["stride"], pads, kw["dilation"], kw["groups"])
    assert out.shape == want.shape and out.dtype == np.float64
    if kw["padding"] == "same":
        ceil_hw = tuple(math.ceil(h / s) for h, s in zip(x.shape[2:], p2(kw["stride"])))
        assert out.shape[2:] == ceil_hw
    assert rel_error(out, want) < FWD_RTOL


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_naive_conv2d_backward_matches_numerical(case):
    x, w, b, kw, pads = conv_data(case, seed=1)
    out, cache = naive.conv2d_forward(x, w, b, **kw)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    dx, dw, db = naive.conv2d_backward(dout, cache)
    args = (kw["stride"], pads, kw["dilation"], kw["groups"])
    num_dx = numerical_vjp(lambda x_: oracle.conv2d(x_, w, b, *args), x, dout)
    num_dw = numerical_vjp(lambda w_: oracle.conv2d(x, w_, b, *args), w, dout)
    assert rel_error(dx, num_dx) < GRAD_RTOL and rel_error(dw, num_dw) < GRAD_RTOL
    if b is None:
        assert db is None
    else:
        num_db = numerical_vjp(lambda b_: oracle.conv2d(x, w, b_, *args), b, dout)
        assert rel_error(db, num_db) < GRAD_RTOL
    # and autograd's gradient of the oracle agrees (so the oracle's own gradients are trustworthy)
    vjp = autograd.grad(lambda x_, w_: np.sum(oracle.conv2d(x_, w_, b, *args) * dout), (0, 1))(x, w)
    assert rel_error(dx, vjp[0]) < GRAD_RTOL and rel_error(dw, vjp[1]) < GRAD_RTOL
    # need_* flags skip work, not change results
    dx2, dw2, db2 = naive.conv2d_backward(dout, cache, need_dx=False)
    dx3, dw3, db3 = naive.conv2d_backward(dout, cache, need_dw=False)
    assert dx2 is None and dw3 is None and db3 is None and (db2 is None) == (b is None)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(dx3, dx)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_naive_pool_matches_oracle(case, op):
    x, k, s, pad, pads = pool_data(case)
    fwd, bwd = (naive.maxpool2d_forward, naive.maxpool2d_backward) if op == "max" else (
        naive.avgpool2d_forward, naive.avgpool2d_backward)
    opool = oracle.maxpool2d if op == "max" else oracle.avgpool2d
    out, cache = fwd(x, k, s, pad)
    want = opool(x, k, s, pads)
    assert out.shape == want.shape and rel_error(out, want) < FWD_RTOL
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx = bwd(dout, cache)
    assert rel_error(dx, numerical_vjp(lambda x_: opool(x_, k, s, pads), x, dout)) < GRAD_RTOL
    vjp = autograd.grad(lambda x_: np.sum(opool(x_, k, s, pads) * dout))(x)
    assert rel_error(dx, vjp) < GRAD_RTOL


def test_naive_maxpool_tie_goes_to_first_element():
    x = np.full((1, 1, 2, 2), 0.5)
    out, cache = naive.maxpool2d_forward(x, 2)
    dx = naive.maxpool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 0.0], [0.0, 0.0]])
    # overlapping all-equal windows: each window's gradient lands on its own top-left pixel
    out, cache = naive.maxpool2d_forward(np.ones((1, 1, 3, 3)), 2, stride=1)
    dx = naive.maxpool2d_backward(np.full(out.shape, 2.0), cache)
    np.testing.assert_array_equal(dx[0, 0], [[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 0.0]])


def test_naive_keeps_float32():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w, b = rng.standard_normal((2, 2, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    out, cache = naive.conv2d_forward(x, w, b, padding="same")
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in naive.conv2d_backward(out, cache))
    for fwd, bwd in [(naive.maxpool2d_forward, naive.maxpool2d_backward),
                     (naive.avgpool2d_forward, naive.avgpool2d_backward)]:
        out, cache = fwd(x, 2, 1, 1)
        assert out.dtype == np.float32 and bwd(out, cache).dtype == np.float32


@pytest.mark.parametrize("xs, ws, kw, match", [
    ((1, 3, 5, 5), (4, 1, 3, 3), dict(groups=2), "divisible"),
    ((1, 4, 5, 5), (4, 4, 3, 3), dict(groups=2), "input channels"),
    ((1, 4, 5, 5), (4, 3, 3, 3), {}, "input channels"),
    ((1, 2, 2, 2), (3, 2, 3, 3), {}, "smaller than"),
    ((1, 2, 4, 4), (3, 2, 3, 3), dict(dilation=2), "smaller than"),
    ((2, 5, 5), (3, 2, 3, 3), {}, "4-D"),
])
def test_naive_conv2d_bad_shapes_raise(xs, ws, kw, match):
    with pytest.raises(ValueError, match=match):
        naive.conv2d_forward(np.zeros(xs), np.zeros(ws), **kw)


def test_naive_pool_bad_args_raise():
    x = np.zeros((1, 1, 2, 2))
    for fwd in (naive.maxpool2d_forward, naive.avgpool2d_forward):
        with pytest.raises(ValueError, match="smaller than"):
            fwd(x, 3)
        with pytest.raises(ValueError, match="half the kernel"):
            fwd(x, 2, padding=2)
