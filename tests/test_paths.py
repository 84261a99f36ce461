"""SmoothGrad (arXiv:1706.03825v1) and Integrated Gradients (arXiv:1703.01365v2):
gradcam/family/paths.py.

- SmoothGrad with zero noise and one sample is the saliency map, bit for bit (control: with
  noise it is not); with an explicit noise array it is the mean of saliency maps at x + g_s,
  computed here; the drawn noise is N(0, 1) from the seed times std * (max - min) per image,
  redrawn here; seeds reproduce, other seeds differ;
- Integrated Gradients is complete: sum IG = y^c(x) - y^c(x'); on a network that is linear in x
  every rule is exact to 1e-10 with any number of steps (control: with ReLUs one step is not);
  on a ReLU network the gap shrinks as steps grow, for every rule; a formula without the
  (x - x') factor or with the gradient at x only is not complete (controls);
- the quadrature rules' error orders on a smooth integrand: O(1/m) right, O(1/m^2) midpoint
  and trapezoid;
- the gradients SmoothGrad and IG average against HIPS autograd on the oracle.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import gradcam
import oracle
import piecewise_nets as P
from gradcam.family.paths import integrated_gradients, path_rule, smoothgrad_noise
from minicnn import zoo

TARGET = [0, 2]
PROOF_TOL = 1e-10


@pytest.fixture(scope="module")
def net():
    model, spec, params = P.network(20)
    return model, spec, params, P.inputs(seed=21)


def gap(r):
    return np.abs(r.details["completeness_gap"]).max()


# --------------------------------------------------------------------------- SmoothGrad
def test_smoothgrad_with_zero_noise_and_one_sample_is_saliency(net):
    model, _, _, x = net
    zero = np.zeros((1,) + x.shape)
    r = gradcam.explain(model, x, TARGET, "smoothgrad", noise=zero)
    np.testing.assert_array_equal(r.pixels, gradcam.saliency(model, x, TARGET))
    r0 = gradcam.explain(model, x, TARGET, "smoothgrad", num_samples=1, std=0.0)
    np.testing.assert_array_equal(r0.pixels, r.pixels)
    noisy = gradcam.explain(model, x, TARGET, "smoothgrad", num_samples=1, std=0.5)
    assert np.abs(noisy.pixels - r.pixels).max() > 1e-3  # control: the noise matters


def test_smoothgrad_is_the_mean_saliency_over_the_given_noise(net):
    model, _, _, x = net
    noise = np.random.default_rng(22).normal(0, 0.3, (4,) + x.shape)
    r = gradcam.explain(model, x, TARGET, "smoothgrad", noise=noise)
    mean = sum(gradcam.saliency(model, x + g, TARGET) for g in noise) / 4
    np.testing.assert_allclose(r.pixels, mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(r.details["noise"], noise)
    assert np.abs(mean - gradcam.saliency(model, x + noise[0], TARGET)).max() > 1e-3
    with pytest.raises(ValueError, match="noise must be"):
        gradcam.explain(model, x, TARGET, "smoothgrad", noise=noise[:, :1])


def test_smoothgrad_noise_is_seeded_and_scaled_by_each_images_range():
    x = np.stack([np.linspace(0, 1, 48).reshape(3, 4, 4), np.linspace(-2, 2, 48).reshape(3, 4, 4)])
    g = smoothgrad_noise(x, num_samples=5, std=0.2, seed=7)
    z = np.random.default_rng(7).standard_normal((5,) + x.shape)  # redrawn here
    np.testing.assert_allclose(g[:, 0], 0.2 * 1.0 * z[:, 0], rtol=1e-15)
    np.testing.assert_allclose(g[:, 1], 0.2 * 4.0 * z[:, 1], rtol=1e-15)
    np.testing.assert_array_equal(g, smoothgrad_noise(x, 5, 0.2, seed=7))
    assert np.abs(g - smoothgrad_noise(x, 5, 0.2, seed=8)).max() > 0.1


def test_smoothgrad_runs_are_reproducible_by_seed(net):
    model, _, _, x = net
    a = gradcam.explain(model, x, TARGET, "smoothgrad", num_samples=3, seed=1)
    b = gradcam.explain(model, x, TARGET, "smoothgrad", num_samples=3, seed=1)
    c = gradcam.explain(model, x, TARGET, "smoothgrad", num_samples=3, seed=2)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.details["noise"], b.details["noise"])
    assert a.details["noise"].shape == (3,) + x.shape
    assert np.abs(a.pixels - c.pixels).max() > 1e-6
    default = gradcam.explain(model, x, TARGET, "smoothgrad")
    assert default.details["noise"].shape == (50,) + x.shape  # the paper's n = 50


# --------------------------------------------------------------------------- IG
def test_integrated_gradients_is_exact_on_a_network_linear_in_x():
    model, _, _ = P.network(23, linear=True)
    x = P.inputs(seed=24)
    baseline = np.random.default_rng(25).normal(size=x.shape)
    for rule in ("right", "midpoint", "trapezoid"):
        for steps in (1, 3):
            r = gradcam.explain(model, x, TARGET, "integrated-gradients", steps=steps,
                                rule=rule, baseline=baseline)
            y, y0 = model.forward(x), model.forward(baseline)
            diff = y[[0, 1], TARGET] - y0[[0, 1], TARGET]  # computed here, not read from details
            assert np.abs(r.pixels.reshape(2, -1).sum(1) - diff).max() <= PROOF_TOL, (rule, steps)
    relu_model, _, _ = P.network(23)
    r = gradcam.explain(relu_model, x, TARGET, "integrated-gradients", steps=1, baseline=baseline)
    assert gap(r) > 1e-3  # control: with ReLUs one step is not exact


@pytest.mark.parametrize("rule", ["right", "midpoint", "trapezoid"])
def test_integrated_gradients_completeness_gap_shrinks_with_steps(net, rule):
    """On a ReLU network the integrand is piecewise constant: the gap is O(1/m) for any rule."""
    model, _, _, x = net
    gaps = []
    for steps in (8, 64, 512):
        r = gradcam.explain(model, x, TARGET, "integrated-gradients", steps=steps, rule=rule)
        y = model.forward(x)[[0, 1], TARGET] - model.forward(0 * x)[[0, 1], TARGET]
        np.testing.assert_allclose(r.details["score_difference"], y, rtol=1e-12)
        gaps.append(np.abs(r.pixels.reshape(2, -1).sum(1) - y).max())
    assert gaps[2] < gaps[0] / 8 and gaps[2] < 0.01 * np.abs(y).max(), gaps
    assert gaps[0] > 1e-4  # the network is not linear along this path: there is a gap to close


def test_integrated_gradients_controls_are_not_complete(net):
    """Dropping (x - x') or using the gradient at x only breaks completeness."""
    model, _, _, x = net
    r = gradcam.explain(model, x, TARGET, "integrated-gradients", steps=512, rule="midpoint")
    y = r.details["score_difference"]
    assert gap(r) < 0.01 * np.abs(y).max()
    no_delta = r.details["mean_gradient"].reshape(2, -1).sum(1)
    at_x = (gradcam.saliency(model, x, TARGET) * x).reshape(2, -1).sum(1)
    assert np.abs(no_delta - y).max() > 0.1 * np.abs(y).max()
    assert np.abs(at_x - y).max() > 0.1 * np.abs(y).max()


def test_integrated_gradients_default_and_details():
    model = zoo.shapes_cnn(pretrained=True).astype("float64")
    x = np.random.default_rng(26).uniform(0, 1, (2, 3, 64, 64))
    r = gradcam.explain(model, x, [1, 3], "integrated-gradients")  # the paper's rule, m = 50
    np.testing.assert_array_equal(r.details["alphas"], np.arange(1, 51) / 50)
    np.testing.assert_array_equal(r.details["baseline"], np.zeros_like(x))
    y = r.details["score_difference"]
    assert gap(r) < 0.05 * np.abs(y).max()  # the paper's "within 5%" at 50 steps
    half = gradcam.explain(model, x, [1, 3], "integrated-gradients", baseline=0.5, steps=4)
    np.testing.assert_array_equal(half.details["baseline"], np.full_like(x, 0.5))
    with pytest.raises(ValueError, match="unknown rule 'simpson'"):
        gradcam.explain(model, x, [1, 3], "integrated-gradients", rule="simpson")


def test_quadrature_error_orders_on_a_smooth_integrand():
    """int_0^1 e^a da = e - 1; halving the step halves the right sum's error and quarters the
    midpoint's and trapezoid's."""
    exact = np.e - 1
    for rule, order in [("right", 1), ("midpoint", 2), ("trapezoid", 2)]:
        errs = []
        for m in (10, 20, 40):
            a, w = path_rule(m, rule)
            assert abs(w.sum() - 1) < 1e-15 and a.min() >= 0 and a.max() <= 1
            errs.append(abs((w * np.exp(a)).sum() - exact))
        ratios = [errs[0] / errs[1], errs[1] / errs[2]]
        np.testing.assert_allclose(ratios, 2 ** order, rtol=0.08, err_msg=rule)


# --------------------------------------------------------------------------- autograd
def test_path_gradients_against_autograd_on_the_oracle(net):
    """SmoothGrad and IG average dy^c/dx at other inputs: those gradients, by autograd."""
    model, spec, params, x = net
    onehot = np.eye(P.CLASSES)[TARGET]

    def dydx(v):
        return grad(lambda u: anp.sum(oracle.forward_spec(spec, params, u) * onehot))(v)

    noise = np.random.default_rng(27).normal(0, 0.5, (3,) + x.shape)
    r = gradcam.explain(model, x, TARGET, "smoothgrad", noise=noise)
    np.testing.assert_allclose(r.pixels, sum(dydx(x + g) for g in noise) / 3, atol=1e-12)
    baseline = np.random.default_rng(28).normal(size=x.shape)  # no max-pool ties on the path
    attr, mean, alphas, weights = integrated_gradients(
        lambda v: gradcam.saliency(model, v, TARGET), x, baseline, steps=5, rule="trapezoid")
    expected = sum(w * dydx(baseline + a * (x - baseline)) for a, w in zip(alphas, weights))
    np.testing.assert_allclose(mean, expected, atol=1e-12)
    np.testing.assert_allclose(attr, (x - baseline) * expected, atol=1e-12)


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("method,options", [
    ("eigencam", {}), ("eigengradcam", {}), ("fullgrad", {}), ("smoothgrad", {"num_samples": 2}),
    ("integrated-gradients", {"steps": 4, "rule": "trapezoid"}),
    ("gradcam", {"eigen_smooth": True}), ("gradcam", {"aug_smooth": True})])
def test_family_methods_on_backend(xp, method, options):
    """This slice's methods keep to NumPy-and-CuPy code: on each backend, the NumPy numbers."""
    from minicnn.backend import to_numpy

    model, _, _ = P.network(40)
    x = P.inputs(seed=41)
    ref = gradcam.explain(model, x, TARGET, method, **options)
    dev = "numpy" if xp is np else "cupy"
    r = gradcam.explain(model.to(dev), xp.asarray(x), TARGET, method, **options)
    for f in ("weights", "linear_map", "coarse", "heatmap", "pixels"):
        a, b = getattr(r, f), getattr(ref, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert type(a) is type(xp.asarray(b)), f
            np.testing.assert_allclose(to_numpy(a), b, rtol=1e-9, atol=1e-11, err_msg=f)
