"""The method registry (gradcam/registry.py) and gradcam.explain.

- every registered method runs through ``explain`` on zoo.shapes_cnn / zoo.shapes_gap, with the
  shapes its kind promises (channel: alpha (N, K); pixel: an (N, C, H, W) map);
- ``explain`` and the paper-named functions (grad_cam, cam, saliency, ...) agree bit for bit;
- each entry cites its paper with an arXiv id AND version, checked against ids written down
  here from the papers (not read from the code);
- a per-position weighting (HiResCAM-style alpha = dA) and a gradient-free one registered here
  work, checked against hand loops; unknown methods, options and variants are clear errors.
"""

import re

import numpy as np
import pytest

import gradcam
from gradcam.registry import (LAYER_RULES, Context, Method, MethodOutput, register,
                              register_variant, variants)
from gradcam.weights import grad_cam_weights
from minicnn import zoo

N, HW = 2, 64
ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})v(\d+)")

# Written down from the papers: the arXiv id and version each method must cite.
PAPERS = {
    "gradcam": "1610.02391v4", "counterfactual": "1610.02391v4", "cam": "1512.04150v1",
    "saliency": "1312.6034v2", "deconvnet": "1311.2901v3", "guided-backprop": "1412.6806v3",
    "guided-gradcam": "1610.02391v4",
    "gradcam++": "1710.11063v3", "smooth-gradcam++": "1908.01224v1", "xgradcam": "2008.02312v4",
    "hirescam": "2011.08891v4",
    # no arXiv version: the journal's DOI, and the peer library's file for a method of no paper
    "layercam": "doi:10.1109/TIP.2021.3089943",
    "gradcam-elementwise": "pytorch_grad_cam/grad_cam_elementwise.py",
    "eigencam": "2008.00299v1", "eigengradcam": "2008.00299v1",
    "fullgrad": "1905.00780v4", "smoothgrad": "1706.03825v1",
    "integrated-gradients": "1703.01365v2",
    "scorecam": "1910.01279v2", "sscam": "2006.14255v3", "iscam": "2010.03023v1",
    "ablationcam": None,  # WACV 2020 only: no arXiv version (the citation says so)
    "occlusion": "1311.2901v3",
}
KINDS = {"gradcam": "channel", "counterfactual": "channel", "cam": "channel",
         "saliency": "pixel", "deconvnet": "pixel", "guided-backprop": "pixel",
         "guided-gradcam": "pixel",
         "gradcam++": "channel", "smooth-gradcam++": "channel", "xgradcam": "channel",
         "hirescam": "position", "gradcam-elementwise": "position", "layercam": "position",
         "scorecam": "channel", "sscam": "channel", "iscam": "channel", "ablationcam": "channel",
         "eigencam": "channel", "eigengradcam": "position",
         "fullgrad": "network", "smoothgrad": "pixel", "integrated-gradients": "pixel",
         "occlusion": "network"}
DEFAULT_LAYER = {"gradcam": "relu4", "counterfactual": "relu4", "cam": "relu4",
                 "saliency": "input", "deconvnet": "input", "guided-backprop": "input",
                 "guided-gradcam": "relu4",
                 "gradcam++": "relu4", "smooth-gradcam++": "relu4", "xgradcam": "relu4",
                 "hirescam": "relu4", "gradcam-elementwise": "relu4", "layercam": "relu4",
                 "eigencam": "relu4", "eigengradcam": "relu4",
                 "fullgrad": "input", "smoothgrad": "input", "integrated-gradients": "input",
                 "scorecam": "relu4", "sscam": "relu4", "iscam": "relu4", "ablationcam": "relu4",
                 "occlusion": "input"}


@pytest.fixture(scope="module")
def models():
    return {"shapes_cnn": zoo.shapes_cnn(seed=1), "shapes_gap": zoo.shapes_gap(seed=2)}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).uniform(0, 1, (N, 3, HW, HW)).astype("float32")


def assert_same(a, b):
    """Every field of two results is identical (arrays bit for bit)."""
    for f in ("method", "layer", "class_names"):
        assert getattr(a, f) == getattr(b, f), f
    for f in ("logits", "target", "activations", "gradients", "weights", "linear_map", "coarse",
              "heatmap", "pixels"):
        u, v = getattr(a, f), getattr(b, f)
        assert (u is None) == (v is None), f
        if u is not None:
            assert u.dtype == v.dtype and u.shape == v.shape, f
            np.testing.assert_array_equal(u, v, err_msg=f)


# --------------------------------------------------------------------------- the table
def test_registry_lists_the_methods_in_table_order():
    reg = gradcam.methods()
    assert list(reg) == list(KINDS)
    assert all(isinstance(m, Method) and m.name == n for n, m in reg.items())
    reg.pop("gradcam")  # a copy: the registry itself is unchanged
    assert "gradcam" in gradcam.methods()


@pytest.mark.parametrize("name", list(KINDS))
def test_every_entry_cites_its_paper_with_arxiv_id_and_version(name):
    m = gradcam.methods()[name]
    found = ARXIV.search(m.citation)
    if PAPERS[name] is None:  # a paper without an arXiv version must say so
        assert found is None and "no arXiv version" in m.citation
    elif not re.fullmatch(r"\d{4}\.\d{4,5}v\d+", PAPERS[name]):  # a DOI or a peer's file
        assert PAPERS[name] in m.citation and found is None
    else:
        assert found, f"{name}: no arXiv:NNNN.NNNNNvN in {m.citation!r}"
        assert found.group(0) == "arXiv:" + PAPERS[name]
    assert m.title and m.kind == KINDS[name] and m.layer_rule in LAYER_RULES


def test_citation_check_rejects_an_id_without_version():
    """Negative control: the pattern above needs the version."""
    assert ARXIV.search("Zhou et al., CVPR 2016, arXiv:1512.04150, Sec. 2") is None
    assert ARXIV.search("arXiv:1512.04150v1").group(0) == "arXiv:1512.04150v1"


# --------------------------------------------------------------------------- every method runs
@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("arch", ["shapes_cnn", "shapes_gap"])
def test_every_method_runs_through_explain(models, x, name, arch):
    model = models[arch]
    if name == "cam" and arch == "shapes_cnn":
        with pytest.raises(ValueError, match="global average pooling"):
            gradcam.explain(model, x, method=name)
        return
    r = gradcam.explain(model, x, [0, 3], method=name)
    assert r.method == name and r.layer == DEFAULT_LAYER[name]
    assert r.logits.shape == (N, 4) and r.target.tolist() == [0, 3]
    if gradcam.methods()[name].needs_grad:
        assert r.gradients.shape == r.activations.shape
    else:
        assert r.gradients is None
    assert r.heatmap.shape == (N, HW, HW)
    heat = np.asarray(r.heatmap)
    assert heat.min() >= 0 and heat.max() <= 1
    if KINDS[name] in ("channel", "position", "network"):
        K, u, v = r.activations.shape[1:]
        want = {"channel": (N, K), "position": (N, K, u, v), "network": None}[KINDS[name]]
        assert (r.weights is None if want is None else r.weights.shape == want)
        assert r.pixels is None
        if KINDS[name] == "network":
            u, v = HW, HW  # the map lives at the input's resolution
        assert r.linear_map.shape == r.coarse.shape == (N, u, v)
        # max 1, or an all-zero map where the ReLU left nothing
        peaks = (np.asarray(r.coarse).max(axis=(1, 2)) > 0).astype(heat.dtype)
        np.testing.assert_allclose(heat.max(axis=(1, 2)), peaks, rtol=1e-6)
    else:
        assert r.pixels.shape == x.shape
        assert r.weights is None and r.linear_map is None and r.coarse is None
        # the documented reduction: max over channels of |pixels|, divided by its max
        m = np.abs(r.pixels).max(axis=1)
        np.testing.assert_allclose(heat, m / m.max(axis=(1, 2), keepdims=True), rtol=1e-6)
    if r.layer == "input":
        np.testing.assert_array_equal(r.activations, x)


# --------------------------------------------------------------------------- same as the functions
def test_explain_equals_the_paper_named_functions_bit_for_bit(models, x):
    cnn, gap = models["shapes_cnn"], models["shapes_gap"]
    assert_same(gradcam.explain(cnn, x, method="gradcam"), gradcam.grad_cam(cnn, x))
    assert_same(gradcam.explain(cnn, x, 1, "counterfactual", "conv3"),
                gradcam.grad_cam(cnn, x, 1, "conv3", counterfactual=True))
    assert_same(gradcam.explain(gap, x, [2, 0], "cam"), gradcam.cam(gap, x, [2, 0]))
    for name, fn in [("saliency", gradcam.saliency), ("deconvnet", gradcam.deconvnet),
                     ("guided-backprop", gradcam.guided_backprop)]:
        r = gradcam.explain(cnn, x, [1, 2], name)
        np.testing.assert_array_equal(r.pixels, fn(cnn, x, [1, 2]), err_msg=name)
    r = gradcam.explain(cnn, x, None, "guided-gradcam", "conv2")
    np.testing.assert_array_equal(r.pixels, gradcam.guided_grad_cam(cnn, x, None, "conv2"))


def test_guided_gradcam_is_guided_backprop_times_the_gradcam_heatmap(x):
    """Built here from the two separate results (float64: only round-off may differ)."""
    model = zoo.shapes_cnn(seed=1).astype("float64")  # astype casts in place: a new model
    x64 = x.astype("float64")
    r = gradcam.explain(model, x64, None, "guided-gradcam", "conv3")
    g = gradcam.grad_cam(model, x64, None, "conv3")
    expected = gradcam.guided_backprop(model, x64, g.target) * g.heatmap[:, None]
    assert r.layer == "conv3" and r.target.tolist() == g.target.tolist()
    np.testing.assert_allclose(r.pixels, expected, rtol=0, atol=1e-15)
    assert r.activations.shape[1:] == g.activations.shape[1:]  # A and dA at Grad-CAM's layer


# --------------------------------------------------------------------------- errors
def test_unknown_method_lists_the_registered_names(models, x):
    with pytest.raises(ValueError, match="unknown method 'gradcam\\+\\+\\+'; methods are: gradcam, "
                                         "counterfactual, cam, saliency"):
        gradcam.explain(models["shapes_cnn"], x, method="gradcam+++")


def test_unknown_option_names_the_method_and_what_it_accepts(models, x):
    with pytest.raises(TypeError, match="method 'gradcam' got unknown option.*'smooth'.*"
                                        "accepts: no options"):
        gradcam.explain(models["shapes_cnn"], x, smooth=3)
    with pytest.raises(ValueError, match="'saliency' got unknown option"):  # also a ValueError
        gradcam.explain(models["shapes_cnn"], x, method="saliency", n=3)


def test_unknown_variant_is_refused(models, x):
    with pytest.raises(ValueError, match="no variant 'pytorch-grad-cam' exists for method "
                                         "'gradcam'.*arXiv:1610.02391v4"):
        gradcam.explain(models["shapes_cnn"], x, variant="pytorch-grad-cam")


def test_layer_names_per_rule(models, x):
    cnn, gap = models["shapes_cnn"], models["shapes_gap"]
    assert gradcam.explain(cnn, x, method="saliency", layer="input").layer == "input"
    with pytest.raises(ValueError, match="pixel-space method.*layer='input'"):
        gradcam.explain(cnn, x, method="saliency", layer="relu4")
    with pytest.raises(ValueError, match="'input' \\(pixel space\\) is for .*saliency"):
        gradcam.explain(cnn, x, method="gradcam", layer="input")
    with pytest.raises(ValueError, match="only at the input of the global average pooling"):
        gradcam.explain(gap, x, method="cam", layer="conv3")
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        gradcam.explain(cnn, x, method="guided-gradcam", layer="conv9")


def test_method_entries_are_validated():
    ok = dict(name="toy", title="Toy", citation="-", kind="channel", needs_grad=True,
              layer_rule="last-spatial", weighting=lambda ctx: None)
    Method(**ok)
    for bad, match in [(dict(kind="region"), "kind 'region'"),
                       (dict(layer_rule="penultimate"), "layer_rule 'penultimate'"),
                       (dict(needs_grad=False, relu_rule="guided"), "needs a backward")]:
        with pytest.raises(ValueError, match=match):
            Method(**{**ok, **bad})
    with pytest.raises(TypeError, match="callable"):
        Method(**{**ok, "weighting": 3})


def test_register_refuses_duplicates_and_non_methods(registry):
    with pytest.raises(ValueError, match="'gradcam' is already registered"):
        register(gradcam.methods()["gradcam"])
    with pytest.raises(TypeError, match="Method"):
        register("hirescam")


def test_a_weighting_of_the_wrong_shape_is_reported(registry, models, x):
    register(Method("bad", "Bad", "-", "channel", True, "last-spatial",
                    lambda ctx: ctx.dA.mean(axis=(1, 2, 3))))
    with pytest.raises(ValueError, match="method 'bad' \\(kind 'channel'\\) returned shape "
                                         "\\(2,\\), expected \\(2, 64\\)"):
        gradcam.explain(models["shapes_cnn"], x, method="bad")


# --------------------------------------------------------------------------- new kinds of entry
def test_a_per_position_method_matches_a_hand_loop(registry):
    """HiResCAM-style alpha_k(i, j) = dy^c/dA^k_ij, summed with A position by position."""
    register(Method("elementwise", "Gradient times activation", "-", "position", True,
                    "last-spatial", lambda ctx: ctx.dA))
    model = zoo.shapes_gap(seed=2).astype("float64")
    x = np.random.default_rng(4).uniform(0, 1, (N, 3, HW, HW))
    r = gradcam.explain(model, x, [1, 2], "elementwise", "conv4")
    A, dA = r.activations, r.gradients
    Nn, K, u, v = A.shape
    assert r.weights.shape == (Nn, K, u, v)
    np.testing.assert_array_equal(r.weights, dA)
    loop = np.zeros((Nn, u, v))
    for n in range(Nn):
        for i in range(u):
            for j in range(v):
                loop[n, i, j] = sum(dA[n, k, i, j] * A[n, k, i, j] for k in range(K))
    np.testing.assert_allclose(r.linear_map, loop, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(r.coarse, np.maximum(r.linear_map, 0))
    # and it is not Grad-CAM: per-position weights change the map (negative control)
    g = gradcam.grad_cam(model, x, [1, 2], "conv4")
    assert np.abs(g.linear_map - loop).max() > 1e-6


def test_weighted_sum_per_channel_and_per_position_against_loops():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(2, 3, 4, 5))
    a_ch, a_pos = rng.normal(size=(2, 3)), rng.normal(size=(2, 3, 4, 5))
    loop_ch, loop_pos = np.zeros((2, 4, 5)), np.zeros((2, 4, 5))
    for n in range(2):
        for k in range(3):
            loop_ch[n] += a_ch[n, k] * A[n, k]
            for i in range(4):
                for j in range(5):
                    loop_pos[n, i, j] += a_pos[n, k, i, j] * A[n, k, i, j]
    np.testing.assert_allclose(gradcam.weighted_sum(a_ch, A), loop_ch, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gradcam.weighted_sum(a_pos, A), loop_pos, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) fit neither \(N, K\) = \(2, 3\)"):
        gradcam.weighted_sum(a_pos[..., 0], A)


def test_a_gradient_free_method_gets_no_gradient_and_its_options(registry, x):
    """Eigen-CAM-like entry: no backward runs, dA is None; its options reach the context."""
    seen = {}

    def mean_activation(ctx):
        seen.update(dA=ctx.dA, training=ctx.model.training, options=dict(ctx.options))
        return ctx.options["scale"] * ctx.A.mean(axis=(2, 3))

    register(Method("mean-activation", "Mean activation", "-", "channel", False,
                    "last-spatial", mean_activation, options={"scale": 1.0}))
    model = zoo.shapes_cnn(seed=1)
    model.train()  # explain runs the weighting in eval mode, and restores this mode
    r = gradcam.explain(model, x, method="mean-activation", scale=2.0)
    assert model.training is True
    assert seen == {"dA": None, "training": False, "options": {"scale": 2.0}}
    assert r.gradients is None and r.layer == "relu4"
    np.testing.assert_array_equal(r.weights, 2.0 * r.activations.mean(axis=(2, 3)))
    assert r.target.tolist() == np.asarray(r.logits).argmax(axis=1).tolist()
    gradcam.explain(model, x, method="mean-activation")
    assert seen["options"] == {"scale": 1.0}  # the default
    with pytest.raises(TypeError, match="'mean-activation' got unknown option.*accepts: scale"):
        gradcam.explain(model, x, method="mean-activation", sigma=1)


def test_context_runs_the_model_again_and_takes_input_gradients(registry, models, x):
    """At layer "input", forward_from is the whole forward; input_gradient at another x."""
    out = {}

    def probe(ctx):
        assert isinstance(ctx, Context)
        out["logits"] = ctx.forward_from(ctx.x)
        out["other"] = ctx.input_gradient(1 - ctx.x)
        return ctx.input_gradient(relu_rule="deconvnet")

    register(Method("probe", "Probe", "-", "pixel", False, "input", probe))
    model = models["shapes_cnn"]
    r = gradcam.explain(model, x, [3, 1], "probe")
    np.testing.assert_array_equal(out["logits"], r.logits)
    other = gradcam.saliency(model, 1 - x, [3, 1])
    np.testing.assert_array_equal(out["other"], other)
    assert np.abs(other - gradcam.saliency(model, x, [3, 1])).max() > 1e-6  # another x indeed
    np.testing.assert_array_equal(r.pixels, gradcam.deconvnet(model, x, [3, 1]))
    assert r.gradients is None


def test_context_forward_from_a_named_layer_scores_ablated_channels(registry):
    """Ablation-CAM's step through the context: y^c with channel k of A set to zero, run from the
    layer up. On a GAP + linear head y^c is linear in A, so the drop y^c - y^c_k must equal
    w_k^c * mean(A^k) (CAM's identity); inside an EfficientNet residual block the same context
    must reproduce the full forward. Negative control: ablating another channel differs."""
    out = {}

    def ablation(ctx):
        n, K = ctx.A.shape[:2]
        copies = np.repeat(ctx.A[:1], K, axis=0)  # K copies of image 0's A
        copies[np.arange(K), np.arange(K)] = 0  # copy k has channel k zeroed
        y = ctx.forward_from(copies)[:, ctx.target[0]]
        out.update(drop=ctx.logits[0, ctx.target[0]] - y, same=ctx.forward_from(ctx.A))
        return np.zeros(ctx.A.shape[:2], dtype=ctx.A.dtype)

    register(Method("ablation-probe", "Ablation probe", "-", "channel", False, "last-spatial",
                    ablation))
    model = zoo.shapes_gap(seed=2).astype("float64")
    x = np.random.default_rng(5).uniform(0, 1, (2, 3, 32, 32))
    r = gradcam.explain(model, x, [1, 2], "ablation-probe")
    w = model["fc"].weight[1]
    expected = w * r.activations[0].mean(axis=(1, 2))
    np.testing.assert_allclose(out["drop"], expected, rtol=1e-9, atol=1e-12)
    assert np.abs(out["drop"] - np.roll(expected, 1)).max() > 1e-6  # negative control
    np.testing.assert_allclose(out["same"], r.logits, rtol=1e-12, atol=1e-12)

    lite = zoo.efficientnet_lite0(num_classes=10, seed=0).astype("float64")
    inner = "_blocks.4._project_conv"  # inside a residual block: needs the block's input
    xl = np.random.default_rng(6).uniform(-1, 1, (1, 3, 64, 64))
    rl = gradcam.explain(lite, xl, None, "ablation-probe", layer=inner)
    np.testing.assert_allclose(out["same"], rl.logits, rtol=1e-10, atol=1e-12)


def test_a_method_output_carries_its_own_map_and_details(registry, models, x):
    """MethodOutput(linear_map=...) replaces sum_k alpha_k A^k; details reach the result."""
    def centred(ctx):
        alpha = grad_cam_weights(ctx.A, ctx.dA)
        plain = gradcam.weighted_sum(alpha, ctx.A)
        shift = plain.mean(axis=(1, 2), keepdims=True)
        return MethodOutput(weights=alpha, linear_map=plain - shift, details={"shift": shift})

    register(Method("centred", "Centred", "-", "channel", True, "last-spatial", centred))
    model = models["shapes_cnn"]
    r = gradcam.explain(model, x, [3, 1], "centred")
    g = gradcam.grad_cam(model, x, [3, 1])
    np.testing.assert_array_equal(r.weights, g.weights)
    shift = g.linear_map.mean(axis=(1, 2), keepdims=True)
    assert np.abs(shift).max() > 1e-6  # the control: the map really moved
    np.testing.assert_allclose(r.linear_map, g.linear_map - shift, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(r.coarse, np.maximum(r.linear_map, 0))
    np.testing.assert_array_equal(r.details["shift"], shift)
    with pytest.raises(TypeError):
        r.details["other"] = 1  # read-only
    assert dict(g.details) == {}


def test_a_network_method_returns_a_map_at_the_input_resolution(registry, models, x):
    """kind "network": no layer; A = x and dA = dy/dx; the linear map is (N, H, W)."""
    def grad_times_input(ctx):
        return MethodOutput(linear_map=(ctx.dA * ctx.A).sum(axis=1))

    register(Method("gxi", "Gradient x input", "-", "network", True, "network",
                    grad_times_input))
    model = models["shapes_cnn"]
    r = gradcam.explain(model, x, [3, 1], "gxi")
    s = gradcam.saliency(model, x, [3, 1])
    assert r.layer == "input" and r.weights is None and r.coarse.shape == (N, HW, HW)
    np.testing.assert_allclose(r.linear_map, (s * x).sum(axis=1), rtol=1e-5, atol=1e-7)
    peak = np.maximum((s * x).sum(axis=1), 0)
    np.testing.assert_allclose(r.heatmap, peak / peak.max(axis=(1, 2), keepdims=True),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(gradcam.LayerError, match="takes no layer"):
        gradcam.explain(model, x, method="gxi", layer="relu4")
    register(Method("gxi-bad", "Bad", "-", "network", True, "network",
                    lambda ctx: ctx.dA.sum(axis=1)))
    with pytest.raises(ValueError, match="must return MethodOutput"):
        gradcam.explain(model, x, method="gxi-bad")


def test_a_registered_variant_runs_instead_of_the_paper(registry, models, x):
    register_variant("gradcam", "summed", lambda ctx: ctx.dA.sum(axis=(2, 3)),
                     "sums the gradients instead of averaging them")
    model = models["shapes_cnn"]
    assert variants("gradcam") == {"summed": "sums the gradients instead of averaging them"}
    r = gradcam.explain(model, x, [3, 1], "gradcam", variant="summed")
    g = gradcam.grad_cam(model, x, [3, 1])
    Z = g.activations.shape[2] * g.activations.shape[3]
    np.testing.assert_allclose(r.weights, Z * g.weights, rtol=1e-5)
    with pytest.raises(ValueError, match="variants: 'summed'"):
        gradcam.explain(model, x, method="gradcam", variant="other")
    with pytest.raises(ValueError, match="already registered"):
        register_variant("gradcam", "summed", lambda ctx: None, "-")
    with pytest.raises(ValueError, match="unknown method"):
        register_variant("no-such", "v", lambda ctx: None, "-")
