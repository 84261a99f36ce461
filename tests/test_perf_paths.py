"""Every fast path of the kernels agrees with its plain-loop twin, on the shapes that trigger it.

The fast paths (see ``minicnn.kernels``, its ``conv``, ``winograd`` and ``pool``):
- Winograd F(2x2, 3x3) for 3x3 stride-1 ungrouped convs with >= 16 channels, forward and the
  input gradient (the same transform with a flipped kernel), with its weight-transform memo;
- blocked im2col (split into row blocks of one image, or groups of whole images), with the
  forward's stride-1 windows on the exact or the wide grid;
- the 1x1 stride-1 matrix product; the stride-1 input gradient as a flipped-kernel conv;
- max-pool as a running maximum over taps, with the disjoint-window (kernel == stride) backward,
  and for large windows side by side (> pool.WINDOW_TAPS taps) as max/argmax over copied rows;
- blocks of channels on the worker threads (``blocks.over_channels``) for ReLU, batch norm and
  max-pool: forced on small arrays here, with ragged blocks, against the one-block run;
- ``Sequential.forward(stop_at=...)``: cache-free layers below the layer backward stops at.

Tolerances. Exact reorderings of the same sum are checked at TWIN_TOL = 1e-10 in float64, as in
test_naive_vs_fast. Winograd adds and subtracts input and weight values before multiplying, so
its rounding differs from the direct sum by a few ulps of the largest intermediate (a tile sum
of up to 4 inputs x 4 weights): in float64 that is ~1e-14 relative; we allow WINO_TOL = 1e-9
(relative to the output's scale), far below any real error (a wrong tap is O(1)). In float32
the same bound is ~1e-6; we check WINO_F32_TOL = 1e-5 against the float64 naive result.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import kernels as K
from minicnn import layers as L
from minicnn import im2col, naive
from minicnn.kernels import blocks, conv, pool, winograd
from minicnn.backend import to_numpy
from minicnn.model import Residual, Sequential

import oracle

TWIN_TOL = 1e-10
WINO_TOL = 1e-9
WINO_F32_TOL = 1e-5
seeds = st.integers(0, 2**31 - 1)


def close(a, b, tol=TWIN_TOL):
    a, b = to_numpy(a), to_numpy(b)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def conv_twins(x, w, b, tol, **kw):
    """Forward and full backward of the kernels vs naive; returns the kernels' cache."""
    out_f, cache_f = K.conv2d_forward(x, w, b, **kw)
    out_n, cache_n = naive.conv2d_forward(to_numpy(x), to_numpy(w), None if b is None else to_numpy(b), **kw)
    close(out_f, out_n, tol)
    dout = np.random.default_rng(1).standard_normal(out_n.shape)
    got = K.conv2d_backward(dout, cache_f)
    for g, want in zip(got, naive.conv2d_backward(dout, cache_n)):
        assert (g is None) == (want is None)
        if want is not None:
            close(g, want, tol)
    return cache_f


# --------------------------------------------------------------------------- Winograd
@given(seeds, st.integers(1, 3), st.integers(16, 20), st.integers(16, 19), st.integers(1, 9),
       st.integers(1, 9), st.sampled_from([1, 0, 2, (0, 1, 2, 1), "same"]), st.booleans())
def test_winograd_conv_agrees_with_naive(seed, N, C, F, H, W, padding, with_bias):
    """Odd and even sizes, all paddings (incl. asymmetric and TF 'same'), bias on/off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(winograd, "MIN_CHANNELS", 16)  # small test shapes take the Winograd path
        _winograd_case(seed, N, C, F, H, W, padding, with_bias)


def _winograd_case(seed, N, C, F, H, W, padding, with_bias):
    pads = im2col.conv_padding(padding, (H, W), (3, 3))
    if H + pads[0] + pads[1] < 3 or W + pads[2] + pads[3] < 3:
        H, W = H + 3, W + 3
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, 3, 3))
    b = rng.standard_normal(F) if with_bias else None
    assert winograd.use_winograd(x, w, (1, 1), (1, 1), 1)
    conv_twins(x, w, b, WINO_TOL, padding=padding)


@pytest.fixture
def small_winograd(monkeypatch):
    """Let the small test shapes take the Winograd path (the default needs 128+ channels)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)


def test_winograd_threshold_is_what_dispatch_uses():
    w = np.zeros((winograd.MIN_CHANNELS, winograd.MIN_CHANNELS, 3, 3))
    x = np.zeros((1, winograd.MIN_CHANNELS, 4, 4))
    assert winograd.use_winograd(x, w, (1, 1), (1, 1), 1)
    assert not winograd.use_winograd(x[:, :-1], w[:-1, :-1], (1, 1), (1, 1), 1)
    assert not winograd.use_winograd(x, w, (2, 2), (1, 1), 1)
    _, cache = K.conv2d_forward(x, w, padding=1)
    assert cache.U is not None


@pytest.mark.usefixtures("small_winograd")
def test_winograd_float32_error_is_small():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 64, 28, 28)), rng.standard_normal((64, 64, 3, 3)) * 0.05
    out32, _ = K.conv2d_forward(x.astype("float32"), w.astype("float32"), padding=1)
    out64, _ = naive.conv2d_forward(x, w, padding=1)
    assert out32.dtype == np.float32
    close(out32, out64, WINO_F32_TOL)


@pytest.mark.usefixtures("small_winograd")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", [16 * 16 * 5 * 3, 16 * 16 * 5 * 4 * 7, 1 << 20])
def test_winograd_chunks_agree(monkeypatch, chunk, threads):
    """Row blocks of one image (small chunk), groups of images, one block; blocks run one after
    another or on a thread pool (``blocks.run_blocks``): same result."""
    monkeypatch.setattr(winograd, "CHUNK", chunk)
    monkeypatch.setattr(blocks, "THREADS", threads)
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((5, 16, 13, 8)), rng.standard_normal((16, 16, 3, 3)), rng.standard_normal(16)
    conv_twins(x, w, b, WINO_TOL, padding=1)


@pytest.mark.usefixtures("small_winograd")
def test_winograd_memo_sees_in_place_updates():
    """Optimisers update weights in place; the transformed weights must follow."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 16, 6, 6)), rng.standard_normal((16, 16, 3, 3))
    K.conv2d_forward(x, w, padding=1)
    w -= 0.5 * rng.standard_normal(w.shape)  # in place, as optim.SGD does
    close(K.conv2d_forward(x, w, padding=1)[0], naive.conv2d_forward(x, w, padding=1)[0], WINO_TOL)
    w[3, 2, 1, 1] = 7.0  # a single-entry edit, as a lesson might make
    close(K.conv2d_forward(x, w, padding=1)[0], naive.conv2d_forward(x, w, padding=1)[0], WINO_TOL)


# --------------------------------------------------------------------------- blocked im2col and friends
# stride-1 windows on the wide grid or never; the weight gradient in runs of 7 columns or 2048
@pytest.mark.parametrize("wide_min, dw_run", [(1, 7), (1 << 30, 2048)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", [50, 600, 1 << 20])
@pytest.mark.parametrize("geom", [
    dict(C=3, F=8, k=3, stride=1, padding=1, dilation=1, groups=1),     # VGG's conv1_1 (C < 16)
    dict(C=4, F=6, k=3, stride=2, padding=1, dilation=1, groups=2),     # strided, grouped
    dict(C=6, F=6, k=3, stride=1, padding=2, dilation=2, groups=6),     # depthwise, dilated
    dict(C=4, F=5, k=5, stride=1, padding="same", dilation=1, groups=1),
    dict(C=8, F=4, k=1, stride=1, padding=0, dilation=1, groups=2),     # 1x1: one product
    dict(C=8, F=4, k=1, stride=2, padding=0, dilation=1, groups=1),     # 1x1 strided: windows
    dict(C=2, F=3, k=1, stride=1, padding=2, dilation=1, groups=1),     # pad > d*(K-1): col2im dx
    dict(C=16, F=16, k=3, stride=1, padding=1, dilation=2, groups=1),   # dilated 3x3: not Winograd
])
def test_blocked_im2col_paths_agree(monkeypatch, chunk, geom, threads, wide_min, dw_run):
    """Chunk sizes that split one image into row blocks, group several images, or take all;
    the forward's windows on the wide grid (``conv._windows``) or the exact one; the weight
    gradient's product in short runs (with a ragged last run) or whole."""
    monkeypatch.setattr(conv, "WIDE_MIN", wide_min)
    monkeypatch.setattr(conv, "DW_RUN", dw_run)
    monkeypatch.setattr(conv, "CHUNK", chunk)
    monkeypatch.setattr(blocks, "THREADS", threads)
    g = dict(geom)
    C, F, k = g.pop("C"), g.pop("F"), g.pop("k")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, C, 9, 7))
    w = rng.standard_normal((F, C // g["groups"], k, k))
    cache = conv_twins(x, w, rng.standard_normal(F), TWIN_TOL, **g)
    assert cache.x is x  # the cache holds the input itself: no im2col copy, no padded copy


@pytest.mark.parametrize("chunk", [50, 1 << 20])  # one image in row blocks; all images in one block
def test_weight_gradient_sums_every_image(monkeypatch, chunk):
    """``conv._conv_dw`` makes one product per image and sums them: dw against the plain loops,
    and (negative control) the same check fails for the loops' dw without the last image, so a
    sum that dropped an image's share would be caught."""
    monkeypatch.setattr(conv, "CHUNK", chunk)
    monkeypatch.setattr(conv, "DW_RUN", 7)  # ragged runs of columns inside each image too
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((3, 4, 6, 5)), rng.standard_normal((6, 2, 3, 3))
    dout = rng.standard_normal((3, 6, 6, 5))
    _, cache = K.conv2d_forward(x, w, padding=1, groups=2)
    dw = K.conv2d_backward(dout, cache, need_dx=False)[1]
    want = naive.conv2d_backward(dout, naive.conv2d_forward(x, w, padding=1, groups=2)[1])[1]
    close(dw, want)
    part = naive.conv2d_backward(dout[:2], naive.conv2d_forward(x[:2], w, padding=1, groups=2)[1])[1]
    with pytest.raises(AssertionError):
        close(dw, part)


@pytest.mark.usefixtures("small_winograd")
def test_conv_backward_skips_what_is_not_needed():
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 16, 6, 6)), rng.standard_normal((16, 16, 3, 3))
    out, cache = K.conv2d_forward(x, w, np.zeros(16), padding=1)
    dx, dw, db = K.conv2d_backward(out, cache, need_dx=True, need_dw=False)
    assert dw is None and db is None and dx.shape == x.shape
    dx, dw, db = K.conv2d_backward(out, cache, need_dx=False, need_dw=True)
    assert dx is None and dw.shape == w.shape and db.shape == (16,)


@pytest.mark.usefixtures("small_winograd")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_paths_keep_dtype(dtype):
    rng = np.random.default_rng(7)
    for C, k, s in [(16, 3, 1), (3, 3, 1), (8, 1, 1), (4, 3, 2)]:
        x = rng.standard_normal((2, C, 8, 8)).astype(dtype)
        w = rng.standard_normal((16, C, k, k)).astype(dtype)
        out, cache = K.conv2d_forward(x, w, np.zeros(16, dtype), stride=s, padding=k // 2)
        assert out.dtype == dtype
        assert all(g.dtype == dtype for g in K.conv2d_backward(out, cache))


# --------------------------------------------------------------------------- max-pool
@given(seeds, st.sampled_from([(2, 2, 0), (3, 3, 0), (2, 1, 0), (3, 2, 1), (2, 2, 1), (5, 5, 2),
                               ((5, 4), (5, 4), (2, 1)), ((4, 5), (4, 5), 0)]), st.booleans())
def test_maxpool_taps_agree_with_naive_on_ties(seed, geom, ties):
    """Disjoint windows (kernel == stride, the VGG case), overlapping ones, and large disjoint
    windows (20-25 taps: ``pool._max_over_rows``, with padding and floor-mode remainders);
    post-ReLU ties."""
    k, s, p = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 8, 7))
    if ties:
        x = np.maximum(x, 0) * (rng.random(x.shape) < 0.3)
    out_f, cf = K.maxpool2d_forward(x, k, s, p)
    out_n, cn = naive.maxpool2d_forward(x, k, s, p)
    close(out_f, out_n)
    close(K.maxpool2d_infer(x, k, s, p), out_n)
    dout = rng.standard_normal(out_f.shape)
    close(K.maxpool2d_backward(dout, cf), naive.maxpool2d_backward(dout, cn))


@pytest.mark.parametrize("kernel", [(8, 8), (17, 16)])  # uint8 index; 272 taps: int64 index
def test_maxpool_large_windows_agree_with_naive(kernel):
    """The shapes CNN's pool4 (8x8 on 16x16) and a window too large for a uint8 index."""
    rng = np.random.default_rng(11)
    x = np.maximum(rng.standard_normal((2, 3, 2 * kernel[0] + 1, 2 * kernel[1])), 0)  # ties at 0
    assert pool.pools_by_rows(kernel, kernel)
    out_f, cf = K.maxpool2d_forward(x, kernel)
    out_n, cn = naive.maxpool2d_forward(x, kernel)
    close(out_f, out_n)
    close(K.maxpool2d_infer(x, kernel), out_n)
    dout = rng.standard_normal(out_f.shape)
    close(K.maxpool2d_backward(dout, cf), naive.maxpool2d_backward(dout, cn))


def test_maxpool_sends_each_window_gradient_to_one_pixel():
    x = np.zeros((1, 1, 4, 4))  # every window ties: the first pixel of each gets it all
    out, cache = K.maxpool2d_forward(x, 2)
    dx = K.maxpool2d_backward(np.ones_like(out), cache)
    assert dx.sum() == 4 and (dx[0, 0, ::2, ::2] == 1).all()


# --------------------------------------------------------------------------- blocks of channels
@pytest.fixture
def split_channels(monkeypatch):
    """``over_channels`` splits every array (not only those of SPLIT_MIN+ elements) over 2
    threads; returns a function that turns the split off again, for the one-block reference."""
    monkeypatch.setattr(blocks, "SPLIT_MIN", 0)
    monkeypatch.setattr(blocks, "THREADS", 2)
    return lambda: monkeypatch.setattr(blocks, "SPLIT_MIN", 1 << 62)


def _channel_ops(rng, C):
    """Every op that runs in blocks of channels, as name -> function of x returning arrays."""
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    dout = rng.standard_normal((3, C, 6, 5))

    def bn(training):
        def run(x):
            out, cache = K.batchnorm2d_forward(x, gamma, beta, rm, rv, training)
            return (out, cache.xc, cache.mean, cache.var, cache.inv_std,
                    *K.batchnorm2d_backward(dout, cache),
                    *K.batchnorm2d_backward(dout, cache, need_dw=False)[:1],
                    *K.batchnorm2d_backward(dout, cache, need_dx=False)[1:])
        return run

    def relu(upper):
        def run(x):
            out, mask = K.relu_forward(x, upper)
            return (out, mask, K.relu_forward(x, upper, need_mask=False)[0],
                    *(K.relu_backward(dout, mask, r) for r in K.RELU_RULES))
        return run

    def pool(k, s, p):
        def run(x):
            out, cache = K.maxpool2d_forward(x, k, s, p)
            dout_pool = np.random.default_rng(0).standard_normal(out.shape)
            return out, cache.argmax, K.maxpool2d_backward(dout_pool, cache)
        return run

    return {"bn train": bn(True), "bn eval": bn(False), "relu": relu(None), "relu6": relu(6.0),
            "pool 2x2": pool(2, 2, 0), "pool 3x3/2 pad 1": pool(3, 2, 1),
            "pool 5x5 windows": pool(5, 5, 2)}


@pytest.mark.parametrize("C", [1, 3, 5])  # 5 channels on 2 threads: blocks of 2 and 3
@pytest.mark.parametrize("op", ["bn train", "bn eval", "relu", "relu6", "pool 2x2",
                                "pool 3x3/2 pad 1", "pool 5x5 windows"])
def test_channel_blocks_agree_with_one_block(split_channels, op, C):
    x = np.random.default_rng(12).standard_normal((3, C, 6, 5)) * 7  # ReLU6 clips some
    x[:, :, :2] = np.maximum(x[:, :, :2], 0)  # ties for the pools
    fn = _channel_ops(np.random.default_rng(13), C)[op]
    blocks = fn(x)
    split_channels()  # off
    for got, want in zip(blocks, fn(x), strict=True):
        assert got.dtype == want.dtype
        close(got, want)


def test_batchnorm_in_channel_blocks_matches_the_oracle(split_channels):
    """Forward against tests/oracle.py's plain NumPy formulas, with ragged blocks of channels."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 5, 3, 7)) * 3 + 2
    gamma, beta, rm = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(5)
    rv = rng.random(5) + 0.5
    close(K.batchnorm2d_forward(x, gamma, beta, rm, rv, True)[0],
          oracle.batchnorm2d_train(x, gamma, beta))
    close(K.batchnorm2d_forward(x, gamma, beta, rm, rv, False)[0],
          oracle.batchnorm2d_eval(x, gamma, beta, rm, rv))


@pytest.mark.parametrize("dtype", ["int64", "float32", "float64"])
@pytest.mark.parametrize("shape", [(), (7,), (2, 7), (2, 3, 4, 5)])
def test_relu_keeps_dtype_and_any_shape(split_channels, dtype, shape):
    """ReLU/ReLU6 on integer, float32 and float64 arrays of any rank (0-d and 1-d too), split
    over channels where there are any, against plain NumPy's clip."""
    x = (np.arange(int(np.prod(shape))) - 3).reshape(shape)
    x = x.astype(dtype) if dtype == "int64" else (x * 1.5).astype(dtype)
    for upper in (None, 6.0):
        out, mask = K.relu_forward(x, upper)
        want = np.clip(x, 0, np.inf if upper is None else upper).astype(dtype)
        assert out.dtype == x.dtype and out.shape == x.shape and mask.shape == x.shape
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(mask, (x > 0) & (x < (np.inf if upper is None else upper)))
        np.testing.assert_array_equal(K.relu_backward(np.ones(shape), mask), mask * 1.0)


@pytest.mark.parametrize("threads", [2, 3])
def test_over_channels_blocks_cover_every_channel_once(monkeypatch, threads):
    monkeypatch.setattr(blocks, "THREADS", threads)
    monkeypatch.setattr(blocks, "SPLIT_MIN", 0)
    for C in (1, 2, 5, 16):
        seen = np.zeros(C, int)

        def visit(cs):
            seen[cs] += 1

        blocks.over_channels(visit, np.zeros((2, C, 4, 4)))
        assert (seen == 1).all(), (C, seen)


# --------------------------------------------------------------------------- cache-free forward
def _net(rng):
    return Sequential([
        ("conv1", L.Conv2d(3, 16, 3, padding=1, rng=rng, dtype="float64")), ("relu1", L.ReLU()),
        ("pool1", L.MaxPool2d(2)),
        ("conv2", L.Conv2d(16, 16, 3, padding=1, rng=rng, dtype="float64")), ("relu2", L.ReLU()),
        ("block", Residual([("conv", L.Conv2d(16, 16, 3, padding=1, rng=rng, dtype="float64")),
                            ("act", L.ReLU6())])),
        ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(16, 4, rng=rng, dtype="float64")),
    ])


@pytest.mark.usefixtures("small_winograd")
@pytest.mark.parametrize("layer", ["relu1", "relu2", "block.conv", "block"])
def test_grad_from_skips_caches_below_and_changes_nothing(layer):
    rng = np.random.default_rng(8)
    model = _net(rng)
    x, dy = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((2, 4))
    y_ref = model.forward(x, keep=layer)
    dA_ref = model.backward(dy, stop_at=layer, need_dw=False)
    y = model.forward(x, keep=layer, stop_at=layer)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(model.backward(dy, stop_at=layer, need_dw=False), dA_ref)
    order = [n for n, lay in model.named_layers() if not isinstance(lay, Sequential)]
    below = order[:order.index(layer) + 1] if layer in order else order[:order.index("block.act") + 1]
    for name in order:
        assert (model[name].cache is None) == (name in below), name
    with pytest.raises(RuntimeError, match="call forward first"):
        model.backward(dy)  # past stop_at there is nothing to differentiate with


def test_grad_from_unknown_layer_is_a_key_error():
    model = _net(np.random.default_rng(9))
    with pytest.raises(KeyError, match="conv1"):
        model.forward(np.zeros((1, 3, 8, 8)), stop_at="nope")


# --------------------------------------------------------------------------- backends
@pytest.mark.usefixtures("small_winograd")
def test_fast_paths_on_backend(xp):
    """The Winograd, im2col and max-pool paths on NumPy and (where present) CuPy."""
    rng = np.random.default_rng(10)
    x, w, b = rng.standard_normal((2, 16, 10, 9)), rng.standard_normal((16, 16, 3, 3)), rng.standard_normal(16)
    for kw in (dict(padding=1), dict(stride=2, padding=1)):
        out, cache = K.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **kw)
        out_n, cache_n = naive.conv2d_forward(x, w, b, **kw)
        close(out, out_n, WINO_TOL)
        dout = rng.standard_normal(out_n.shape)
        for g, want in zip(K.conv2d_backward(xp.asarray(dout), cache), naive.conv2d_backward(dout, cache_n)):
            close(g, want, WINO_TOL)
    out, cache = K.maxpool2d_forward(xp.asarray(x), 2)
    out_n, cache_n = naive.maxpool2d_forward(x, 2)
    close(out, out_n)
    close(K.maxpool2d_backward(xp.asarray(out_n), cache), naive.maxpool2d_backward(out_n, cache_n))
