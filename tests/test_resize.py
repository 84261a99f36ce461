"""gradcam.resize: the separable matrix form against a direct per-pixel formula, plus properties.

The reference ``_direct`` is written independently of the module: a scalar loop over output
pixels that computes each source coordinate and interpolates the (up to) four neighbours.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcam import normalize, resize
from minicnn.backend import to_numpy

ATOL = 1e-12
SIZES = [  # (h, w) -> (H, W): up, down, identity, 1x1 in and out, non-square, mixed
    ((1, 1), (4, 5)), ((2, 2), (4, 4)), ((2, 3), (5, 7)), ((5, 7), (2, 3)), ((4, 4), (4, 4)),
    ((3, 5), (6, 2)), ((7, 1), (3, 4)), ((6, 6), (1, 1)), ((3, 3), (64, 64)), ((16, 16), (7, 9)),
]


def _src(dst, n_in, n_out, mode, align_corners):
    """Source coordinate of output index ``dst`` (scalar arithmetic, straight from the formulas)."""
    if mode == "nearest":
        return float(min(math.floor(dst * n_in / n_out), n_in - 1))
    if align_corners:
        return 0.0 if n_out == 1 else dst * (n_in - 1) / (n_out - 1)
    return min(max((dst + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)


def _direct(m, H, W, mode="bilinear", align_corners=False):
    """out[i, j] by interpolating the four neighbours of (sy, sx), one pixel at a time."""
    h, w = m.shape
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            sy = _src(i, h, H, mode, align_corners)
            sx = _src(j, w, W, mode, align_corners)
            y0, x0 = int(math.floor(sy)), int(math.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ty, tx = sy - y0, sx - x0
            out[i, j] = ((1 - ty) * (1 - tx) * m[y0, x0] + (1 - ty) * tx * m[y0, x1]
                         + ty * (1 - tx) * m[y1, x0] + ty * tx * m[y1, x1])
    return out


@pytest.mark.parametrize("mode,align_corners", [("bilinear", False), ("bilinear", True),
                                                ("nearest", False)])
@pytest.mark.parametrize("src_hw,dst_hw", SIZES)
def test_resize_matches_direct_formula(src_hw, dst_hw, mode, align_corners):
    rng = np.random.default_rng(sum(src_hw) * 31 + sum(dst_hw))
    maps = rng.normal(size=(2, *src_hw))
    out = resize(maps, dst_hw, mode=mode, align_corners=align_corners)
    assert out.shape == (2, *dst_hw)
    for n in range(2):
        expected = _direct(maps[n], *dst_hw, mode=mode, align_corners=align_corners)
        np.testing.assert_allclose(out[n], expected, rtol=0, atol=ATOL)


def test_resize_known_values_pytorch():
    """F.interpolate([[1, 2], [3, 4]], size=4, mode=...) as PyTorch prints it (hand-checkable).

    Half-pixel: output column j samples src = (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    clamped to 0, 0.25, 0.75, 1: row 0 is 1, 1.25, 1.75, 2.
    """
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    half = np.array([[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5],
                     [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]])
    np.testing.assert_allclose(resize(m, (4, 4)), half, atol=ATOL)
    third = np.array([0.0, 1 / 3, 2 / 3, 1.0])  # align_corners: src = j * 1/3
    corners = 1 + third[None, :] + 2 * third[:, None]
    np.testing.assert_allclose(resize(m, 4, align_corners=True), corners, atol=ATOL)
    nearest = np.array([[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_allclose(resize(m, 4, mode="nearest"), nearest, atol=0)


def test_resize_2d_and_batch_agree_and_keep_dtype():
    m = np.random.default_rng(1).random((3, 5)).astype("float32")
    out2 = resize(m, (7, 4))
    out3 = resize(m[None], (7, 4))
    assert out2.shape == (7, 4) and out3.shape == (1, 7, 4)
    assert out2.dtype == np.float32
    np.testing.assert_allclose(out2, out3[0], rtol=1e-6)
    assert resize(np.ones((2, 2), dtype=np.int64), 3).dtype == np.float64


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 8), w=st.integers(1, 8), H=st.integers(1, 12), W=st.integers(1, 12),
       value=st.floats(-100, 100), align_corners=st.booleans(), nearest=st.booleans())
def test_resize_constant_stays_constant(h, w, H, W, value, align_corners, nearest):
    mode = "nearest" if nearest else "bilinear"
    out = resize(np.full((1, h, w), value), (H, W), mode=mode,
                 align_corners=align_corners and not nearest)
    np.testing.assert_allclose(out, value, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 8), w=st.integers(1, 8), H=st.integers(2, 12), W=st.integers(2, 12),
       seed=st.integers(0, 2**16))
def test_resize_align_corners_preserves_corners(h, w, H, W, seed):
    m = np.random.default_rng(seed).normal(size=(h, w))
    out = resize(m, (H, W), align_corners=True)
    for (i, j), (si, sj) in zip([(0, 0), (0, -1), (-1, 0), (-1, -1)],
                                [(0, 0), (0, -1), (-1, 0), (-1, -1)]):
        assert abs(out[i, j] - m[si, sj]) < 1e-12


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 8), w=st.integers(1, 8), H=st.integers(1, 12), W=st.integers(1, 12),
       seed=st.integers(0, 2**16))
def test_resize_bilinear_stays_within_input_range(h, w, H, W, seed):
    """Each output is a convex combination of inputs, so min(m) <= out <= max(m)."""
    m = np.random.default_rng(seed).normal(size=(h, w))
    out = resize(m, (H, W))
    assert out.min() >= m.min() - 1e-12 and out.max() <= m.max() + 1e-12


def test_resize_rejects_bad_arguments():
    m = np.zeros((2, 3))
    for bad in [dict(size=0), dict(size=(2, -1)), dict(size=(2.5, 3)), dict(size="ab"),
                dict(size=3, mode="bicubic"), dict(size=3, mode="nearest", align_corners=True)]:
        with pytest.raises(ValueError):
            resize(m, **bad)
    with pytest.raises(ValueError, match="maps must be"):
        resize(np.zeros((1, 1, 2, 2)), 3)


def test_normalize_divides_by_per_image_max_and_keeps_zero_maps_zero():
    maps = np.array([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value in divide"
        with np.errstate(all="raise"):
            out = normalize(maps)
    expected = np.array([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]],
                         [[1.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(to_numpy(out), expected)
    np.testing.assert_array_equal(normalize(maps[0]), expected[0])
