"""Faithfulness metrics (gradcam.metrics.faithfulness, .road): hand-computed cases, closed forms,
an independent dense solve of ROAD's imputation, and negative controls.

Every expected value here comes from arithmetic written in the test (literals, np.sort/cumsum,
np.linalg.solve on a matrix built by loops), never from the code under test; each check is paired
with the value a wrong formula would give, and asserts the code is NOT that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcam
from gradcam import metrics
from minicnn import layers as L
from minicnn import zoo
from minicnn.data import make_scenes
from minicnn.model import Sequential


def close_not(actual, expected, wrong, atol):
    """actual == expected within atol, and the wrong formula's value is outside it."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
    assert np.max(np.abs(np.asarray(wrong, dtype=float) - np.asarray(expected, dtype=float))) \
        > 10 * atol, "the negative control does not separate the right formula from the wrong"


def linear_model(W, b, shape):
    """y = W vec(x) + b: a model whose scores are known in closed form."""
    model = Sequential([("flat", L.Flatten()), ("fc", L.Linear(int(np.prod(shape)), len(b)))])
    model = model.astype("float64")
    model["fc"].weight = np.asarray(W, dtype=np.float64)
    model["fc"].bias = np.asarray(b, dtype=np.float64)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    """1 x 1 x 2 x 2 image of ones, class 0 weights 4, 3, 2, 1 (class 1: zero): the logit of
    class 0 is the sum of the weights of the pixels present."""
    W = np.array([[4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    return linear_model(W, [0.0, 0.0], (1, 2, 2)), np.ones((1, 1, 2, 2))


# --------------------------------------------------------------------------- deletion / insertion
def test_deletion_and_insertion_by_hand(tiny):
    model, x = tiny
    m = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    d = metrics.deletion(model, x, m, [0], steps=4, scores="logits")
    # removing the weights 4, 3, 2, 1 in turn: 10, 6, 3, 1, 0; RISE's area (sum - ends/2) / 4
    close_not(d.curve[0], [10, 6, 3, 1, 0], wrong=[10, 9, 7, 4, 0], atol=1e-12)  # wrong: LeRF
    close_not(d.auc, [3.75], wrong=[(10 + 6 + 3 + 1 + 0) / 5], atol=1e-12)  # wrong: plain mean
    i = metrics.insertion(model, x, m, [0], steps=4, baseline="zeros", scores="logits")
    close_not(i.curve[0], [0, 4, 7, 9, 10], wrong=[0, 1, 3, 6, 10], atol=1e-12)
    close_not(i.auc, [6.25], wrong=[6.0], atol=1e-12)
    assert i.curve.shape == d.curve.shape == (1, 5)
    np.testing.assert_array_equal(d.order[0], [0, 1, 2, 3])
    # softmax against a zero logit: sigmoid(y), written out
    p = metrics.deletion(model, x, m, [0], steps=4).curve[0]
    close_not(p, [1 / (1 + math.exp(-v)) for v in (10, 6, 3, 1, 0)], wrong=[10, 6, 3, 1, 0],
              atol=1e-12)


def test_torchcam_counts_and_trapezoid_by_hand(tiny):
    model, x = tiny
    m = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    # P = 4, steps = 3: torchcam's step ceil(4 / 3) = 2, counts 0, 2, 4 (3 points, not 4)
    d = metrics.deletion(model, x, m, [0], steps=3, scores="logits", variant="torchcam")
    np.testing.assert_array_equal(d.counts, [0, 2, 4])
    close_not(d.curve[0], [10, 3, 0], wrong=[10, 6, 0], atol=1e-12)
    close_not(d.auc, [(10 + 3) / 2 * 0.5 + 3 / 2 * 0.5], wrong=[13 / 3], atol=1e-12)
    # the paper's counts for the same call: floor(k 4 / 3) = 0, 1, 2, 4
    np.testing.assert_array_equal(metrics.perturbation_counts(4, 3), [0, 1, 2, 4])


def test_linear_model_deletion_curve_closed_form():
    """y = sum_p a_p + b with a_p = sum_c W_c,p x_c,p; deleting (zeroing) the pixels of the largest
    a_p first gives y_k = b + sum_p a_p - (sum of the n_k largest a_p)."""
    rng = np.random.default_rng(3)
    C, H, Wd = 3, 6, 5
    W = rng.standard_normal((2, C * H * Wd))
    x = rng.standard_normal((1, C, H, Wd))
    model = linear_model(W, [0.5, -0.25], (C, H, Wd))
    a = (W[0].reshape(C, H, Wd) * x[0]).sum(axis=0)  # contribution of each pixel to y_0
    steps = 6
    d = metrics.deletion(model, x, a[None], [0], steps=steps, scores="logits")
    n_k = np.arange(steps + 1) * (H * Wd) // steps
    top = np.concatenate([[0.0], np.cumsum(np.sort(a.ravel())[::-1])])
    expected = 0.5 + a.sum() - top[n_k]
    wrong = 0.5 + a.sum() - np.concatenate([[0.0], np.cumsum(np.sort(a.ravel()))])[n_k]
    close_not(d.curve[0], expected, wrong, atol=1e-10)
    # the exact attribution is the best deletion order: a random map's area is larger
    r = metrics.deletion(model, x, rng.random((1, H, Wd)), [0], steps=steps, scores="logits")
    assert r.auc[0] > d.auc[0]


def test_blur_is_rise_kernel():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy not installed")
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    k = ndimage.gaussian_filter(delta, 5)  # RISE's gkern(11, 5)
    np.testing.assert_allclose(np.outer(metrics.perturbation.blur_taps(), metrics.perturbation
                                        .blur_taps()), k, rtol=0, atol=1e-15)
    x = np.random.default_rng(0).standard_normal((1, 2, 13, 16))
    ref = np.stack([ndimage.convolve(x[0, c], k, mode="constant") for c in range(2)])
    np.testing.assert_allclose(metrics.blur(x)[0], ref, rtol=0, atol=1e-12)
    # a plain truncated Gaussian (no reflection) is a different kernel
    g = np.exp(-0.5 * (np.arange(-5, 6) / 5.0) ** 2)
    assert np.abs(np.outer(g, g) / g.sum() ** 2 - k).max() > 1e-3


def test_baselines():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(metrics.baseline_image(x, "zeros"), 0 * x)
    mean = metrics.baseline_image(x, "mean")
    np.testing.assert_array_equal(mean[1, 2], np.full((2, 2), (20 + 21 + 22 + 23) / 4))
    per_channel = np.array([1.0, 2.0, 3.0])[:, None, None]
    np.testing.assert_array_equal(metrics.baseline_image(x, per_channel)[1, 2], 3)
    with pytest.raises(ValueError, match="baseline"):
        metrics.baseline_image(x, "noise")


# --------------------------------------------------------------------------- Average Drop / IC
def test_average_drop_and_increase_by_hand(tiny):
    model, x = tiny
    m = np.array([[[1.0, 0.5], [0.0, 0.0]]])  # E = x o m keeps 4 * 1 + 3 * 0.5 = 5.5 of 10
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    paper = 100 * (sig(10) - sig(5.5)) / sig(10)
    close_not(metrics.average_drop(model, x, m, [0]), [paper], wrong=[sig(10) - sig(5.5)],
              atol=1e-12)
    close_not(metrics.average_drop(model, x, m, [0], variant="pytorch-grad-cam"), [4.5],
              wrong=[0.45], atol=1e-12)
    close_not(metrics.average_drop(model, x, m, [0], variant="torchcam"), [4.5 / (10 + 1e-7)],
              wrong=[4.5], atol=1e-12)
    close_not(metrics.confidence_change(model, x, m, [0], scores="logits"), [-4.5], wrong=[4.5],
              atol=1e-12)
    assert not metrics.increase_in_confidence(model, x, m, [0])[0]
    # a negative weight: the map that drops it raises the score (O = 9 > Y = 8), drop is 0
    up = linear_model([[4.0, 3.0, 2.0, -1.0], [0, 0, 0, 0]], [0.0, 0.0], (1, 2, 2))
    keep3 = np.array([[[1.0, 1.0], [1.0, 0.0]]])
    assert metrics.increase_in_confidence(up, x, keep3, [0]).tolist() == [True]
    close_not(metrics.average_drop(up, x, keep3, [0], scores="logits"), [0.0],
              wrong=[100 * -1 / 8], atol=1e-12)  # wrong: no max(0, .)


# --------------------------------------------------------------------------- ROAD
def dense_imputation(img, removed):
    """The paper's system built entry by entry, solved densely: img (C, H, W), removed (H, W)."""
    H, W = removed.shape
    idx = {p: i for i, p in enumerate(zip(*np.nonzero(removed)))}
    A = np.zeros((len(idx), len(idx)))
    b = np.zeros((len(idx), img.shape[0]))
    for (r, c), i in idx.items():
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if (dr, dc) == (0, 0) or not (0 <= r + dr < H and 0 <= c + dc < W):
                    continue
                w = 1 / 6 if dr == 0 or dc == 0 else 1 / 12
                A[i, i] += w
                if (r + dr, c + dc) in idx:
                    A[i, idx[(r + dr, c + dc)]] -= w
                else:
                    b[i] += w * img[:, r + dr, c + dc]
    v = np.linalg.solve(A, b)
    out = img.copy()
    for (r, c), i in idx.items():
        out[:, r, c] = v[i]
    return out


def test_linear_imputation_matches_dense_solve():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 9))
    removed = rng.random((2, 7, 9)) < 0.6
    removed[1, :4, :5] = True  # a large hole in the corner: neighbours of neighbours
    ours = metrics.linear_imputation(x, removed)
    for n in range(2):
        np.testing.assert_allclose(ours[n], dense_imputation(x[n], removed[n]), rtol=0,
                                   atol=1e-8)
    np.testing.assert_array_equal(ours[~np.repeat(removed[:, None], 3, 1)],
                                  x[~np.repeat(removed[:, None], 3, 1)])
    # negative control: equal weights 1/8 for all 8 neighbours give other values
    uniform = x[0].copy()
    for _ in range(2000):  # Jacobi iterations of the 1/8-weighted mean
        p = np.pad(uniform, ((0, 0), (1, 1), (1, 1)))
        s = sum(p[:, 1 + a:8 + a, 1 + c:10 + c] for a in (-1, 0, 1) for c in (-1, 0, 1)
                if (a, c) != (0, 0))
        cnt = np.pad(np.ones((7, 9)), 1)
        k = sum(cnt[1 + a:8 + a, 1 + c:10 + c] for a in (-1, 0, 1) for c in (-1, 0, 1)
                if (a, c) != (0, 0))
        uniform = np.where(removed[0], s / k, x[0])
    assert np.abs(uniform - ours[0]).max() > 1e-3
    # noise is added as given, on the removed pixels only
    noise = rng.standard_normal(x.shape)
    noisy = metrics.linear_imputation(x, removed, noise)
    R = np.repeat(removed[:, None], 3, 1)
    np.testing.assert_allclose((noisy - ours)[R], noise[R], rtol=0, atol=1e-12)
    np.testing.assert_array_equal((noisy - ours)[~R], 0)


def test_removal_masks_official_counts_and_threshold():
    m = np.array([[[0.9, 0.1, 0.5, 0.7, 0.3], [0.2, 0.8, 0.4, 0.6, 0.0]]])  # 10 distinct values
    morf = metrics.removal_masks(m, (30, 75), "morf")
    np.testing.assert_array_equal(morf[0, 0], m[0] >= 0.7)  # 3 most relevant
    np.testing.assert_array_equal(morf[0, 1], m[0] >= 0.3)  # floor(7.5) = 7 most relevant
    lerf = metrics.removal_masks(m, (30,), "lerf")
    np.testing.assert_array_equal(lerf[0, 0], m[0] < 0.7)  # all but the 3 most relevant
    # pytorch-grad-cam: MoRF(30) keeps m < percentile(m, 30) = 0.27: removes 7, not 3
    pgc = metrics.removal_masks(m, (30,), "morf", variant="pytorch-grad-cam")
    np.testing.assert_array_equal(pgc[0, 0], m[0] >= 0.3)
    assert pgc[0, 0].sum() == 7 and morf[0, 0].sum() == 3


def test_road_linear_model_and_noise_reuse():
    """On a linear model the ROAD score is the model applied to the dense-solve imputation."""
    rng = np.random.default_rng(11)
    C, H, Wd = 2, 5, 6
    W = rng.standard_normal((3, C * H * Wd))
    model = linear_model(W, [0.1, 0.0, -0.2], (C, H, Wd))
    x = rng.standard_normal((2, C, H, Wd))
    maps = rng.random((2, H, Wd))
    noise = 0.05 * rng.standard_normal(x.shape)
    r = metrics.road(model, x, maps, [1, 2], percentiles=(20, 50), order="lerf", noise=noise,
                     scores="logits")
    masks = metrics.removal_masks(maps, (20, 50), "lerf")
    for n, c in enumerate([1, 2]):
        for i in range(2):
            img = dense_imputation(x[n], masks[n, i])
            img = np.where(masks[n, i], img + noise[n], img)
            want = W[c] @ img.ravel() + [0.1, 0.0, -0.2][c]
            wrong = W[c] @ np.where(masks[n, i], img - noise[n], img).ravel()  # no noise
            close_not(r.curve[n, i], want, wrong + [0.1, 0.0, -0.2][c], atol=1e-8)
    assert r.noise is not None and np.array_equal(r.noise, noise)
    np.testing.assert_allclose(r.removed_fraction, [[0.8, 0.5], [0.8, 0.5]])
    # seed: the default noise is NOISE * default_rng(seed).standard_normal(x.shape)
    drawn = metrics.road(model, x, maps, [1, 2], percentiles=(20,), seed=5)
    given = metrics.road(model, x, maps, [1, 2], percentiles=(20,), seed=5,
                         noise=0.01 * np.random.default_rng(5).standard_normal(x.shape))
    np.testing.assert_array_equal(drawn.curve, given.curve)


def test_road_threshold_ties_remove_everything_gives_nan():
    """pytorch-grad-cam's MoRF(30) keeps m < percentile(m, 30); a map that is 0 on half the
    image has that percentile 0, so no pixel is kept: NaN and a warning, not a crash."""
    rng = np.random.default_rng(2)
    model = linear_model(rng.standard_normal((2, 1 * 4 * 4)), [0.0, 0.0], (1, 4, 4))
    x = rng.standard_normal((2, 1, 4, 4))
    maps = rng.random((2, 4, 4))
    maps[0, :2] = 0.0  # half of image 0 is a tie at the minimum
    with pytest.warns(RuntimeWarning, match="every pixel"):
        r = metrics.road(model, x, maps, [0, 1], percentiles=(30, 60), order="morf",
                         variant="pytorch-grad-cam")
    assert np.isnan(r.curve[0, 0]) and r.removed_fraction[0, 0] == 1.0
    assert np.isfinite(r.curve[0, 1]) and np.isfinite(r.curve[1]).all()
    exact = metrics.road(model, x, maps, [0, 1], percentiles=(30,), order="morf")
    assert exact.removed_fraction[0, 0] == 4 / 16  # floor(0.3 * 16): an exact count


# --------------------------------------------------------------------------- negative control
@pytest.fixture(scope="module")
def shapes_case():
    model = zoo.shapes_cnn(pretrained=True)
    x = make_scenes(12, seed=21).images
    r = gradcam.explain(model, x, None, "gradcam")
    return model, x, r


@pytest.mark.parametrize("baseline", ["blur", "mean"])
def test_random_map_scores_worse_than_gradcam_on_deletion(shapes_case, baseline):
    """NOTE: with the black canvas ("zeros") the shapes CNN scores a random map BETTER on deletion
    (measured: AUC 0.29 random vs 0.43 Grad-CAM on these 12 scenes): a black blob where the object
    was is itself a dark shape on the scenes' coloured backgrounds. The canvases that stay in the
    data's range, the blurred image and the mean colour, rank Grad-CAM first."""
    model, x, r = shapes_case
    grad = metrics.deletion(model, x, r.heatmap, r.target, steps=16, baseline=baseline)
    rand = metrics.deletion(model, x, np.random.default_rng(0).random(r.heatmap.shape),
                            r.target, steps=16, baseline=baseline)
    assert grad.auc.mean() < rand.auc.mean() - 0.1, (grad.auc.mean(), rand.auc.mean())
    assert (grad.auc < rand.auc).mean() > 0.5  # most images, not only on average
    # the reversed map (least salient first) scores worse than Grad-CAM too
    rev = metrics.deletion(model, x, -r.heatmap, r.target, steps=16, baseline=baseline)
    assert rev.auc.mean() > grad.auc.mean() + 0.1


def test_random_map_scores_worse_than_gradcam_on_insertion(shapes_case):
    model, x, r = shapes_case
    grad = metrics.insertion(model, x, r.heatmap, r.target, steps=16)
    rand = metrics.insertion(model, x, np.random.default_rng(0).random(r.heatmap.shape),
                             r.target, steps=16)
    assert grad.auc.mean() > rand.auc.mean() + 0.1, (grad.auc.mean(), rand.auc.mean())


def test_plot_curves_one_panel_per_method(tiny, tmp_path):
    from gradcam.curves import plot_curves

    model, x = tiny
    m = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    d = metrics.deletion(model, x, m, [0], steps=4, scores="logits")
    i = metrics.insertion(model, x, m, [0], steps=4, baseline="zeros", scores="logits")
    fig = plot_curves({"exact": {"deletion": d, "insertion": i}, "reversed": [d]},
                      tmp_path / "c.png", cols=3)
    assert (tmp_path / "c.png").stat().st_size > 1000
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["exact", "reversed"]
    lines = shown[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), [10, 6, 3, 1, 0])
    np.testing.assert_allclose(lines[1].get_xdata(), [0, 0.25, 0.5, 0.75, 1])
    assert "AUC 3.750" in shown[0].get_legend().get_texts()[0].get_text()


def test_bad_arguments(tiny):
    model, x = tiny
    m = np.ones((1, 2, 2))
    with pytest.raises(ValueError, match="maps"):
        metrics.deletion(model, x, np.ones((1, 3, 2)), [0])
    with pytest.raises(ValueError, match="variant"):
        metrics.average_drop(model, x, m, [0], variant="captum")
    with pytest.raises(ValueError, match="scores"):
        metrics.insertion(model, x, m, [0], scores="probability")
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion(model, x, m, [0], steps=0)
    with pytest.raises(ValueError, match="order"):
        metrics.road(model, x, m, [0], order="both")
    with pytest.raises(ValueError, match="noise"):
        metrics.road(model, x, m, [0], noise=np.zeros((1, 1, 3, 3)))
