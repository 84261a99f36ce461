"""Hypothesis strategies that always produce valid layer geometries (no assume-loops).

Sizes are drawn *after* kernel, stride, dilation and padding, starting at the smallest
input that gives a 1x1 output, so every draw is valid. Values for kinked ops are kept
away from the kinks: ReLU inputs have |x| >= 1e-2 (and stay off 6 for ReLU6), max-pool
inputs are distinct (spaced >= 1e-2 apart), so central differences with h = 1e-6 never
straddle a kink or swap a maximum.
"""

import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_geometry(draw):
    """Dict with x_shape, w_shape, stride, padding, dilation, groups for conv2d."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    groups = {"dense": 1, "grouped": 2, "depthwise": draw(st.integers(1, 4))}[kind]
    cg = 1 if kind == "depthwise" else draw(st.integers(1, 3))
    fg = draw(st.integers(1, 2)) if kind == "depthwise" else draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad_kind = draw(st.sampled_from(["int", "pair", "four", "same", "valid"]))
    if pad_kind == "int":
        padding = draw(st.integers(0, 2))
        pads = (padding,) * 4
    elif pad_kind == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pads = (padding[0], padding[0], padding[1], padding[1])
    elif pad_kind == "four":
        padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
        pads = padding
    else:
        padding, pads = pad_kind, (0, 0, 0, 0)
    min_h = max(1, dilation[0] * (kh - 1) + 1 - pads[0] - pads[1])
    min_w = max(1, dilation[1] * (kw - 1) + 1 - pads[2] - pads[3])
    if pad_kind == "same":
        min_h = min_w = 1
    h = draw(st.integers(min_h, min_h + 4))
    w = draw(st.integers(min_w, min_w + 4))
    n = draw(st.integers(1, 2))
    return dict(x_shape=(n, cg * groups, h, w), w_shape=(fg * groups, cg, kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups)


@st.composite
def pool_geometry(draw):
    """Dict with x_shape, kernel_size, stride, padding for max/avg pooling (pad <= kernel/2)."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), max(1, kh - 2 * padding[0]) + 4))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), max(1, kw - 2 * padding[1]) + 4))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return dict(x_shape=(n, c, h, w), kernel_size=(kh, kw), stride=stride, padding=padding)


def distinct_values(rng, shape):
    """Distinct values in random order, spaced 1e-2 apart, plus tiny noise: no ties for max."""
    size = int(np.prod(shape))
    vals = rng.permutation(size).astype(np.float64) * 1e-2 - size * 5e-3
    return (vals + rng.uniform(0, 1e-4, size)).reshape(shape)


def away_from_kinks(rng, shape, kinks=(0.0,), margin=1e-2, scale=3.0):
    """Normal draws scaled by ``scale``, pushed at least ``margin`` away from each kink."""
    x = rng.standard_normal(shape) * scale
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin) * 2
    return x
