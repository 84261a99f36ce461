"""Both tiers' conv and pooling ops, the reference ``minicnn.functional`` and the tuned
``minicnn.kernels``, agree with their plain-loop twins in ``minicnn.naive`` (same signatures),
forward and backward, to 1e-10 in float64, on hypothesis-drawn geometries. (Every other op, and
the shapes that force each kernel path: tests/test_tiers.py.)"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional, kernels, naive
from strategies import conv_geometry, distinct_values, pool_geometry

TWIN_TOL = 1e-10
tier = pytest.mark.parametrize("ops", [functional, kernels], ids=["reference", "kernels"])
seeds = st.integers(0, 2**31 - 1)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=TWIN_TOL, atol=TWIN_TOL)


@tier
@given(g=conv_geometry(), seed=seeds, with_bias=st.booleans())
def test_conv2d_twins_agree(ops, g, seed, with_bias):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(g["x_shape"]), rng.standard_normal(g["w_shape"])
    b = rng.standard_normal(g["w_shape"][0]) if with_bias else None
    kw = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])
    out_f, cache_f = ops.conv2d_forward(x, w, b, **kw)
    out_n, cache_n = naive.conv2d_forward(x, w, b, **kw)
    close(out_f, out_n)
    dout = rng.standard_normal(out_f.shape)
    for got, want in zip(ops.conv2d_backward(dout, cache_f), naive.conv2d_backward(dout, cache_n)):
        if want is None:
            assert got is None
        else:
            close(got, want)


@tier
@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@given(g=pool_geometry(), seed=seeds)
def test_pool_twins_agree(ops, op, g, seed):
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, g["x_shape"])
    kw = dict(kernel_size=g["kernel_size"], stride=g["stride"], padding=g["padding"])
    out_f, cache_f = getattr(ops, f"{op}_forward")(x, **kw)
    out_n, cache_n = getattr(naive, f"{op}_forward")(x, **kw)
    close(out_f, out_n)
    dout = rng.standard_normal(out_f.shape)
    close(getattr(ops, f"{op}_backward")(dout, cache_f), getattr(naive, f"{op}_backward")(dout, cache_n))


@tier
@given(seed=seeds)
def test_maxpool_twins_agree_on_ties(ops, seed):
    """Post-ReLU-like inputs: many zeros, so whole windows tie; both twins pick the same pixel."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((2, 3, 6, 6)), 0) * (rng.random((2, 3, 6, 6)) < 0.3)
    out_f, cf = ops.maxpool2d_forward(x, 3, 2, 1)
    out_n, cn = naive.maxpool2d_forward(x, 3, 2, 1)
    close(out_f, out_n)
    dout = rng.standard_normal(out_f.shape)
    close(ops.maxpool2d_backward(dout, cf), naive.maxpool2d_backward(dout, cn))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_twins_keep_dtype(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    for mod in (functional, kernels, naive):
        out, cache = mod.conv2d_forward(x, w, None, padding=1)
        assert out.dtype == dtype
        assert all(g.dtype == dtype for g in mod.conv2d_backward(out, cache) if g is not None)
        out, cache = mod.maxpool2d_forward(x, 2)
        assert out.dtype == dtype and mod.maxpool2d_backward(out, cache).dtype == dtype
