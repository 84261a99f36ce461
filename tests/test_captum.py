"""minicnn's Grad-CAM and pixel-space maps against Captum on the torch twins, float64.

Each Captum method is mapped to our convention here, in the test:

- ``LayerGradCam(twin, layer).attribute(x, c, relu_attributions=True)`` is (N, 1, u, v), at
  the layer's OUTPUT (``attribute_to_layer_input=False``, the default) with mean-pooled
  gradients: our ``coarse``. With Captum's default ``relu_attributions=False`` it is our
  ``linear_map`` (the signed map before Eq. (2)'s ReLU).
- ``GuidedBackprop`` and ``Deconvolution`` override the backward of every ``nn.ReLU``:
  our ``guided_backprop`` / ``deconvnet``.
- ``GuidedGradCam(twin, layer)`` multiplies guided backprop by the ReLU'd LayerGradCam map
  upsampled with ``LayerAttribution.interpolate``, whose default mode is "nearest":
  our ``guided_backprop * resize(coarse, (H, W), mode="nearest")`` (NOT our
  ``guided_grad_cam``, which uses the bilinear, max-normalised heatmap).

EfficientNet-Lite0 uses ReLU6, which Captum does not override (it hooks nn.ReLU only). Its
twin is therefore rebuilt with each ReLU6 as ``Clamp6(ReLU(x))`` (same forward): Captum's
guided rule on that ReLU, times the clamp's gradient [x < 6], is exactly our guided rule for
ReLU6, dout * [0 < x < 6] * [dout > 0]. Deconvolution cannot be mapped: Captum's would still
multiply by the clamp's [x < 6], while the deconvnet rule ignores the forward entirely, so
that check is skipped for EfficientNet (with this reason).
"""

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
captum_attr = pytest.importorskip(
    "captum.attr", reason="Captum is not installed: pip install captum (after torch; .ci/run)")

import torch
import torch_twins as T

from gradcam.resize import resize

rel_error = T.rel_error

CAPTUM_RTOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
MODELS = ["small_cnn", "shapes_cnn", "shapes_gap", "vgg16", "efficientnet_lite0"]


def captum_twin(name):
    """The twin Captum runs on: EfficientNet's with ReLU6 split into ReLU + Clamp6."""
    _, twin, x, target, layer = T.case(name)
    if name == "efficientnet_lite0":
        split = T.EfficientNetLite0Twin(act=T.relu6_split).double()
        split.load_state_dict(twin.state_dict())
        twin = split.eval()
    return twin, x, target, layer


def attribute(method, name, **kw):
    twin, x, target, layer = captum_twin(name)
    xt = torch.tensor(x, requires_grad=True)
    tg = torch.as_tensor(target)
    if method in ("LayerGradCam", "GuidedGradCam"):
        algo = getattr(captum_attr, method)(twin, twin.get_submodule(layer))
    else:
        algo = getattr(captum_attr, method)(twin)
    with T.single_thread():
        return algo.attribute(xt, target=tg, **kw).detach().numpy()


@pytest.mark.parametrize("name", MODELS)
def test_layer_gradcam_relu_is_our_coarse_map(name):
    ours, _ = T.quantities(name)
    theirs = attribute("LayerGradCam", name, relu_attributions=True)
    assert theirs.shape == (ours["coarse"].shape[0], 1) + ours["coarse"].shape[1:]
    assert rel_error(ours["coarse"], theirs[:, 0]) <= CAPTUM_RTOL


@pytest.mark.parametrize("name", MODELS)
def test_layer_gradcam_default_is_our_linear_map(name):
    """Captum's default (relu_attributions=False) is the signed map before the ReLU."""
    ours, _ = T.quantities(name)
    theirs = attribute("LayerGradCam", name)
    assert rel_error(ours["linear_map"], theirs[:, 0]) <= CAPTUM_RTOL


@pytest.mark.parametrize("name", MODELS)
def test_guided_backprop_matches_captum(name):
    ours, _ = T.quantities(name)
    assert rel_error(ours["guided_backprop"], attribute("GuidedBackprop", name)) <= CAPTUM_RTOL


@pytest.mark.parametrize("name", MODELS)
def test_deconvolution_matches_captum(name):
    if name == "efficientnet_lite0":
        pytest.skip("Captum's Deconvolution hooks nn.ReLU only; with ReLU6 as Clamp6(ReLU(x)) "
                    "it keeps the clamp's [x < 6] mask, which the deconvnet rule drops")
    ours, _ = T.quantities(name)
    assert rel_error(ours["deconvnet"], attribute("Deconvolution", name)) <= CAPTUM_RTOL


@pytest.mark.parametrize("name", MODELS)
def test_guided_gradcam_is_guided_backprop_times_nearest_upsampled_coarse(name):
    ours, _ = T.quantities(name)
    H, W = ours["guided_backprop"].shape[2:]
    mapped = ours["guided_backprop"] * resize(ours["coarse"], (H, W), mode="nearest")[:, None]
    assert rel_error(mapped, attribute("GuidedGradCam", name)) <= CAPTUM_RTOL


def test_relu6_split_twin_is_the_same_function():
    """The Clamp6(ReLU) rebuild changes nothing forward (the guided mapping's premise)."""
    twin, x, *_ = captum_twin("efficientnet_lite0")
    ref = T.case("efficientnet_lite0")[1]
    with torch.no_grad(), T.single_thread():
        a, b = twin(torch.tensor(x)), ref(torch.tensor(x))
    assert torch.equal(a, b)


def test_compare_names_real_captum_output():
    """gradcam compare, given what Captum itself returns (LayerGradCam, then its documented
    LayerAttribution.interpolate), names the convention: captum, exit status 1."""
    from gradcam.compare import compare

    model, _, x, target, layer = T.case("vgg16")
    attr = attribute("LayerGradCam", "vgg16")
    up = captum_attr.LayerAttribution.interpolate(torch.from_numpy(attr), x.shape[2:]).numpy()
    c = compare(up[0, 0], model, x[:1], int(target[0]), layer)
    assert c.status == 1 and c.closest == "captum", c.format()
    assert "ReLU off" in c.diagnosis and "nearest" in c.diagnosis


def errors(name):
    """Worst relative error per Captum method for one model (None: not applicable)."""
    ours, _ = T.quantities(name)
    H, W = ours["guided_backprop"].shape[2:]
    up = resize(ours["coarse"], (H, W), mode="nearest")[:, None]
    return {
        "LayerGradCam(relu)": rel_error(
            ours["coarse"], attribute("LayerGradCam", name, relu_attributions=True)[:, 0]),
        "LayerGradCam": rel_error(ours["linear_map"], attribute("LayerGradCam", name)[:, 0]),
        "GuidedBackprop": rel_error(ours["guided_backprop"], attribute("GuidedBackprop", name)),
        "Deconvolution": None if name == "efficientnet_lite0" else
        rel_error(ours["deconvnet"], attribute("Deconvolution", name)),
        "GuidedGradCam": rel_error(ours["guided_backprop"] * up, attribute("GuidedGradCam", name)),
    }


def main():
    """Print the worst error per Captum method (rows) and model (columns), float64."""
    import warnings

    warnings.filterwarnings("ignore", "Setting backward hooks")
    names = ["small_cnn", "shapes_cnn", "shapes_gap", "vgg16", "efficientnet_lite0"]
    table = {n: errors(n) for n in names}
    print("| Captum | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for q in table[names[0]]:
        cells = ["n/a" if table[n][q] is None else f"{table[n][q]:.1e}" for n in names]
        print(f"| {q} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
