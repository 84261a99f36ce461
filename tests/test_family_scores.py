"""Score-CAM, SS-CAM, IS-CAM and Ablation-CAM (gradcam/family/scores.py, perturb.py).

Each identity is checked in float64 with a negative control beside it:
- the masks, scores and weights of Score-CAM equal a plain loop written here (one unbatched
  forward per channel), and so do IS-CAM's; the batch size changes nothing;
- Score-CAM is invariant to scaling A by a positive constant (the mask normalisation), while a
  non-uniform change moves the masks and Grad-CAM's weights do scale;
- Ablation-CAM on a GAP + linear head: y^c - y^c_k = w_k^c mean(A^k) in closed form;
- SS-CAM with explicit zero noise is Score-CAM; its seeded noise is reproducible;
- the exact savings: all-zero and identical masks, and all-zero channels for Ablation-CAM, run
  no extra forward (forwards counted), with the same results.
"""

import numpy as np
import pytest

import gradcam
from gradcam.family.perturb import minmax, score_cam_masks
from gradcam.resize import resize
from minicnn import zoo

N, HW = 2, 32
TARGET = [1, 2]


@pytest.fixture(scope="module")
def model():
    return zoo.shapes_gap(seed=2).astype("float64").eval()  # eval: the loops' BatchNorm too


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).uniform(0, 1, (N, 3, HW, HW))


def softmax_prob(logits, c):
    e = np.exp(logits - logits.max())
    return e[c] / e.sum()


def loop_masks(A):
    """s(Up(A^k)) channel by channel: bilinear upsampling (half-pixel), then min-max; constant
    channels give zero masks."""
    Nn, K = A.shape[:2]
    out = np.zeros((Nn, K, HW, HW))
    for n in range(Nn):
        for k in range(K):
            a = A[n, k]
            if a.max() == a.min():
                continue
            up = resize(a, (HW, HW))
            out[n, k] = (up - up.min()) / (up.max() - up.min())
    return out


def loop_probability(model, image, c):
    """f^c of one image: softmax of one unbatched forward."""
    return softmax_prob(model.forward(image[None])[0], c)


def counting(model):
    """Wrap model.forward / forward_from to count the rows they are run on."""
    rows = {"forward": [], "forward_from": []}
    fwd, frm = model.forward, model.forward_from

    def forward(x, *a, **k):
        rows["forward"].append(x.shape[0])
        return fwd(x, *a, **k)

    def forward_from(layer, A, *a, **k):
        rows["forward_from"].append(A.shape[0])
        return frm(layer, A, *a, **k)

    model.forward, model.forward_from = forward, forward_from
    return rows


# --------------------------------------------------------------------------- Score-CAM
def test_scorecam_masks_scores_and_weights_equal_a_plain_loop(model, x):
    r = gradcam.explain(model, x, TARGET, "scorecam")
    A = r.activations
    H = loop_masks(A)
    np.testing.assert_allclose(r.details["masks"], H, rtol=0, atol=1e-12)
    K = A.shape[1]
    S = np.zeros((N, K))
    base = np.zeros(N)
    for n, c in enumerate(TARGET):
        base[n] = loop_probability(model, np.zeros_like(x[n]), c)
        for k in range(K):
            S[n, k] = loop_probability(model, x[n] * H[n, k], c) - base[n]
    np.testing.assert_allclose(r.details["baseline"], base, rtol=0, atol=1e-14)
    np.testing.assert_allclose(r.details["scores"], S, rtol=0, atol=1e-12)
    alpha = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r.weights, alpha, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.linear_map, (alpha[:, :, None, None] * A).sum(1), atol=1e-12)
    assert r.gradients is None and r.weights.shape == (N, K)
    # negative controls: normalising before upsampling (torchcam's order) moves the masks, and
    # the logits instead of the softmax probability move the scores
    first = resize(minmax(A).reshape(N * K, *A.shape[2:]), (HW, HW)).reshape(H.shape)
    assert np.abs(first - H).max() > 1e-3
    logit = np.array([[model.forward((x[n] * H[n, k])[None])[0, c] for k in range(3)]
                      for n, c in enumerate(TARGET)])
    assert np.abs(logit - r.details["scores"][:, :3]).max() > 1e-3


def test_scorecam_is_invariant_to_a_positive_scale_of_A(model, x):
    """A -> s A (bn4's scale and shift times s, the fc weight divided by s: the same function):
    masks, scores and weights stay; the linear map scales by s. Grad-CAM's weights scale by 1/s
    (the negative control: the check sees a change where there is one)."""
    s = 7.5
    scaled = zoo.shapes_gap(seed=2).astype("float64").eval()
    scaled["bn4"].params["weight"] *= s
    scaled["bn4"].params["bias"] *= s
    scaled["fc"].params["weight"] /= s
    r = gradcam.explain(model, x, TARGET, "scorecam")
    q = gradcam.explain(scaled, x, TARGET, "scorecam")
    np.testing.assert_allclose(q.activations, s * r.activations, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.logits, r.logits, rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.details["masks"], r.details["masks"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.details["scores"], r.details["scores"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.weights, r.weights, rtol=1e-12, atol=0)
    np.testing.assert_allclose(q.linear_map, s * r.linear_map, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.heatmap, r.heatmap, rtol=0, atol=1e-12)
    g, h = gradcam.grad_cam(model, x, TARGET), gradcam.grad_cam(scaled, x, TARGET)
    np.testing.assert_allclose(h.weights, g.weights / s, rtol=1e-10, atol=1e-15)
    assert np.abs(h.weights - g.weights).max() > 1e-6


def test_masks_are_scale_invariant_but_see_a_non_uniform_change():
    A = np.random.default_rng(1).uniform(0, 2, (2, 5, 6, 7))
    H = score_cam_masks(A, (12, 14))
    np.testing.assert_allclose(score_cam_masks(3.25 * A, (12, 14)), H, rtol=0, atol=1e-14)
    ramp = np.linspace(0, 1, 7)[None, None, None, :]
    assert np.abs(score_cam_masks(A + ramp, (12, 14)) - H).max() > 1e-2  # negative control
    assert H.min() == 0 and np.allclose(H.max(axis=(2, 3)), 1)
    A[1, 3] = 4.2  # constant channel: a zero mask (the black baseline)
    assert not score_cam_masks(A, (12, 14))[1, 3].any()


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_batch_size_does_not_change_the_results(model, x, method):
    ref = gradcam.explain(model, x, TARGET, method, batch_size=1)
    for b in (5, 1000):
        r = gradcam.explain(model, x, TARGET, method, batch_size=b)
        np.testing.assert_allclose(r.weights, ref.weights, rtol=1e-12, atol=1e-15)
        for key in ref.details:
            np.testing.assert_allclose(r.details[key], ref.details[key], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        gradcam.explain(model, x, TARGET, method, batch_size=0)


def _doctored():
    """shapes_gap with channel 1 of relu4 a copy of channel 0 and channels 2, 3 all zero."""
    m = zoo.shapes_gap(seed=2).astype("float64").eval()
    w = m["conv4"].params["weight"]
    w[1] = w[0]
    for key in ("weight", "bias"):
        m["bn4"].params[key][1] = m["bn4"].params[key][0]
    for key in ("running_mean", "running_var"):
        m["bn4"].buffers[key][1] = m["bn4"].buffers[key][0]
    m["bn4"].params["weight"][2:4] = 0
    m["bn4"].params["bias"][2:4] = -1.0  # ReLU(-1) = 0 everywhere
    return m


def distinct_live_channels(A):
    """Per image, the number of distinct channels that are not constant (written here with
    np.unique: the forwards Score-CAM needs at least)."""
    out = 0
    for a in A.reshape(A.shape[0], A.shape[1], -1):
        live = a[a.max(axis=1) != a.min(axis=1)]
        out += len(np.unique(live, axis=0))
    return out


def test_identical_and_zero_masks_run_no_extra_forward(x):
    """The NOTE in perturb.masked_scores: zero masks take the black image's score, identical
    masks share one forward; the results equal the plain loop's."""
    m = _doctored()
    rows = counting(m)
    r = gradcam.explain(m, x, TARGET, "scorecam", batch_size=8)
    A, H = r.activations, r.details["masks"]
    K = A.shape[1]
    assert np.array_equal(A[:, 0], A[:, 1]) and not A[:, 2:4].any()
    # one explain forward, one batch of N black images, then the distinct non-zero masks
    assert rows["forward"][:2] == [N, N]
    assert sum(rows["forward"][2:]) == distinct_live_channels(A) <= N * (K - 3)
    for n, c in enumerate(TARGET):
        base = loop_probability(m, np.zeros_like(x[n]), c)
        for k in (0, 1, 2, 5):
            want = loop_probability(m, x[n] * H[n, k], c) - base
            assert abs(r.details["scores"][n, k] - want) < 1e-12
        assert r.details["scores"][n, 2] == 0 == r.details["scores"][n, 3]
    # negative control: without the copy, channel 1 runs a forward of its own
    plain = zoo.shapes_gap(seed=2).astype("float64").eval()
    rows = counting(plain)
    q = gradcam.explain(plain, x, TARGET, "scorecam", batch_size=8)
    assert sum(rows["forward"][2:]) == distinct_live_channels(q.activations)
    assert distinct_live_channels(q.activations) > distinct_live_channels(A)


# --------------------------------------------------------------------------- Ablation-CAM
def test_ablationcam_on_a_gap_linear_head_in_closed_form(model, x):
    """y^c is linear in mean(A^k): y^c - y^c_k = w_k^c mean(A^k), alpha_k = that / y^c."""
    r = gradcam.explain(model, x, TARGET, "ablationcam")
    A = r.activations
    W = model["fc"].params["weight"]
    for n, c in enumerate(TARGET):
        y = r.logits[n, c]
        drop = W[c] * A[n].mean(axis=(1, 2))
        np.testing.assert_allclose(r.details["score"][n], y, rtol=0, atol=0)
        np.testing.assert_allclose(y - r.details["ablated_scores"][n], drop, rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.weights[n], drop / y, rtol=1e-9, atol=1e-10)
        # negative control: the same check with another class's weights fails
        assert np.abs(r.weights[n] - W[(c + 1) % 4] * A[n].mean(axis=(1, 2)) / y).max() > 1e-3


def test_ablationcam_runs_only_the_layers_above_A_and_skips_dead_channels(x):
    m = _doctored()
    rows = counting(m)
    r = gradcam.explain(m, x, TARGET, "ablationcam", batch_size=16)
    K = r.activations.shape[1]
    assert rows["forward"] == [N]  # explain's own forward only
    live = (r.activations != 0).reshape(N, K, -1).any(axis=2)
    assert sum(rows["forward_from"]) == live.sum() <= N * (K - 2)  # zero channels: no forward
    assert (r.weights[~live] == 0).all() and (r.weights[:, 2:4] == 0).all()
    W = m["fc"].params["weight"]
    for n, c in enumerate(TARGET):
        drop = W[c] * r.activations[n].mean(axis=(1, 2))
        np.testing.assert_allclose(r.weights[n], drop / r.logits[n, c], rtol=1e-9, atol=1e-10)


def test_ablationcam_inside_a_residual_block_equals_a_plain_loop():
    """EfficientNet-Lite0, a layer inside a residual block (the skip is gathered per row),
    two images: each ablated copy run through the whole network (A^k zeroed by a hook-free
    route: forward_from with that image's own skip) equals the batched result."""
    lite = zoo.efficientnet_lite0(num_classes=10, seed=0).astype("float64").eval()
    layer = "_blocks.4._project_conv"
    xl = np.random.default_rng(6).uniform(-1, 1, (2, 3, 64, 64))
    r = gradcam.explain(lite, xl, [3, 7], "ablationcam", layer=layer, batch_size=32)
    A = r.activations
    lite.forward(xl, keep=[layer])
    skip = lite.residual_inputs["_blocks.4"]
    for n, c in enumerate([3, 7]):
        for k in (0, 5, A.shape[1] - 1):
            Ak = A[n:n + 1].copy()
            Ak[0, k] = 0
            y_k = lite.forward_from(layer, Ak, skips={"_blocks.4": skip[n:n + 1]})[0, c]
            assert abs(r.details["ablated_scores"][n, k] - y_k) < 1e-10
    # negative control: another image's skip gives another score
    other = lite.forward_from(layer, A[:1], skips={"_blocks.4": skip[1:2]})[0, 3]
    assert abs(other - r.logits[0, 3]) > 1e-6


# --------------------------------------------------------------------------- SS-CAM, IS-CAM
def test_sscam_with_zero_noise_is_scorecam(model, x):
    r = gradcam.explain(model, x, TARGET, "scorecam")
    H = r.details["masks"]
    q = gradcam.explain(model, x, TARGET, "sscam", noise=np.zeros((2,) + H.shape))
    np.testing.assert_allclose(q.details["scores"], r.details["scores"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(q.weights, r.weights, rtol=1e-13, atol=0)
    noisy = gradcam.explain(model, x, TARGET, "sscam", noise=np.full((1,) + H.shape, 0.1))
    assert np.abs(noisy.details["scores"] - r.details["scores"]).max() > 1e-6  # control
    with pytest.raises(ValueError, match="noise must have shape"):
        gradcam.explain(model, x, TARGET, "sscam", noise=np.zeros(H.shape))


def test_sscam_equals_a_plain_loop_and_is_reproducible_from_its_seed(model, x):
    r = gradcam.explain(model, x[:1], 1, "sscam", num_samples=2, std=0.3, seed=11)
    noise = r.details["noise"]
    H = r.details["masks"]
    expected = 0.3 * np.random.default_rng(11).standard_normal((2,) + H.shape)
    np.testing.assert_array_equal(noise, expected)
    K = H.shape[1]
    base = loop_probability(model, np.zeros_like(x[0]), 1)
    S = np.array([np.mean([loop_probability(model, x[0] * (H[0, k] + noise[i, 0, k]), 1)
                           for i in range(2)]) - base for k in range(K)])
    np.testing.assert_allclose(r.details["scores"][0], S, rtol=0, atol=1e-12)
    again = gradcam.explain(model, x[:1], 1, "sscam", num_samples=2, std=0.3, seed=11)
    np.testing.assert_array_equal(again.weights, r.weights)
    given = gradcam.explain(model, x[:1], 1, "sscam", noise=noise)
    np.testing.assert_allclose(given.weights, r.weights, rtol=1e-14, atol=0)
    other = gradcam.explain(model, x[:1], 1, "sscam", num_samples=2, std=0.3, seed=12)
    assert np.abs(other.details["scores"] - r.details["scores"]).max() > 1e-6  # control


def test_iscam_equals_a_plain_loop(model, x):
    steps = 3
    r = gradcam.explain(model, x[:1], 2, "iscam", num_samples=steps)
    H = r.details["masks"]
    K = H.shape[1]
    base = loop_probability(model, np.zeros_like(x[0]), 2)

    def mean_score(coef):
        return np.array([np.mean([loop_probability(model, coef(i) * x[0] * H[0, k], 2)
                                  for i in range(1, steps + 1)]) for k in range(K)]) - base

    S = mean_score(lambda i: i / steps)
    np.testing.assert_allclose(r.details["scores"][0], S, rtol=0, atol=1e-12)
    alpha = np.exp(S) / np.exp(S).sum()
    np.testing.assert_allclose(r.weights[0], alpha, rtol=1e-12, atol=0)
    # negative control: torchcam's accumulated inputs (sum_{j<=i} j/N) give other scores
    cumulative = mean_score(lambda i: sum(j / steps for j in range(1, i + 1)))
    assert np.abs(cumulative - S).max() > 1e-4
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        gradcam.explain(model, x[:1], 2, "iscam", num_samples=0)
