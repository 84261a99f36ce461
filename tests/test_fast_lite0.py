"""The kernels that speed up EfficientNet-Lite0's batched forward agree with the reference tier
and with plain loops.

- ``kernels.depthwise.conv2d_depthwise`` (channels-last, taps by einsum per stride phase), the
  path ``conv2d_forward`` takes for depthwise convs with >= 8 channels: against
  ``minicnn.naive.conv2d_forward`` (loops) and ``minicnn.functional.conv2d_forward`` (the
  reference tier), float32 and float64, odd sizes, padding (asymmetric, "same"), dilation,
  bias, row blocks with halos, a channels-last input, strides 1, 2 and (3, 2); its strided
  and dilated branch (not chosen by the dispatcher) too.
- ``kernels.elementwise.batchnorm2d_eval_`` and the fused conv -> batch norm -> ReLU(6) group
  of ``Sequential.forward(stop_at=...)``: bitwise the separate layers' values, also for the
  activations asked for with ``keep``; no fusion where an overwritten output is wanted.

Tolerances: float64 results are the same sum in another order (1e-10, as test_naive_vs_fast's
TWIN_TOL); float32 against the float64 loops 1e-5 relative to the output's scale.
"""

import numpy as np
import pytest

from minicnn import functional, naive
from minicnn import layers as L
from minicnn.im2col import conv_geometry, pair
from minicnn.kernels import blocks, conv, depthwise, elementwise
from minicnn.model import Residual, Sequential

TWIN_TOL = 1e-10
F32_TOL = 1e-5

CASES = [  # (N, C, H, W, k, padding, dilation, bias)
    (2, 8, 7, 9, 3, 1, 1, True),
    (1, 11, 6, 5, 5, "same", 1, False),
    (3, 9, 9, 4, 3, (0, 2, 1, 0), 1, True),
    (2, 10, 8, 7, 3, 2, 2, False),
    (1, 8, 5, 5, (1, 3), (0, 1), 1, True),
]


def _case(N, C, H, W, k, padding, dilation, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype) if bias else None
    return x, w, b, dict(stride=1, padding=padding, dilation=dilation, groups=C)


def _loops(x, w, b, opts):
    return naive.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                None if b is None else b.astype(np.float64), **opts)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_depthwise_path_matches_loops_and_reference(case, dtype):
    x, w, b, opts = _case(*case, dtype)
    assert depthwise.use_depthwise(x, w, (1, 1), pair(opts["dilation"]), x.shape[1])  # taken
    out = conv.conv2d_forward(x, w, b, **opts)[0]
    ref = functional.conv2d_forward(x, w, b, **opts)[0]
    want = _loops(x, w, b, opts)
    assert out.dtype == dtype and out.shape == want.shape
    tol = TWIN_TOL if dtype == np.float64 else F32_TOL * np.abs(want).max()
    np.testing.assert_allclose(out, want, rtol=0, atol=tol)
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol)
    # negative control: the same check catches a kernel flipped in space
    bad = conv.conv2d_forward(x, w[:, :, ::-1, ::-1].copy(), b, **opts)[0]
    assert np.abs(bad - want).max() > 100 * tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_depthwise_row_blocks_and_channels_last_input(monkeypatch, dtype):
    """Row blocks of one image (each with its own halo of padded rows) and an input that is a
    channels-last view (what the layer before it returns) give the loops' result."""
    x, w, b, opts = _case(2, 9, 13, 11, 5, "same", 1, True, dtype, seed=3)
    want = _loops(x, w, b, opts)
    tol = TWIN_TOL if dtype == np.float64 else F32_TOL * np.abs(want).max()
    monkeypatch.setattr(depthwise, "CHUNK", 9 * 11 * 2)  # about two output rows per block
    plan = blocks.chunks(2, 13, 9 * 11, depthwise.CHUNK)
    assert any(r0 > 0 for _, _, r0, _ in plan)  # row blocks really happen
    np.testing.assert_allclose(conv.conv2d_forward(x, w, b, **opts)[0], want, rtol=0, atol=tol)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not nhwc.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(conv.conv2d_forward(nhwc, w, b, **opts)[0], want, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,padding,stride,dilation", [
    (3, "same", 2, 1), (5, 2, 2, 1), (3, (0, 1, 0, 1), 2, 1), (4, 1, (3, 2), 1), (3, 2, 2, 2)])
def test_depthwise_strided_matches_loops(k, padding, stride, dilation, dtype):
    """Strided depthwise convs (the phases), and the strided-and-dilated branch the dispatcher
    never picks (called directly), against the loops."""
    x, w, b, opts = _case(2, 8, 9, 8, k, padding, dilation, True, dtype, seed=5)
    opts["stride"] = stride
    geom = conv_geometry(x, w, stride, padding, dilation, 8)
    assert depthwise.use_depthwise(x, w, geom[0], geom[1], 8) == (dilation == 1)
    out = depthwise.conv2d_depthwise(x, w, b, *geom)
    want = _loops(x, w, b, opts)
    tol = TWIN_TOL if dtype == np.float64 else F32_TOL * np.abs(want).max()
    np.testing.assert_allclose(out, want, rtol=0, atol=tol)
    np.testing.assert_allclose(conv.conv2d_forward(x, w, b, **opts)[0], want, rtol=0, atol=tol)


def test_depthwise_not_taken_for_grouped_or_narrow_convs():
    x = np.zeros((1, 8, 5, 5))
    one = (1, 1)
    assert depthwise.use_depthwise(x, np.zeros((8, 1, 3, 3)), one, one, 8)  # the control
    assert not depthwise.use_depthwise(x, np.zeros((8, 2, 3, 3)), one, one, 4)  # 2 per group
    assert not depthwise.use_depthwise(x[:, :4], np.zeros((4, 1, 3, 3)), one, one, 4)  # narrow
    assert not depthwise.use_depthwise(x, np.zeros((16, 1, 3, 3)), one, one, 8)  # multiplier 2


@pytest.mark.parametrize("upper,relu", [(None, True), (6.0, True), (None, False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_eval_in_place_is_the_layers_bitwise(upper, relu, dtype):
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal((3, 5, 4, 6))).astype(dtype)
    g, beta, mu = (rng.standard_normal(5).astype(dtype) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 5).astype(dtype)
    from minicnn import kernels as K
    want = K.batchnorm2d_forward(x, g, beta, mu, var, False, 1e-3)[0]
    if relu:
        want = K.relu_forward(want, upper, need_mask=False)[0]
    z = x.copy()
    assert elementwise.batchnorm2d_eval_(z, g, beta, mu, var, 1e-3, upper, relu) is z
    np.testing.assert_array_equal(z, want)
    # and the reference tier's plain formula, to round-off
    ref = g[:, None, None] * (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3) \
        + beta[:, None, None]
    if relu:
        ref = np.clip(ref, 0, upper if upper is not None else np.inf)
    np.testing.assert_allclose(z, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # negative control: another eps is caught by the same bitwise check
    z2 = x.copy()
    elementwise.batchnorm2d_eval_(z2, g, beta, mu, var, 1e-2, upper, relu)
    assert not np.array_equal(z2, want)


def _net(seed=0, dtype="float64"):
    """conv -> bn -> relu6, a residual with conv -> bn -> relu and a depthwise conv -> bn (no
    activation), then GAP and a linear head: every fused group shape."""
    rng = np.random.default_rng(seed)
    body = Residual([("c", L.Conv2d(8, 8, 3, padding=1, groups=8, bias=False, rng=rng, dtype=dtype)),
                     ("bn", L.BatchNorm2d(8, dtype=dtype)), ("r", L.ReLU()),
                     ("p", L.Conv2d(8, 8, 1, bias=False, rng=rng, dtype=dtype)),
                     ("bn2", L.BatchNorm2d(8, dtype=dtype))])
    m = Sequential([("stem", L.Conv2d(3, 8, 3, padding=1, rng=rng, dtype=dtype)),
                    ("bn0", L.BatchNorm2d(8, dtype=dtype)), ("relu0", L.ReLU6()),
                    ("block", body), ("gap", L.GlobalAvgPool2d()),
                    ("fc", L.Linear(8, 4, rng=rng, dtype=dtype))])
    for _, layer in m.named_layers():
        if isinstance(layer, L.BatchNorm2d):
            n = layer.num_features
            layer.params["weight"][:] = rng.uniform(0.5, 1.5, n)
            layer.params["bias"][:] = rng.standard_normal(n)
            layer.buffers["running_mean"][:] = rng.standard_normal(n)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, n)
    return m.eval()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keep", [(), ("stem",), ("bn0",), ("relu0", "block.bn"),
                                  ("block.c", "block.p")])
def test_fused_groups_give_the_layers_values(keep, dtype, monkeypatch):
    from minicnn import model as model_module
    calls = []
    fused = model_module.batchnorm2d_eval_
    monkeypatch.setattr(model_module, "batchnorm2d_eval_",
                        lambda z, *a, **k: calls.append(k["relu"]) or fused(z, *a, **k))
    m = _net(dtype=dtype)
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6)).astype(dtype)
    want = m.forward(x, keep=keep)  # caching forward: no fusion
    acts = {k: v.copy() for k, v in m.activations.items()}
    shapes = dict(m.shapes)
    assert not calls
    got = m.forward(x, keep=keep, stop_at="fc")  # cache-free: fused groups
    # the groups fused: 3 with nothing kept; a kept conv output stops its group
    assert len(calls) == 3 - sum(k in ("stem", "block.c", "block.p") for k in keep)
    assert calls.count(True) == 2 - sum(k in ("stem", "bn0", "block.c", "block.bn") for k in keep)
    np.testing.assert_array_equal(got, want)
    assert m.shapes == shapes and set(m.activations) == set(keep)
    for k in keep:
        np.testing.assert_array_equal(m.activations[k], acts[k])
    assert all(layer.cache is None for _, layer in m.named_layers()
               if isinstance(layer, (L.BatchNorm2d, L.ReLU, L.Conv2d)))


def test_fusion_is_skipped_where_it_would_differ():
    """Training-mode batch norm (batch statistics) and the reference tier run unfused: the
    cache-free forward still equals the caching one. Negative control: forcing the eval-mode
    formula onto the training-mode net gives other logits, so the check can fail."""
    import minicnn
    m = _net()
    x = np.random.default_rng(4).standard_normal((3, 3, 5, 5))
    m.train()
    want = m.forward(x)
    np.testing.assert_allclose(m.forward(x, stop_at="fc"), want, rtol=0, atol=1e-12)
    m.eval()
    wrong = m.forward(x, stop_at="fc")
    assert np.abs(wrong - want).max() > 1e-3
    with minicnn.use_tier("reference"):
        ref = m.forward(x)
        np.testing.assert_allclose(m.forward(x, stop_at="fc"), ref, rtol=0, atol=1e-12)
