"""The similarity measures of the sanity checks (gradcam/metrics/similarity.py): Spearman's rank
correlation (ties by average rank, with and without absolute values) and SSIM (Wang et al. 2004).

Expected values are worked out by hand here (the arithmetic is in the comments), SSIM also by a
slow loop over every window with the 2-D Gaussian written out, and Spearman against SciPy where
it is installed.
"""

import math

import numpy as np
import pytest

from gradcam import metrics
from gradcam.metrics import ranks, spearman, ssim


def test_ranks_ties_share_their_average_rank():
    np.testing.assert_array_equal(ranks(np.array([[3.0, 1.0, 3.0, 2.0]])), [[3.5, 1, 3.5, 2]])
    np.testing.assert_array_equal(ranks(np.array([[5.0, 5.0, 5.0], [2.0, 0.0, 1.0]])),
                                  [[2, 2, 2], [3, 1, 2]])


def test_spearman_without_ties_is_one_minus_six_sum_d2():
    # ranks [1,2,3,4] and [1,3,2,4]: d = [0,1,1,0], 1 - 6 * 2 / (4 * 15) = 0.8
    a, b = np.array([[1.0, 2, 3, 4]]), np.array([[10.0, 30, 20, 40]])
    np.testing.assert_allclose(spearman(a, b), [0.8], rtol=1e-12)
    np.testing.assert_allclose(spearman(a, -a), [-1.0], rtol=1e-12)
    np.testing.assert_allclose(spearman(a, np.exp(a)), [1.0], rtol=1e-12)  # monotone: rank 1


def test_spearman_with_ties_is_pearson_of_average_ranks():
    # a = [1,2,2,3] has ranks [1,2.5,2.5,4]; b ranks [1,2,3,4]. Centred: [-1.5,0,0,1.5] and
    # [-1.5,-.5,.5,1.5]; sum of products 4.5, sums of squares 4.5 and 5: rho = sqrt(0.9)
    a, b = np.array([[1.0, 2, 2, 3]]), np.array([[1.0, 2, 3, 4]])
    rho = spearman(a, b)[0]
    assert rho == pytest.approx(math.sqrt(0.9), rel=1e-12)
    # negative control: the no-ties shortcut 1 - 6 sum d^2 / (n (n^2 - 1)), d = [0,.5,.5,0],
    # gives 0.95: the test tells the two formulas apart
    assert abs(rho - (1 - 6 * 0.5 / 60)) > 1e-3


def test_spearman_absolute_compares_magnitudes():
    # signed: ranks [1,2,3] vs [3,1,2], d = [-2,1,1], 1 - 6 * 6 / 24 = -0.5; absolute: identical
    a, b = np.array([[-3.0, 1, 2]]), np.array([[3.0, 1, 2]])
    assert spearman(a, b)[0] == pytest.approx(-0.5, rel=1e-12)
    assert spearman(a, b, absolute=True)[0] == pytest.approx(1.0, rel=1e-12)


def test_spearman_of_a_constant_map_is_nan_and_maps_are_per_image():
    a = np.stack([np.ones((3, 3)), np.arange(9.0).reshape(3, 3)])
    b = np.stack([np.arange(9.0).reshape(3, 3), np.arange(9.0).reshape(3, 3)[::-1]])
    rho = spearman(a, b)
    assert np.isnan(rho[0]) and rho.shape == (2,)
    # 2nd: [0..8] against rows reversed [6,7,8,3,4,5,0,1,2]: d = [-6,-6,-6,0,0,0,6,6,6]
    assert rho[1] == pytest.approx(1 - 6 * 216 / (9 * 80), rel=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        spearman(np.zeros((1, 3, 3)), np.zeros((1, 4, 4)))


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats", reason="SciPy cross-check of the rank correlation")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (4, 6, 7)).astype(float)  # many ties
    b = rng.normal(size=(4, 6, 7))
    want = [stats.spearmanr(a[n].ravel(), b[n].ravel())[0] for n in range(4)]
    np.testing.assert_allclose(spearman(a, b), want, rtol=1e-12)
    want_abs = [stats.spearmanr(np.abs(a[n] - 2).ravel(), np.abs(b[n]).ravel())[0]
                for n in range(4)]
    np.testing.assert_allclose(spearman(a - 2, b, absolute=True), want_abs, rtol=1e-12)


# --------------------------------------------------------------------------- SSIM
def test_ssim_of_identical_maps_is_one_and_of_different_maps_less():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(2, 16, 16))
    np.testing.assert_allclose(ssim(a, a), [1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(ssim(a, a, window="uniform"), [1.0, 1.0], rtol=1e-12)
    assert (ssim(a, 1 - a) < 0).all()  # anti-correlated structure


def test_ssim_of_constant_maps_is_the_luminance_term():
    # no variance: SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1) (the contrast term is C2 / C2)
    c1, c2, C1 = 0.2, 0.6, (0.01 * 1.0) ** 2
    a, b = np.full((1, 12, 12), c1), np.full((1, 12, 12), c2)
    want = (2 * c1 * c2 + C1) / (c1 ** 2 + c2 ** 2 + C1)
    assert ssim(a, b)[0] == pytest.approx(want, rel=1e-12)
    # with L = 255, C1 = (0.01 * 255)^2 dominates: another value, also by hand
    want255 = (2 * c1 * c2 + 2.55 ** 2) / (c1 ** 2 + c2 ** 2 + 2.55 ** 2)
    assert ssim(a, b, data_range=255)[0] == pytest.approx(want255, rel=1e-12)


def _ssim_loop(a, b, size, sigma, sample, L=1.0):
    """Wang et al.'s formula, window by window, with the 2-D window written out."""
    r = (size - 1) / 2
    i, j = np.mgrid[0:size, 0:size]
    w = (np.ones((size, size)) if sigma is None
         else np.exp(-((i - r) ** 2 + (j - r) ** 2) / (2 * sigma ** 2)))
    w /= w.sum()
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    out = []
    for y in range(a.shape[0] - size + 1):
        for x in range(a.shape[1] - size + 1):
            p, q = a[y:y + size, x:x + size], b[y:y + size, x:x + size]
            mp, mq = (w * p).sum(), (w * q).sum()
            vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
            cov = (w * (p - mp) * (q - mq)).sum()
            if sample:
                k = size * size / (size * size - 1)
                vp, vq, cov = k * vp, k * vq, k * cov
            out.append((2 * mp * mq + C1) * (2 * cov + C2)
                       / ((mp ** 2 + mq ** 2 + C1) * (vp + vq + C2)))
    return np.mean(out)


@pytest.mark.parametrize("window,size,sigma,sample",
                         [("gaussian", 11, 1.5, False), ("uniform", 7, None, True)])
def test_ssim_matches_a_window_by_window_loop(window, size, sigma, sample):
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(2, 14, 13))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    got = ssim(a, b, window=window)
    want = [_ssim_loop(a[n], b[n], size, sigma, sample) for n in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # negative control: the other window's statistics give another number
    other = _ssim_loop(a[0], b[0], 11 if size == 7 else 7, None if sigma else 1.5, not sample)
    assert abs(got[0] - other) > 1e-3


def test_ssim_rejects_small_or_mismatched_maps():
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="one shape"):
        ssim(np.zeros((1, 12, 12)), np.zeros((1, 12, 13)))
    with pytest.raises(ValueError, match="unknown SSIM window"):
        ssim(np.zeros((1, 12, 12)), np.zeros((1, 12, 12)), window="box")
    assert set(metrics.SSIM_WINDOWS) == {"gaussian", "uniform"}


# --------------------------------------------------------------------------- HOG
def test_hog_cells_of_a_vertical_and_a_diagonal_edge_by_hand():
    # a step from 0 to 1 between columns 7 and 8: g_x = 1 at columns 7 and 8 (central
    # differences), g_y = 0, so each of the 16 rows votes 1 into bin 0 (0 degrees) of the cell
    # holding column 7 and of the cell holding column 8: 8 votes per cell, nothing elsewhere
    m = np.zeros((1, 16, 16))
    m[:, :, 8:] = 1
    h = metrics.hog_cells(m)
    assert h.shape == (1, 2, 2, 9)
    np.testing.assert_array_equal(h[0, :, :, 0], [[8, 8], [8, 8]])
    assert h.sum() == 32
    # the diagonal ramp m = i + j: g_x = g_y = 2 inside the border, |g| = 2 sqrt(2) at 45
    # degrees, bin 2 of [40, 60); the border rows/columns have one component only (0 / 90)
    i, j = np.mgrid[0:16, 0:16]
    h = metrics.hog_cells((i + j)[None].astype(float))
    assert h[0, 0, 0, 2] == pytest.approx(49 * 2 * math.sqrt(2))  # 7 x 7 interior pixels
    assert h[0, 0, 0, 0] == pytest.approx(7 * 2) and h[0, 0, 0, 4] == pytest.approx(7 * 2)


def test_hog_correlation_identical_one_and_other_orientation_lower():
    rng = np.random.default_rng(3)
    a = rng.uniform(size=(2, 32, 32))
    np.testing.assert_allclose(metrics.hog_correlation(a, a), [1, 1], rtol=1e-12)
    m = np.zeros((1, 32, 32))
    m[:, :, 16:] = 1
    # an edge turned by 90 degrees votes into bin 4 instead of bin 0: the features disagree
    assert metrics.hog_correlation(m, m.transpose(0, 2, 1))[0] < 0.2
    assert np.isnan(metrics.hog_correlation(np.ones((1, 32, 32)), a[:1])[0])
    # the first block by hand: cells (0,0), (0,1), (1,0), (1,1), L2 norm, clip at 0.2, L2 again
    h = metrics.hog_cells(a)
    v = np.concatenate([h[0, 0, 0], h[0, 0, 1], h[0, 1, 0], h[0, 1, 1]])
    plain = v / np.sqrt(v @ v + 1e-10)
    v = np.minimum(plain, 0.2)
    v = v / np.sqrt(v @ v + 1e-10)
    f = metrics.hog(a)
    assert f.shape == (2, 3 * 3 * 36)
    np.testing.assert_allclose(f[0, :36], v, rtol=1e-12)
    assert plain.max() > 0.2 and not np.allclose(f[0, :36], plain)  # the clip matters here
    with pytest.raises(ValueError, match="2x2 cells"):
        metrics.hog(np.zeros((1, 12, 12)))
